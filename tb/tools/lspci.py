"""An ``lspci -vvv``-style dump of a function's config space, as the host sees it.

From tests: ``text = await lspci(pci_device)``. From a shell: ``make lspci
NUM_VFS=4`` (or ``sriov-lspci --num-vfs 4``) builds the system under Verilator,
enables the VFs and prints every function.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import cocotb

import pcicore
from datasheet import pci
from tb.paths import BUILD_DIR

_SIZES = ["", "K", "M", "G", "T"]


def _size(n: int) -> str:
    unit = 0
    while n >= 1024 and n % 1024 == 0 and unit < len(_SIZES) - 1:
        n //= 1024
        unit += 1
    return f"{n}{_SIZES[unit]}"


def _flag(name: str, on) -> str:
    return f"{name}{'+' if on else '-'}"


async def _regions(dev, lines: list[str], virtual: bool) -> None:
    for idx in range(pci.PCI_NUM_BARS):
        addr, size = dev.bar_addr[idx], dev.bar_size[idx]
        if not size:
            continue
        kind = "64-bit" if (dev.bar_raw[idx] or pci.PCI_BASE_ADDRESS_MEM_TYPE_64) & 4 else "32-bit"
        tag = " [virtual]" if virtual else ""
        lines.append(f"\tRegion {idx}: Memory at {addr:x} ({kind}, non-prefetchable){tag} [size={_size(size)}]")


async def _cap_pm(dev, pos, lines):
    pmc = await dev.config_read_word(pos + 2)
    ctrl = await dev.config_read_word(pos + pci.PCI_PM_CTRL)
    lines.append(f"\tCapabilities: [{pos:02x}] Power Management version {pmc & 7}")
    lines.append(f"\t\tStatus: D{ctrl & pci.PCI_PM_CTRL_STATE_MASK} PME-Enable{'+' if ctrl & 0x100 else '-'}")


async def _cap_exp(dev, pos, lines):
    flags = await dev.config_read_word(pos + pci.PCI_EXP_FLAGS)
    devcap = await dev.config_read_dword(pos + pci.PCI_EXP_DEVCAP)
    devctl = await dev.config_read_word(pos + pci.PCI_EXP_DEVCTL)
    lnkcap = await dev.config_read_dword(pos + pci.PCI_EXP_LNKCAP)
    lnksta = await dev.config_read_word(pos + pci.PCI_EXP_LNKSTA)
    devcap2 = await dev.config_read_dword(pos + pci.PCI_EXP_DEVCAP2)
    devctl2 = await dev.config_read_word(pos + pci.PCI_EXP_DEVCTL2)
    kind = {0: "Endpoint", 4: "Root Port", 5: "Upstream Port", 6: "Downstream Port"}.get(
        (flags >> pci.PCI_EXP_FLAGS_TYPE_SHIFT) & 0xF, "Unknown"
    )
    gts = {1: "2.5GT/s", 2: "5GT/s", 3: "8GT/s", 4: "16GT/s", 5: "32GT/s"}
    lines.append(f"\tCapabilities: [{pos:02x}] Express (v{flags & 0xF}) {kind}, MSI 00")
    lines.append(
        f"\t\tDevCap:\tMaxPayload {128 << (devcap & 7)} bytes, "
        f"{_flag('ExtTag', devcap & 0x20)} {_flag('FLReset', devcap & pci.PCI_EXP_DEVCAP_FLR)}"
    )
    lines.append(
        f"\t\tDevCtl:\t{_flag('ExtTag', devctl & 0x100)} MaxPayload {128 << ((devctl >> 5) & 7)} bytes, "
        f"MaxReadReq {128 << ((devctl >> 12) & 7)} bytes"
    )
    lines.append(f"\t\tLnkCap:\tSpeed {gts.get(lnkcap & 0xF, '?')}, Width x{(lnkcap >> 4) & 0x3F}")
    lines.append(f"\t\tLnkSta:\tSpeed {gts.get(lnksta & 0xF, '?')}, Width x{(lnksta >> 4) & 0x3F}")
    lines.append(f"\t\tDevCap2: {_flag('ARIFwd', devcap2 & pci.PCI_EXP_DEVCAP2_ARI)}")
    lines.append(f"\t\tDevCtl2: {_flag('ARIFwd', devctl2 & pci.PCI_EXP_DEVCTL2_ARI)}")


async def _cap_msix(dev, pos, lines):
    flags = await dev.config_read_word(pos + pci.PCI_MSIX_FLAGS)
    table = await dev.config_read_dword(pos + pci.PCI_MSIX_TABLE)
    pba = await dev.config_read_dword(pos + pci.PCI_MSIX_PBA)
    lines.append(
        f"\tCapabilities: [{pos:02x}] MSI-X: {_flag('Enable', flags & pci.PCI_MSIX_FLAGS_ENABLE)} "
        f"Count={(flags & pci.PCI_MSIX_FLAGS_QSIZE) + 1} {_flag('Masked', flags & pci.PCI_MSIX_FLAGS_MASKALL)}"
    )
    lines.append(f"\t\tVector table: BAR={table & pci.PCI_MSIX_BIR_MASK} offset={table & ~7:08x}")
    lines.append(f"\t\tPBA: BAR={pba & pci.PCI_MSIX_BIR_MASK} offset={pba & ~7:08x}")


async def _cap_ari(dev, pos, lines):
    val = await dev.config_read_dword(pos + pci.PCI_ARI_CAP)
    lines.append(f"\tCapabilities: [{pos:03x} v1] Alternative Routing-ID Interpretation (ARI)")
    lines.append(
        f"\t\tARICap:\t{_flag('MFVC', val & pci.PCI_ARI_CAP_MFVC)} {_flag('ACS', val & pci.PCI_ARI_CAP_ACS)}"
        f", Next Function: {(val >> pci.PCI_ARI_CAP_NFN_SHIFT) & 0xFF}"
    )
    ctl = val >> 16
    lines.append(
        f"\t\tARICtl:\t{_flag('MFVC', ctl & 1)} {_flag('ACS', ctl & 2)}, "
        f"Function Group: {(ctl >> pci.PCI_ARI_CTRL_FG_SHIFT) & 7}"
    )


async def _cap_sriov(dev, pos, lines):
    rd16 = lambda off: dev.config_read_word(pos + off)  # noqa: E731
    rd32 = lambda off: dev.config_read_dword(pos + off)  # noqa: E731
    cap, ctrl, status = await rd32(pci.PCI_SRIOV_CAP), await rd16(pci.PCI_SRIOV_CTRL), await rd16(pci.PCI_SRIOV_STATUS)
    lines.append(f"\tCapabilities: [{pos:03x} v1] Single Root I/O Virtualization (SR-IOV)")
    lines.append(
        f"\t\tIOVCap:\t{_flag('Migration', cap & pci.PCI_SRIOV_CAP_VFM)} "
        f"{_flag('ARIHierarchyPreserved', cap & pci.PCI_SRIOV_CAP_ARI_PRESERVED)} "
        f"IntMsgNum {cap >> pci.PCI_SRIOV_CAP_INTR_SHIFT}"
    )
    lines.append(
        f"\t\tIOVCtl:\t{_flag('Enable', ctrl & pci.PCI_SRIOV_CTRL_VFE)} "
        f"{_flag('Migration', ctrl & pci.PCI_SRIOV_CTRL_VFM)} {_flag('Interrupt', ctrl & pci.PCI_SRIOV_CTRL_INTR)} "
        f"{_flag('MSE', ctrl & pci.PCI_SRIOV_CTRL_MSE)} {_flag('ARIHierarchy', ctrl & pci.PCI_SRIOV_CTRL_ARI)}"
    )
    lines.append(f"\t\tIOVSta:\t{_flag('Migration', status & pci.PCI_SRIOV_STATUS_VFM)}")
    lines.append(
        f"\t\tInitial VFs: {await rd16(pci.PCI_SRIOV_INITIAL_VF)}, "
        f"Total VFs: {await rd16(pci.PCI_SRIOV_TOTAL_VF)}, Number of VFs: {await rd16(pci.PCI_SRIOV_NUM_VF)}, "
        f"Function Dependency Link: {await rd16(pci.PCI_SRIOV_FUNC_LINK) & 0xFF:02x}"
    )
    lines.append(
        f"\t\tVF offset: {await rd16(pci.PCI_SRIOV_VF_OFFSET)}, stride: {await rd16(pci.PCI_SRIOV_VF_STRIDE)}, "
        f"Device ID: {await rd16(pci.PCI_SRIOV_VF_DID):04x}"
    )
    lines.append(
        f"\t\tSupported Page Size: {await rd32(pci.PCI_SRIOV_SUP_PGSIZE):08x}, "
        f"System Page Size: {await rd32(pci.PCI_SRIOV_SYS_PGSIZE):08x}"
    )
    idx = 0
    while idx < pci.PCI_SRIOV_NUM_BARS:
        lo = await rd32(pci.PCI_SRIOV_BAR + 4 * idx)
        if lo & pci.PCI_BASE_ADDRESS_MEM_TYPE_64:
            addr = (lo & ~0xF) | await rd32(pci.PCI_SRIOV_BAR + 4 * (idx + 1)) << 32
            lines.append(f"\t\tRegion {idx}: Memory at {addr:016x} (64-bit, non-prefetchable)")
            idx += 2
        else:
            if lo:
                lines.append(f"\t\tRegion {idx}: Memory at {lo & ~0xF:08x} (32-bit, non-prefetchable)")
            idx += 1
    lines.append(f"\t\tVF Migration: offset: {await rd32(pci.PCI_SRIOV_VFM):08x}, BIR: 0")


def _aer_bits(value: int, names: dict[int, str]) -> str:
    return " ".join(_flag(name, value >> bit & 1) for bit, name in names.items())


async def _cap_aer(dev, pos, lines):
    rd32 = lambda off: dev.config_read_dword(pos + off)  # noqa: E731
    lines.append(f"\tCapabilities: [{pos:03x} v2] Advanced Error Reporting")
    for label, off, names in (
        ("UESta", pci.PCI_ERR_UNCOR_STATUS, pci.AER_UNCOR_NAMES),
        ("UEMsk", pci.PCI_ERR_UNCOR_MASK, pci.AER_UNCOR_NAMES),
        ("UESvrt", pci.PCI_ERR_UNCOR_SEVER, pci.AER_UNCOR_NAMES),
        ("CESta", pci.PCI_ERR_COR_STATUS, pci.AER_COR_NAMES),
        ("CEMsk", pci.PCI_ERR_COR_MASK, pci.AER_COR_NAMES),
    ):
        lines.append(f"\t\t{label}:\t{_aer_bits(await rd32(off), names)}")
    cap = await rd32(pci.PCI_ERR_CAP)
    lines.append(f"\t\tAERCap:\tFirst Error Pointer: {cap & pci.PCI_ERR_CAP_FEP_MASK:02x}")
    header = [await rd32(pci.PCI_ERR_HEADER_LOG + 4 * i) for i in range(4)]
    lines.append("\t\tHeaderLog: " + " ".join(f"{dw:08x}" for dw in header))


_DECODERS = {pci.PCI_CAP_ID_PM: _cap_pm, pci.PCI_CAP_ID_EXP: _cap_exp, pci.PCI_CAP_ID_MSIX: _cap_msix}
_EXT_DECODERS = {
    pci.PCI_EXT_CAP_ID_ARI: _cap_ari,
    pci.PCI_EXT_CAP_ID_SRIOV: _cap_sriov,
    pci.PCI_EXT_CAP_ID_ERR: _cap_aer,
}


async def lspci(dev) -> str:
    """Decode ``dev``'s config space (a cocotbext ``PciDevice``) like ``lspci -vvv``."""
    virtfn = getattr(dev, "is_virtfn", False)
    vendor, device_id = (dev.physfn.vendor_id, dev.device_id) if virtfn else (dev.vendor_id, dev.device_id)
    class_rev = await dev.config_read_dword(pci.PCI_REVISION_ID)
    name = "Ethernet controller" if class_rev >> 8 == 0x020000 else "Device"
    kind = " (Virtual Function)" if virtfn else ""
    lines = [
        f"{dev.pcie_id} {name} [{class_rev >> 16:04x}]: Device {vendor:04x}:{device_id:04x}"
        f" (rev {class_rev & 0xFF:02x}){kind}"
    ]
    cmd = await dev.config_read_word(pci.PCI_COMMAND)
    status = await dev.config_read_word(pci.PCI_STATUS)
    ssid = await dev.config_read_dword(pci.PCI_SUBSYSTEM_VENDOR_ID)
    lines.append(f"\tSubsystem: Device {ssid & 0xFFFF:04x}:{ssid >> 16:04x}")
    lines.append(
        f"\tControl: {_flag('I/O', cmd & pci.PCI_COMMAND_IO)} {_flag('Mem', cmd & pci.PCI_COMMAND_MEMORY)} "
        f"{_flag('BusMaster', cmd & pci.PCI_COMMAND_MASTER)} {_flag('DisINTx', cmd & pci.PCI_COMMAND_INTX_DISABLE)}"
    )
    lines.append(
        f"\tStatus: {_flag('Cap', status & pci.PCI_STATUS_CAP_LIST)} "
        f"{_flag('<MAbort', status & pci.PCI_STATUS_REC_MASTER_ABORT)}"
    )
    await _regions(dev, lines, virtfn)
    std, ext = await pcicore.list_capabilities(dev)
    for cap_id, pos in std:
        decoder = _DECODERS.get(cap_id)
        if decoder:
            await decoder(dev, pos, lines)
        else:
            lines.append(f"\tCapabilities: [{pos:02x}] Capability ID {cap_id:#04x}")
    for cap_id, pos in ext:
        decoder = _EXT_DECODERS.get(cap_id)
        if decoder:
            await decoder(dev, pos, lines)
        else:
            lines.append(f"\tCapabilities: [{pos:03x}] Extended Capability ID {cap_id:#06x}")
    return "\n".join(lines) + "\n"


@cocotb.test()
async def lspci_dump(dut):
    """Entry of ``make lspci``: build the system, enable NUM_VFS VFs, print every function."""
    from tb.lib.system import build_system  # noqa: PLC0415

    sys_ = await build_system(dut, total_vfs=int(os.environ.get("TOTAL_VFS", "64")))
    await sys_.pf.sriov_configure(int(os.environ.get("NUM_VFS", "4")))
    text = "".join([await lspci(sys_.pf_dev)] + [await lspci(vf) for vf in sys_.pf.virtfns])
    print("\n" + text, flush=True)
    path = os.environ.get("LSPCI_OUT")
    if path:
        with open(path, "w") as fh:
            fh.write(text)


def simulate(num_vfs: int = 4, total_vfs: int = 64, build_root: Path | None = None) -> str:
    """Run :func:`lspci_dump` in a simulation; return its text."""
    from tb.tools.runner import run  # noqa: PLC0415 -- the runner is only needed to start a simulation

    build_root = build_root or BUILD_DIR
    out = build_root / "lspci.txt"
    run(
        ["tb.tools.lspci"],
        extra_env={"NUM_VFS": str(num_vfs), "TOTAL_VFS": str(total_vfs), "LSPCI_OUT": str(out)},
        results_xml=build_root / "lspci.xml",
        build_root=build_root,
    )
    return out.read_text()


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--num-vfs", type=int, default=4, help="VFs to enable (default 4)")
    ap.add_argument("--total-vfs", type=int, default=64, help="the NIC's TotalVFs (default 64)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="lspci -vvv of the simulated NIC's PF and VFs")
    add_arguments(ap)
    args = ap.parse_args(argv)
    sys.stdout.write(simulate(args.num_vfs, args.total_vfs))
    return 0


if __name__ == "__main__":
    sys.exit(main())

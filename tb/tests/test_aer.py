"""Advanced Error Reporting on the PF and every VF, the root port's error collection and the
host's AER service (docs/security.md, "AER as modelled").

Each test makes one VF detect one kind of error while two other VFs exchange frames. The
root port's Advanced Error Interrupt is held (Root Error Command cleared) while the test reads
what the hardware recorded: the VF's AER registers (status, First Error Pointer, Header Log),
its Device Status, the Message the root port received and its Root Error Status and Error
Source ID. Then the interrupt is let through and the test checks what the host did: its log,
the driver's error handlers in the Linux order, the recovery (a VF FLR when the driver needs a
reset), and that the other VFs lost nothing.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass

import cocotb
from cocotb.triggers import Timer
from cocotbext.pcie.core.tlp import Tlp, TlpType
from cocotbext.pcie.core.utils import PcieId

import pcicore
from datasheet import device, pci, regs
from datasheet.descriptors import QueueError
from iommu.events import AerMessage
from model import events as ev
from pcicore.aer import AER_RATELIMIT_BURST, ROOT_UNCOR
from tb.lib.timing import expect_within
from tb.tests.test_datapath import frame, recv, up

ROOT_CMD_ALL = pci.PCI_ERR_ROOT_CMD_COR_EN | pci.PCI_ERR_ROOT_CMD_NONFATAL_EN | pci.PCI_ERR_ROOT_CMD_FATAL_EN
NORMAL_RECOVERY = [
    ("error_detected:io_normal", "can_recover"),
    ("mmio_enabled", "recovered"),
    ("resume", ""),
]
RESET_RECOVERY = [
    ("error_detected:io_normal", "can_recover"),
    ("mmio_enabled", "need_reset"),
    ("slot_reset", "recovered"),
    ("resume", ""),
]


@dataclass
class AerRegs:
    """A function's AER registers and Device Status, as config reads return them."""

    uncor_status: int
    uncor_mask: int
    uncor_sever: int
    cor_status: int
    cor_mask: int
    first_error: int
    header: tuple[int, ...]
    devsta: int


async def aer_regs(pdev) -> AerRegs:
    pos = await pcicore.find_ext_capability(pdev, pci.PCI_EXT_CAP_ID_ERR)
    exp = await pcicore.find_capability(pdev, pci.PCI_CAP_ID_EXP)

    async def rd(off):
        return await pdev.config_read_dword(pos + off)

    return AerRegs(
        await rd(pci.PCI_ERR_UNCOR_STATUS),
        await rd(pci.PCI_ERR_UNCOR_MASK),
        await rd(pci.PCI_ERR_UNCOR_SEVER),
        await rd(pci.PCI_ERR_COR_STATUS),
        await rd(pci.PCI_ERR_COR_MASK),
        await rd(pci.PCI_ERR_CAP) & pci.PCI_ERR_CAP_FEP_MASK,
        tuple([await rd(pci.PCI_ERR_HEADER_LOG + 4 * i) for i in range(4)]),
        await pdev.config_read_word(exp + pci.PCI_EXP_DEVSTA),
    )


async def set_power_state(pdev, state: int) -> None:
    pm = await pcicore.find_capability(pdev, pci.PCI_CAP_ID_PM)
    ctrl = await pdev.config_read_word(pm + pci.PCI_PM_CTRL)
    await pdev.config_write_word(pm + pci.PCI_PM_CTRL, ctrl & ~pci.PCI_PM_CTRL_STATE_MASK | state)


class Watch:
    """What the device and the root port published: AER errors and error Messages."""

    def __init__(self, system):
        self.errors: list[ev.AerError] = []
        self.messages: list[AerMessage] = []
        system.nic.events.subscribe(ev.AerError, self.errors.append)
        system.rc.events.subscribe(AerMessage, self.messages.append)


@asynccontextmanager
async def interrupt_held(system):
    """Hold the root port's Advanced Error Interrupt (Root Error Command cleared) for the body,
    then enable it again: the pending Messages interrupt the host then."""
    port = system.aer.port
    pos = await pcicore.find_ext_capability(port, pci.PCI_EXT_CAP_ID_ERR)
    await port.config_write_dword(pos + pci.PCI_ERR_ROOT_COMMAND, 0)
    try:
        yield
    finally:
        await port.config_write_dword(pos + pci.PCI_ERR_ROOT_COMMAND, ROOT_CMD_ALL)


async def root_error(system) -> tuple[int, int]:
    """(Root Error Status, Error Source Identification) of the root port."""
    port = system.aer.port
    pos = await pcicore.find_ext_capability(port, pci.PCI_EXT_CAP_ID_ERR)
    return (
        await port.config_read_dword(pos + pci.PCI_ERR_ROOT_STATUS),
        await port.config_read_dword(pos + pci.PCI_ERR_ROOT_ERR_SRC),
    )


async def recovered(system, rid: int, count: int = 1):
    """Wait until the host ran ``count`` recoveries of ``rid`` to their end; return the last."""

    def done():
        runs = [r for r in system.aer.recoveries if r.source_id == rid and r.result is not None]
        return len(runs) >= count

    await expect_within(done, timeout_ns=300_000_000)
    return [r for r in system.aer.recoveries if r.source_id == rid][-1]


class Traffic:
    """Frames from one VF to another, one every ``interval_us``, for the length of a test (a VF
    FLR takes 100 ms); every one must arrive, in order."""

    def __init__(self, src, dst, tag: int, interval_us: int = 250):
        self.src, self.dst, self.tag, self.sent = src, dst, tag, 0
        self.interval_us = interval_us
        self.running = True
        self.task = cocotb.start_soon(self._run())

    async def _run(self):
        while self.running:
            if await self.src.start_xmit(frame(self.src.mac, self.dst.mac, self.tag + self.sent)):
                self.sent += 1
            await Timer(self.interval_us, "us")

    async def stop_and_check(self):
        self.running = False
        await self.task
        got = [await recv(self.dst.netdev) for _ in range(self.sent)]
        assert got == [frame(self.src.mac, self.dst.mac, self.tag + n) for n in range(self.sent)], "frames lost"
        assert self.sent > 0


async def works(vf, peer, n: int = 7) -> None:
    """The VF sends to ``peer`` again and the frame arrives."""
    pkt = frame(vf.mac, peer.mac, n)
    assert await vf.start_xmit(pkt)
    assert await recv(peer.netdev) == pkt


def no_aer_error(watch, fn_allowed: int):
    return [e for e in watch.errors if e.fn != fn_allowed]


async def host_write(system, addr: int, data: bytes, ep: bool = False) -> None:
    """One memory write TLP from the root complex, as it is (``ep``: poisoned)."""
    tlp = Tlp()
    tlp.fmt_type = TlpType.MEM_WRITE if addr < 1 << 32 else TlpType.MEM_WRITE_64
    tlp.requester_id = PcieId(0, 0, 0)
    tlp.set_addr_be_data(addr, data)
    tlp.ep = ep
    await system.rc.send(tlp)


async def unmask_advisory(pdev) -> None:
    """The administrator unmasks Advisory Non-Fatal in a function (as ``setpci`` would)."""
    pos = await pcicore.find_ext_capability(pdev, pci.PCI_EXT_CAP_ID_ERR)
    mask = await pdev.config_read_dword(pos + pci.PCI_ERR_COR_MASK)
    await pdev.config_write_dword(pos + pci.PCI_ERR_COR_MASK, mask & ~pci.PCI_ERR_COR_ADV_NFAT)


async def set_completion_timeout(pdev, value: int) -> None:
    exp = await pcicore.find_capability(pdev, pci.PCI_CAP_ID_EXP)
    ctl2 = await pdev.config_read_word(exp + pci.PCI_EXP_DEVCTL2)
    await pdev.config_write_word(exp + pci.PCI_EXP_DEVCTL2, ctl2 & ~pci.PCI_EXP_DEVCTL2_COMP_TIMEOUT | value)


def msix_entry(vector: int, field: int = pci.PCI_MSIX_ENTRY_DATA) -> int:
    return device.MSIX_TABLE_OFFSET + vector * pci.PCI_MSIX_ENTRY_SIZE + field


def fep(error: int) -> int:
    return error.bit_length() - 1


@cocotb.test()
async def unsupported_request_posted_to_a_vf_in_d3hot(dut):
    """A memory write to a VF its guest put in D3hot is an Unsupported Request (PCI PM: only
    configuration requests are accepted outside D0): the VF logs it with the write's header,
    sends ERR_NONFATAL; the host logs it, the VF driver finds its registers unreadable and
    asks for a reset; the host FLRs the VF (back to D0), the driver comes back; the other VFs'
    traffic runs throughout."""
    system, vfs = await up(dut, num_vfs=3)
    watch = Watch(system)
    traffic = Traffic(vfs[1], vfs[2], 1000)
    vf, rid = vfs[0], int(vfs[0].pdev.pcie_id)
    addr = vf.pdev.bar_addr[device.REG_BAR] + regs.SCRATCH.offset
    async with interrupt_held(system):
        await set_power_state(vf.pdev, pci.PCI_D3HOT)
        await vf.pdev.bar_window[device.REG_BAR].write_dword(regs.SCRATCH.offset, 0x5A5A5A5A)
        await Timer(2, "us")
        got = await aer_regs(vf.pdev)
        assert got.uncor_status == pci.PCI_ERR_UNC_UNSUP
        assert got.first_error == fep(pci.PCI_ERR_UNC_UNSUP)
        assert got.header[0] >> 24 == 0x40 and got.header[2] == addr  # MWr, 3DW header, the address
        assert got.header[1] >> 16 == 0  # the requester: the root complex
        assert got.devsta & (pci.PCI_EXP_DEVSTA_URD | pci.PCI_EXP_DEVSTA_NFED) == (
            pci.PCI_EXP_DEVSTA_URD | pci.PCI_EXP_DEVSTA_NFED
        )
        assert [(e.fn, e.error, e.severity, e.message) for e in watch.errors] == [
            (1, "UnsupReq", "nonfatal", "ERR_NONFATAL")
        ]
        assert [(m.source_id, m.message) for m in watch.messages] == [(rid, "ERR_NONFATAL")]
        status, source = await root_error(system)
        assert status & pci.PCI_ERR_ROOT_UNCOR_RCV and not status & pci.PCI_ERR_ROOT_FIRST_FATAL
        assert source >> 16 == rid
        assert not system.aer.errors  # held
    interrupts = system.aer.interrupts
    await expect_within(lambda: system.aer.interrupts > interrupts)  # the held Message's interrupt
    assert not system.aer.idle  # serving it: the recovery's FLR takes 100 ms
    assert await system.aer.wait_idle(300_000_000)  # woken when it is done, as a host operation is
    rec = system.aer.recoveries[-1]
    assert rec.source_id == rid and rec.result is not None and (await root_error(system))[0] & ROOT_UNCOR == 0
    info = system.aer.errors[-1]
    assert (info.source_id, info.severity, info.status) == (rid, pcicore.AerSeverity.NONFATAL, pci.PCI_ERR_UNC_UNSUP)
    assert info.first_error == 20 and info.tlp_header == got.header
    assert vf.error_handler_calls == RESET_RECOVERY
    assert rec.result is pcicore.PciErsResult.RECOVERED and "reset:flr" in rec.steps
    after = await aer_regs(vf.pdev)
    assert after.uncor_status == 0 and after.devsta & 0xF == 0  # the host cleared what it handled
    await works(vf, vfs[1], 3)
    await traffic.stop_and_check()
    assert not no_aer_error(watch, 1)


@cocotb.test()
async def unsupported_request_completion_is_advisory_non_fatal(dut):
    """A memory read of a VF in D3hot gets a UR completion (the host's read fails): the VF logs
    UR, and as the completer of a non-posted request handles it as Advisory Non-Fatal (PCIe Base
    6.0 §6.2.3.2.4.1): with ANF masked (the default) it sends nothing; once the administrator
    unmasks ANF it sends ERR_COR, the host logs a correctable error, clears the UR it stood for
    and calls the driver's cor_error_detected: no recovery."""
    system, vfs = await up(dut, num_vfs=3)
    watch = Watch(system)
    traffic = Traffic(vfs[1], vfs[2], 2000, interval_us=20)
    vf, rid = vfs[0], int(vfs[0].pdev.pcie_id)
    await set_power_state(vf.pdev, pci.PCI_D3HOT)
    assert await vf.read_reg(regs.SCRATCH) == 0xFFFFFFFF  # UR completion: the read fails
    await Timer(2, "us")
    got = await aer_regs(vf.pdev)
    assert got.uncor_status == pci.PCI_ERR_UNC_UNSUP and got.cor_status == pci.PCI_ERR_COR_ADV_NFAT
    assert got.first_error == fep(pci.PCI_ERR_UNC_UNSUP) and got.header[0] >> 24 == 0x00  # MRd, 3DW
    assert got.devsta & 0xF == pci.PCI_EXP_DEVSTA_CED | pci.PCI_EXP_DEVSTA_URD
    assert [(e.error, e.severity, e.message, e.why) for e in watch.errors] == [
        ("UnsupReq", "advisory", None, "Advisory Non-Fatal masked")
    ]
    assert not watch.messages and not system.aer.errors
    await unmask_advisory(vf.pdev)
    async with interrupt_held(system):
        assert await vf.read_reg(regs.STATUS) == 0xFFFFFFFF
        await Timer(2, "us")
        assert [(m.source_id, m.message) for m in watch.messages] == [(rid, "ERR_COR")]
        status, source = await root_error(system)
        assert status & pci.PCI_ERR_ROOT_COR_RCV and source & 0xFFFF == rid
    await expect_within(lambda: ("cor_error_detected", "") in vf.error_handler_calls)
    info = system.aer.errors[-1]
    assert (info.source_id, info.severity, info.status) == (rid, pcicore.AerSeverity.CORRECTABLE, got.cor_status)
    assert vf.error_handler_calls == [("cor_error_detected", "")]
    after = await aer_regs(vf.pdev)
    assert after.uncor_status == 0 and after.cor_status == 0  # the ANF and the UR it stood for
    assert not system.aer.recoveries
    await set_power_state(vf.pdev, pci.PCI_D0)
    assert await vf.read_reg(regs.SCRATCH) != 0xFFFFFFFF
    await works(vf, vfs[1])
    await traffic.stop_and_check()
    assert not no_aer_error(watch, 1)


@cocotb.test()
async def completer_abort_on_misaligned_msix_access(dut):
    """The MSI-X Table takes aligned DWORD or QWORD accesses only (§7.7.2): a guest's 2-byte
    read is completed with Completer Abort (Signaled Target Abort; Advisory Non-Fatal), its
    2-byte write is dropped and reported with ERR_NONFATAL; the driver finds the VF healthy and
    recovers without a reset."""
    system, vfs = await up(dut, num_vfs=3)
    watch = Watch(system)
    traffic = Traffic(vfs[1], vfs[2], 3000, interval_us=20)
    vf, rid = vfs[0], int(vfs[0].pdev.pcie_id)
    table = vf.pdev.bar_window[device.MSIX_BAR]
    before = await table.read_dword(msix_entry(3))
    try:
        await table.read(msix_entry(3), 2)
        raise AssertionError("a 2-byte read of the MSI-X table completed")
    except Exception as exc:  # noqa: BLE001 -- cocotbext raises on a CA completion
        assert "Unsuccessful completion" in str(exc)
    assert await vf.pdev.config_read_word(pci.PCI_STATUS) & pci.PCI_STATUS_SIG_TARGET_ABORT
    assert [(e.error, e.severity, e.message) for e in watch.errors] == [("CmpltAbrt", "advisory", None)]
    pos = await pcicore.find_ext_capability(vf.pdev, pci.PCI_EXT_CAP_ID_ERR)
    await vf.pdev.config_write_dword(pos + pci.PCI_ERR_UNCOR_STATUS, 0xFFFFFFFF)  # the host's view: clean
    await vf.pdev.config_write_dword(pos + pci.PCI_ERR_COR_STATUS, 0xFFFFFFFF)
    async with interrupt_held(system):
        await table.write(msix_entry(3) + 1, b"\x12\x34")
        assert await table.read_dword(msix_entry(3)) == before  # dropped
        got = await aer_regs(vf.pdev)
        assert got.uncor_status == pci.PCI_ERR_UNC_COMP_ABORT and got.first_error == fep(pci.PCI_ERR_UNC_COMP_ABORT)
        assert got.header[0] >> 24 == 0x40 and got.header[1] & 0xFF == 0x06  # MWr, first BE 0110b
        assert got.header[2] == vf.pdev.bar_addr[device.MSIX_BAR] + msix_entry(3)
        assert [(m.source_id, m.message) for m in watch.messages] == [(rid, "ERR_NONFATAL")]
        status, source = await root_error(system)
        assert status & pci.PCI_ERR_ROOT_UNCOR_RCV and source >> 16 == rid
    await recovered(system, rid)
    assert system.aer.errors[-1].status == pci.PCI_ERR_UNC_COMP_ABORT
    assert vf.error_handler_calls == NORMAL_RECOVERY
    assert (await aer_regs(vf.pdev)).uncor_status == 0
    await works(vf, vfs[1])
    await traffic.stop_and_check()
    assert not no_aer_error(watch, 1)


@cocotb.test()
async def malformed_tlp_is_fatal_and_recovered_by_vf_flr(dut):
    """A memory write to a VF whose payload exceeds Max_Payload_Size (the PF's: a VF's is RsvdP)
    is a Malformed TLP, fatal by default: dropped, ERR_FATAL; the host reports io_frozen to the
    driver, resets the VF with an FLR (not the link: the other VFs keep their traffic), then
    slot_reset and resume."""
    system, vfs = await up(dut, num_vfs=3)
    watch = Watch(system)
    traffic = Traffic(vfs[1], vfs[2], 4000)
    vf, rid = vfs[0], int(vfs[0].pdev.pcie_id)
    mps = 128 << system.nic.pf.pcie_cap.max_payload_size
    await vf.write_reg(regs.SCRATCH, 0x600DF00D)
    base = vf.pdev.bar_addr[device.REG_BAR]
    async with interrupt_held(system):
        await host_write(system, base, bytes(range(256)) * (2 * mps // 256))
        await Timer(2, "us")
        assert await vf.read_reg(regs.SCRATCH) == 0x600DF00D  # dropped
        got = await aer_regs(vf.pdev)
        assert got.uncor_status == pci.PCI_ERR_UNC_MALF_TLP and got.uncor_sever & pci.PCI_ERR_UNC_MALF_TLP
        assert got.first_error == fep(pci.PCI_ERR_UNC_MALF_TLP) and got.header[0] & 0x3FF == 2 * mps // 4
        assert got.devsta & pci.PCI_EXP_DEVSTA_FED
        assert [(e.error, e.severity, e.message) for e in watch.errors] == [("MalfTLP", "fatal", "ERR_FATAL")]
        status, source = await root_error(system)
        assert status & pci.PCI_ERR_ROOT_FIRST_FATAL and status & pci.PCI_ERR_ROOT_FATAL_RCV and source >> 16 == rid
    rec = await recovered(system, rid)
    assert system.aer.errors[-1].severity is pcicore.AerSeverity.FATAL
    assert rec.state is pcicore.PciChannelState.FROZEN and "reset:flr" in rec.steps
    assert vf.error_handler_calls == [
        ("error_detected:io_frozen", "need_reset"),
        ("slot_reset", "recovered"),
        ("resume", ""),
    ]
    assert await vf.read_reg(regs.SCRATCH) == 0  # the FLR reset it
    await works(vf, vfs[1])
    await traffic.stop_and_check()
    assert not no_aer_error(watch, 1)


@cocotb.test()
async def poisoned_tlps_are_dropped_and_reported(dut):
    """A poisoned memory write to a VF is dropped and reported (Poisoned TLP Received, the
    header with EP); the driver recovers without a reset. Poisoned data for the VF's own
    descriptor fetch: the read fails (the queue's DMA_FAULT), the VF logs the completion's
    header; the driver needs a reset: VF FLR, then traffic again."""
    system, vfs = await up(dut, num_vfs=3)
    watch = Watch(system)
    traffic = Traffic(vfs[1], vfs[2], 5000)
    vf, rid = vfs[0], int(vfs[0].pdev.pcie_id)
    await vf.write_reg(regs.SCRATCH, 0x600DF00D)
    async with interrupt_held(system):
        await host_write(system, vf.pdev.bar_addr[device.REG_BAR] + regs.SCRATCH.offset, b"\xee" * 4, ep=True)
        await Timer(2, "us")
        assert await vf.read_reg(regs.SCRATCH) == 0x600DF00D
        got = await aer_regs(vf.pdev)
        assert got.uncor_status == pci.PCI_ERR_UNC_POISON_TLP and got.first_error == fep(pci.PCI_ERR_UNC_POISON_TLP)
        assert got.header[0] >> 24 == 0x40 and got.header[0] & 1 << 14  # MWr with EP
        assert [(m.source_id, m.message) for m in watch.messages] == [(rid, "ERR_NONFATAL")]
        status, source = await root_error(system)
        assert status & pci.PCI_ERR_ROOT_UNCOR_RCV and source >> 16 == rid
    await recovered(system, rid)
    assert vf.error_handler_calls == NORMAL_RECOVERY

    fault = system.rc.inject.poison_completion(rid)
    async with interrupt_held(system):
        assert await vf.start_xmit(frame(vf.mac, vfs[1].mac, 1))
        await Timer(20, "us")
        assert fault.fired and fault.address == vf.netdev.tx[0].desc_iova
        assert regs.TXDCTL.field("ERR").get(await vf.read_reg(regs.TXDCTL, 0)) == QueueError.DMA_FAULT
        got = await aer_regs(vf.pdev)
        assert got.uncor_status == pci.PCI_ERR_UNC_POISON_TLP
        assert got.header[0] >> 24 == 0x4A and got.header[0] & 1 << 14  # a completion with data, EP
        assert got.header[2] >> 16 == rid  # the completion's Requester ID: this VF
    await recovered(system, rid, count=2)
    assert vf.error_handler_calls == NORMAL_RECOVERY + RESET_RECOVERY
    await works(vf, vfs[1])
    await traffic.stop_and_check()
    assert not no_aer_error(watch, 1)


@cocotb.test()
async def completion_timeout_then_unexpected_completion(dut):
    """The root complex answers the VF's descriptor fetch late. With the PF's Completion
    Timeout at 50-100 us the VF gives up at 100 us: Completion Timeout, the request's header
    logged, ERR_NONFATAL, the queue stopped with DMA_FAULT. The completion that comes at
    300 us matches no outstanding request: Unexpected Completion, an Advisory Non-Fatal error
    (ERR_COR once ANF is unmasked), not logged over the first error. The host recovers the VF
    with an FLR; the other VFs' traffic runs on."""
    system, vfs = await up(dut, num_vfs=3)
    watch = Watch(system)
    traffic = Traffic(vfs[1], vfs[2], 6000)
    vf, rid = vfs[0], int(vfs[0].pdev.pcie_id)
    await set_completion_timeout(system.pf_dev, 0x1)  # Range A, 50-100 us: the PF's governs its VFs
    await unmask_advisory(vf.pdev)
    ring = vf.netdev.tx[0].desc_iova
    fault = system.rc.inject.delay_completion(rid, 300_000)
    async with interrupt_held(system):
        assert await vf.start_xmit(frame(vf.mac, vfs[1].mac, 1))
        await Timer(150, "us")
        assert fault.fired and fault.address == ring
        assert regs.TXDCTL.field("ERR").get(await vf.read_reg(regs.TXDCTL, 0)) == QueueError.DMA_FAULT
        assert [(e.error, e.message) for e in watch.errors] == [("CmpltTO", "ERR_NONFATAL")]
        await Timer(200, "us")
        got = await aer_regs(vf.pdev)
        assert got.uncor_status == pci.PCI_ERR_UNC_COMP_TIME | pci.PCI_ERR_UNC_UNX_COMP
        assert got.first_error == fep(pci.PCI_ERR_UNC_COMP_TIME)
        assert got.header[0] >> 24 == 0x00 and got.header[2] == ring  # the MRd that timed out
        assert got.cor_status == pci.PCI_ERR_COR_ADV_NFAT
        assert [(e.error, e.severity, e.message, e.logged) for e in watch.errors] == [
            ("CmpltTO", "nonfatal", "ERR_NONFATAL", True),
            ("UnxCmplt", "advisory", "ERR_COR", False),
        ]
        assert [(m.source_id, m.message) for m in watch.messages] == [(rid, "ERR_NONFATAL"), (rid, "ERR_COR")]
        status, source = await root_error(system)
        assert status & pci.PCI_ERR_ROOT_UNCOR_RCV and status & pci.PCI_ERR_ROOT_COR_RCV
        assert source == rid << 16 | rid
    await recovered(system, rid)
    await expect_within(lambda: ("cor_error_detected", "") in vf.error_handler_calls)
    logged = [(i.source_id, i.severity, i.status) for i in system.aer.errors]
    assert logged == [
        (rid, pcicore.AerSeverity.NONFATAL, pci.PCI_ERR_UNC_COMP_TIME | pci.PCI_ERR_UNC_UNX_COMP),
        (rid, pcicore.AerSeverity.CORRECTABLE, pci.PCI_ERR_COR_ADV_NFAT),
    ]
    assert system.aer.errors[0].tlp_header == got.header
    assert vf.error_handler_calls == RESET_RECOVERY + [("cor_error_detected", "")]
    after = await aer_regs(vf.pdev)
    assert after.uncor_status == 0 and after.cor_status == 0
    await works(vf, vfs[1])
    await traffic.stop_and_check()
    assert not no_aer_error(watch, 1)


@cocotb.test()
async def error_flood_from_one_vf_is_masked_in_that_vf_only(dut):
    """A guest floods errors: 2-byte writes to its MSI-X table, each a Completer Abort and an
    ERR_NONFATAL. Back to back, the root port folds the Messages into few interrupts (Root
    Error Status records the first, the rest only as "multiple"). Kept up every 5 us, the host
    serves them one by one until the VF reported more than AER_RATELIMIT_BURST within 1 ms;
    then it masks Completer Abort in that VF alone: the VF keeps logging them but sends no
    more Messages. Meanwhile another VF's error is logged and recovered, and two other VFs'
    traffic runs on. A new guest (rebind) gets the mask lifted."""
    system, vfs = await up(dut, num_vfs=4)
    watch = Watch(system)
    traffic = Traffic(vfs[1], vfs[2], 7000, interval_us=20)
    attacker, rid = vfs[0], int(vfs[0].pdev.pcie_id)
    other, other_rid = vfs[3], int(vfs[3].pdev.pcie_id)
    table = attacker.pdev.bar_window[device.MSIX_BAR]

    async def misaligned_write(n: int) -> None:
        await table.write(msix_entry(n % device.VF_MSIX_VECTORS) + 1, b"\xab\xcd")

    for n in range(20):  # back to back
        await misaligned_write(n)
    await Timer(1, "us")
    burst = len([m for m in watch.messages if m.source_id == rid])
    assert burst == 20 and system.root_port.interrupts < 5
    await expect_within(lambda: not system.aer.recoveries or system.aer.recoveries[-1].result is not None)
    for n in range(200):  # every 5 us
        await misaligned_write(n)
        if n == 100:
            await other.pdev.bar_window[device.MSIX_BAR].write(msix_entry(1) + 2, b"\x01")
        await Timer(5, "us")
    await expect_within(lambda: rid in system.aer.masked)
    assert system.aer.masked[rid] == (pci.PCI_ERR_UNC_COMP_ABORT, 0)
    assert (await aer_regs(attacker.pdev)).uncor_mask & pci.PCI_ERR_UNC_COMP_ABORT
    assert not (await aer_regs(other.pdev)).uncor_mask & pci.PCI_ERR_UNC_COMP_ABORT
    served = [i for i in system.aer.errors if i.source_id == rid]
    assert len(served) == AER_RATELIMIT_BURST + 1
    assert len([m for m in watch.messages if m.source_id == rid]) <= burst + AER_RATELIMIT_BURST + 2
    # the other VF's error was served in the middle of the flood
    await recovered(system, other_rid)
    assert other.error_handler_calls == NORMAL_RECOVERY
    assert [i.status for i in system.aer.errors if i.source_id == other_rid] == [pci.PCI_ERR_UNC_COMP_ABORT]
    # masked: still logged in the VF, no more Messages
    mark, errors = len(watch.messages), len(watch.errors)
    for n in range(20):
        await misaligned_write(n)
    await Timer(20, "us")
    assert len(watch.messages) == mark
    assert [(e.error, e.message, e.why) for e in watch.errors[errors:]] == [("CmpltAbrt", None, "masked")] * 20
    assert (await aer_regs(attacker.pdev)).uncor_status & pci.PCI_ERR_UNC_COMP_ABORT
    await traffic.stop_and_check()
    assert {e.fn for e in watch.errors} == {1, 4}
    # a new guest: the host lifts the mask
    attacker = await system.rebind_vf(0, 64)
    assert not (await aer_regs(attacker.pdev)).uncor_mask & pci.PCI_ERR_UNC_COMP_ABORT
    await attacker.pdev.bar_window[device.MSIX_BAR].write(msix_entry(0) + 1, b"\xab\xcd")
    await Timer(5, "us")
    assert watch.messages[-1].source_id == rid and len(watch.messages) == mark + 1


@cocotb.test()
async def pf_errors_recover_without_touching_the_vfs(dut):
    """The PF has AER too: its own Completer Abort is reported and recovered through the PF
    driver's handlers, and a write no function claims (a VF BAR past NumVFs) is a
    Non-Function-specific Unsupported Request, logged in the PF (§9.4). No VF driver is
    called, the VFs' traffic runs on."""
    system, vfs = await up(dut, num_vfs=3)
    watch = Watch(system)
    traffic = Traffic(vfs[0], vfs[1], 8000, interval_us=20)
    pf_rid = int(system.pf_dev.pcie_id)
    table = system.pf_dev.bar_window[device.MSIX_BAR]
    await table.write(msix_entry(5) + 1, b"\x77")
    await recovered(system, pf_rid)
    assert system.aer.errors[-1].status == pci.PCI_ERR_UNC_COMP_ABORT
    assert system.pf.error_handler_calls == NORMAL_RECOVERY
    vf_bar = system.pf.sriov.state.bar_base[device.REG_BAR]
    unclaimed = vf_bar + 3 * system.pf.sriov.state.bar_size[device.REG_BAR]  # VF 3: not enabled
    await system.rc.mem_write(unclaimed, b"\0" * 4)
    await recovered(system, pf_rid, count=2)
    info = system.aer.errors[-1]
    assert (info.source_id, info.status, info.tlp_header[2]) == (pf_rid, pci.PCI_ERR_UNC_UNSUP, unclaimed)
    assert [(e.fn, e.error) for e in watch.errors] == [(0, "CmpltAbrt"), (0, "UnsupReq")]
    assert all(not vf.error_handler_calls for vf in vfs)
    await traffic.stop_and_check()


@cocotb.test()
async def aer_set_up_and_sticky_across_flr(dut):
    """What the host set up: every function has AER; the PF's Device Control reports errors,
    a VF's reporting enables are RsvdP (the PF's govern); the root port reports to the host
    by MSI. The AER registers are sticky: a VF FLR leaves a mask and a logged error alone,
    while it clears Device Status."""
    system, vfs = await up(dut, num_vfs=2)
    exp = await pcicore.find_capability(system.pf_dev, pci.PCI_CAP_ID_EXP)
    pf_ctl = await system.pf_dev.config_read_word(exp + pci.PCI_EXP_DEVCTL)
    assert pf_ctl & pci.PCI_EXP_AER_FLAGS == pci.PCI_EXP_AER_FLAGS
    vf = vfs[0].pdev
    vexp = await pcicore.find_capability(vf, pci.PCI_CAP_ID_EXP)
    assert await vf.config_read_word(vexp + pci.PCI_EXP_DEVCTL) & pci.PCI_EXP_AER_FLAGS == 0
    port = system.aer.port
    pos = await pcicore.find_ext_capability(port, pci.PCI_EXT_CAP_ID_ERR)
    assert await port.config_read_dword(pos + pci.PCI_ERR_ROOT_COMMAND) == ROOT_CMD_ALL
    msi = await pcicore.find_capability(port, pci.PCI_CAP_ID_MSI)
    assert await port.config_read_word(msi + pci.PCI_MSI_FLAGS) & pci.PCI_MSI_FLAGS_ENABLE
    vpos = await pcicore.find_ext_capability(vf, pci.PCI_EXT_CAP_ID_ERR)
    await vf.config_write_dword(vpos + pci.PCI_ERR_UNCOR_MASK, pci.PCI_ERR_UNC_UNSUP)
    async with interrupt_held(system):
        await set_power_state(vf, pci.PCI_D3HOT)
        assert await vfs[0].read_reg(regs.SCRATCH) == 0xFFFFFFFF  # UR: masked, so not logged
        await vf.config_write_dword(vpos + pci.PCI_ERR_UNCOR_MASK, 0)
        await vfs[0].pdev.bar_window[device.REG_BAR].write_dword(regs.SCRATCH.offset, 1)
        await Timer(2, "us")
        before = await aer_regs(vf)
        assert before.uncor_status == pci.PCI_ERR_UNC_UNSUP and before.devsta & pci.PCI_EXP_DEVSTA_URD
        await vf.config_write_dword(vpos + pci.PCI_ERR_UNCOR_MASK, pci.PCI_ERR_UNC_ACSV)
        vfs[0].reset_prepare()
        await pcicore.pcie_flr(vf)
        after = await aer_regs(vf)
        assert (after.uncor_status, after.uncor_mask, after.first_error, after.header) == (
            before.uncor_status,
            pci.PCI_ERR_UNC_ACSV,
            before.first_error,
            before.header,
        )
        assert after.devsta & 0xF == 0  # Device Status is not sticky
        await vf.config_write_dword(vpos + pci.PCI_ERR_UNCOR_STATUS, 0xFFFFFFFF)
        await vf.config_write_dword(vpos + pci.PCI_ERR_COR_STATUS, 0xFFFFFFFF)
        status, _ = await root_error(system)
        await port.config_write_dword(pos + pci.PCI_ERR_ROOT_STATUS, status)

"""Assertions and raw accesses shared by the cocotb tests."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cocotbext.pcie.core.tlp import CplStatus, Tlp, TlpType
from cocotbext.pcie.core.utils import PcieId

import pcicore
from datasheet import device, pci

if TYPE_CHECKING:
    from cocotbext.pcie.core import RootComplex
    from cocotbext.pcie.core.pci import PciDevice


async def config_dword_at(rc: RootComplex, rid: int, offset: int) -> int:
    """Config read at a raw Routing ID (all ones when nothing answers)."""
    return await rc.config_read_dword(PcieId.from_int(rid), offset)


async def mem_read_status(rc: RootComplex, addr: int, length: int = 4) -> CplStatus:
    """Issue one MRd TLP from the root complex; return the completion status."""
    req = Tlp()
    req.fmt_type = TlpType.MEM_READ if addr < 1 << 32 else TlpType.MEM_READ_64
    req.requester_id = PcieId(0, 0, 0)
    req.set_addr_be(addr, length)
    cpls = await rc.perform_nonposted_operation(req, timeout=10_000)
    assert cpls, "no completion"
    return cpls[0].status


async def assert_vf_config(vf: PciDevice) -> None:
    """A VF's config space per SR-IOV 1.1 §3.4-§3.5."""
    assert await vf.config_read_dword(pci.PCI_VENDOR_ID) == 0xFFFFFFFF
    assert (await vf.config_read_dword(pci.PCI_REVISION_ID)) >> 8 == device.CLASS_CODE
    assert await vf.config_read_byte(pci.PCI_HEADER_TYPE) == 0
    cmd = await vf.config_read_word(pci.PCI_COMMAND)
    await vf.config_write_word(pci.PCI_COMMAND, cmd | pci.PCI_COMMAND_MEMORY | pci.PCI_COMMAND_IO)
    assert not await vf.config_read_word(pci.PCI_COMMAND) & (pci.PCI_COMMAND_MEMORY | pci.PCI_COMMAND_IO)
    for bar in range(pci.PCI_NUM_BARS):
        await vf.config_write_dword(pci.PCI_BASE_ADDRESS_0 + 4 * bar, 0xFFFFFFFF)
        assert await vf.config_read_dword(pci.PCI_BASE_ADDRESS_0 + 4 * bar) == 0
    assert await vf.config_read_byte(pci.PCI_INTERRUPT_PIN) == 0
    assert await vf.config_read_word(pci.PCI_SUBSYSTEM_ID) == device.VF_SUBSYSTEM_ID
    exp = await pcicore.find_capability(vf, pci.PCI_CAP_ID_EXP)
    assert await vf.config_read_dword(exp + pci.PCI_EXP_DEVCAP) & pci.PCI_EXP_DEVCAP_FLR
    msix = await pcicore.find_capability(vf, pci.PCI_CAP_ID_MSIX)
    flags = await vf.config_read_word(msix + pci.PCI_MSIX_FLAGS)
    assert (flags & pci.PCI_MSIX_FLAGS_QSIZE) + 1 == device.VF_MSIX_VECTORS
    assert await vf.config_read_dword(msix + pci.PCI_MSIX_TABLE) == device.MSIX_BAR | device.MSIX_TABLE_OFFSET
    assert await pcicore.find_ext_capability(vf, pci.PCI_EXT_CAP_ID_ARI) is not None
    assert await pcicore.find_ext_capability(vf, pci.PCI_EXT_CAP_ID_SRIOV) is None

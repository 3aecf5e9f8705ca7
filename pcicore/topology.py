"""What the host does along the path above a function: ARI and ACS in the ports above it, the
bus numbers and memory window its VFs need."""

from __future__ import annotations

from cocotbext.pcie.core.pci import PciDevice

from datasheet import pci
from pcicore.config import find_capability, find_ext_capability
from pcicore.errors import PciError


async def pci_enable_acs(dev: PciDevice) -> int:
    """Enable Source Validation, Request and Completion Redirect and Upstream Forwarding in every
    downstream port above ``dev`` that has ACS (Linux ``pci_enable_acs``, done when an IOMMU is
    on so that peer-to-peer requests are translated); returns how many ports were set."""
    wanted = pci.PCI_ACS_SV | pci.PCI_ACS_RR | pci.PCI_ACS_CR | pci.PCI_ACS_UF
    count = 0
    bridge = dev.upstream_bridge()
    while bridge is not None:
        pos = await find_ext_capability(bridge, pci.PCI_EXT_CAP_ID_ACS)
        if pos is not None:
            cap = await bridge.config_read_word(pos + pci.PCI_ACS_CAP)
            ctrl = await bridge.config_read_word(pos + pci.PCI_ACS_CTRL)
            await bridge.config_write_word(pos + pci.PCI_ACS_CTRL, ctrl | (cap & wanted))
            count += 1
        bridge = bridge.upstream_bridge()
    return count


async def pci_enable_ari(dev: PciDevice) -> bool:
    """Enable ARI Forwarding in the upstream port if both ends support ARI (Linux pci_configure_ari)."""
    bridge = dev.upstream_bridge()
    if bridge is None or await find_ext_capability(dev, pci.PCI_EXT_CAP_ID_ARI) is None:
        return False
    exp = await find_capability(bridge, pci.PCI_CAP_ID_EXP)
    if exp is None or not await bridge.config_read_dword(exp + pci.PCI_EXP_DEVCAP2) & pci.PCI_EXP_DEVCAP2_ARI:
        return False
    ctl2 = await bridge.config_read_word(exp + pci.PCI_EXP_DEVCTL2)
    await bridge.config_write_word(exp + pci.PCI_EXP_DEVCTL2, ctl2 | pci.PCI_EXP_DEVCTL2_ARI)
    return True


async def pci_bus_reserve(dev: PciDevice, last_bus: int) -> None:
    """Make the upstream bridge forward config requests up to ``last_bus``.

    Linux reserves the VF bus range while scanning (``pci_iov_bus_range``); the
    cocotbext host scan does not, so the range is extended here, which is only
    possible while no other bridge owns the next bus numbers.
    """
    bridge = dev.upstream_bridge()
    if bridge is None or last_bus <= dev.bus.last_bus_num:
        return
    for other in bridge.bus.devices:
        sub = other.subordinate
        if other is not bridge and sub is not None and sub.bus_num <= last_bus:
            raise PciError(f"buses up to {last_bus:02x} are not free for the VFs of {dev.pcie_id}")
    buses = await bridge.config_read_dword(0x18)
    await bridge.config_write_dword(0x18, (buses & 0xFF00FFFF) | (last_bus << 16))
    dev.bus.last_bus_num = last_bus


async def pci_mmio_reserve(dev: PciDevice, size: int, align: int) -> int:
    """Extend the non-prefetchable window above ``dev`` by ``size`` bytes; return the base.

    Stands in for the resource reservation Linux makes for IOV BARs at scan
    time: the new space is taken from the end of the host's 32-bit MMIO window,
    and every bridge on the path to ``dev`` grows its window to cover it.
    """
    rc = dev.rc
    base = (rc.mem_limit + align - 1) // align * align
    end = base + size
    window_end = rc.mem_base + (rc.mem_base & -rc.mem_base)
    if end > window_end:
        raise PciError(f"no room for {size:#x} bytes of MMIO below {window_end:#x}")
    bridge = dev.upstream_bridge()
    while bridge is not None:
        bridge.mem_limit = max(bridge.mem_limit, ((end + 0xFFFFF) & ~0xFFFFF) - 1)
        await bridge.setup_bridge()
        bridge = bridge.upstream_bridge()
    rc.mem_limit = rc.host_bridge.mem_limit = rc.upstream_bridge.mem_limit = end
    return base

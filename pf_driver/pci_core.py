"""Host PCI core services the drivers call (the Linux ``drivers/pci`` role).

Capability lookup with a loop guard, FLR, ARI enabling, and the SR-IOV helpers
that add or remove a VF from the host's view (``pci_iov_add_virtfn``). All of it
works through config and MMIO requests over cocotbext-pcie's host model
(``PciDevice``); nothing here imports ``model/``.
"""

from __future__ import annotations

from cocotb.triggers import Timer
from cocotbext.pcie.core.pci import PciBus, PciDevice
from cocotbext.pcie.core.utils import PcieId

from datasheet import pci

#: upper bound on list entries visited, as Linux's PCI_FIND_CAP_TTL
PCI_FIND_CAP_TTL = 48
PCI_EXT_CAP_TTL = (pci.PCI_CFG_SPACE_EXP_SIZE - pci.PCI_CFG_SPACE_SIZE) // 8


class PciError(Exception):
    """A host-side PCI operation could not be carried out."""


async def find_capability(dev: PciDevice, cap_id: int) -> int | None:
    """Offset of standard capability ``cap_id`` (PCI 3.0 §6.7), None if absent or the list loops."""
    status = await dev.config_read_word(pci.PCI_STATUS)
    if not status & pci.PCI_STATUS_CAP_LIST or status == 0xFFFF:
        return None
    pos = await dev.config_read_byte(pci.PCI_CAPABILITY_LIST)
    for _ in range(PCI_FIND_CAP_TTL):
        pos &= 0xFC
        if pos < 0x40:
            return None
        header = await dev.config_read_word(pos)
        if header & 0xFF == 0xFF:
            return None
        if header & 0xFF == cap_id:
            return pos
        pos = header >> 8
    return None


async def find_ext_capability(dev: PciDevice, cap_id: int) -> int | None:
    """Offset of extended capability ``cap_id`` (PCIe 6.0 §7.6), None if absent or the list loops."""
    pos = pci.PCI_CFG_SPACE_SIZE
    for _ in range(PCI_EXT_CAP_TTL):
        header = await dev.config_read_dword(pos)
        if header in (0, 0xFFFFFFFF):
            return None
        if header & 0xFFFF == cap_id:
            return pos
        pos = (header >> 20) & 0xFFC
        if pos < pci.PCI_CFG_SPACE_SIZE:
            return None
    return None


async def list_capabilities(dev: PciDevice) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """All (id, offset) of the standard and extended lists, with the same loop guards."""
    std, ext = [], []
    status = await dev.config_read_word(pci.PCI_STATUS)
    if status != 0xFFFF and status & pci.PCI_STATUS_CAP_LIST:
        pos = await dev.config_read_byte(pci.PCI_CAPABILITY_LIST)
        for _ in range(PCI_FIND_CAP_TTL):
            pos &= 0xFC
            if pos < 0x40:
                break
            header = await dev.config_read_word(pos)
            std.append((header & 0xFF, pos))
            pos = header >> 8
    pos = pci.PCI_CFG_SPACE_SIZE
    for _ in range(PCI_EXT_CAP_TTL):
        header = await dev.config_read_dword(pos)
        if header in (0, 0xFFFFFFFF):
            break
        ext.append((header & 0xFFFF, pos))
        pos = (header >> 20) & 0xFFC
        if pos < pci.PCI_CFG_SPACE_SIZE:
            break
    return std, ext


async def pci_save_state(dev: PciDevice) -> dict[int, int]:
    """The function's writable configuration, by dword offset (Linux ``pci_save_state``):
    Command, Cache Line Size, Interrupt Line, BARs, and the PCIe and MSI-X capabilities'
    control registers."""
    offsets = [pci.PCI_COMMAND, pci.PCI_CACHE_LINE_SIZE & ~3, pci.PCI_INTERRUPT_LINE]
    offsets += [pci.PCI_BASE_ADDRESS_0 + 4 * i for i in range(pci.PCI_NUM_BARS)]
    exp = await find_capability(dev, pci.PCI_CAP_ID_EXP)
    if exp is not None:
        offsets += [exp + pci.PCI_EXP_DEVCTL, exp + pci.PCI_EXP_LNKCTL, exp + pci.PCI_EXP_DEVCTL2]
    msix = await find_capability(dev, pci.PCI_CAP_ID_MSIX)
    if msix is not None:
        offsets.append(msix)
    return {off: await dev.config_read_dword(off) for off in offsets}


async def pci_restore_state(dev: PciDevice, state: dict[int, int]) -> None:
    """Write back what :func:`pci_save_state` read (Linux ``pci_restore_state``), the
    Command register last so decode and bus mastering come back on a restored function."""
    exp = await find_capability(dev, pci.PCI_CAP_ID_EXP)
    devctl = exp + pci.PCI_EXP_DEVCTL if exp is not None else None
    for off, value in state.items():
        if off == devctl:
            value &= ~pci.PCI_EXP_DEVCTL_BCR_FLR & 0xFFFF      # never re-initiate an FLR
        if off != pci.PCI_COMMAND:
            await dev.config_write_dword(off, value)
    await dev.config_write_dword(pci.PCI_COMMAND, state[pci.PCI_COMMAND] & 0xFFFF)


async def pcie_flr(dev: PciDevice) -> None:
    """Initiate Function Level Reset and wait the 100 ms the spec allows (PCIe 6.0 §6.6.2)."""
    exp = await find_capability(dev, pci.PCI_CAP_ID_EXP)
    if exp is None:
        raise PciError(f"{dev.pcie_id}: no PCI Express capability")
    devcap = await dev.config_read_dword(exp + pci.PCI_EXP_DEVCAP)
    if not devcap & pci.PCI_EXP_DEVCAP_FLR:
        raise PciError(f"{dev.pcie_id}: FLR not supported")
    ctl = await dev.config_read_word(exp + pci.PCI_EXP_DEVCTL)
    await dev.config_write_word(exp + pci.PCI_EXP_DEVCTL, ctl | pci.PCI_EXP_DEVCTL_BCR_FLR)
    await Timer(int(pci.PCI_FLR_DELAY_S * 1e9), "ns")


async def pci_reset_function(dev: PciDevice) -> None:
    """Reset one function the way Linux does: save its config, FLR, restore (``pci_reset_function``).
    MSI-X comes back disabled: the function's table was reset, so its driver must allocate its
    vectors again (:func:`pci_free_irq_vectors` forgets the old handlers)."""
    state = await pci_save_state(dev)
    msix = await find_capability(dev, pci.PCI_CAP_ID_MSIX)
    state.pop(msix, None)
    await pcie_flr(dev)
    await pci_restore_state(dev, state)
    pci_free_irq_vectors(dev)


async def pci_alloc_irq_vectors(dev: PciDevice, min_vecs: int, max_vecs: int) -> int:
    """Enable MSI-X with up to ``max_vecs`` vectors (Linux ``pci_alloc_irq_vectors``); returns
    how many, or -1. The host, not the device's owner, writes the table: each entry gets the
    message the interrupt controller composes for this requester (remappable format with its
    own IRTE when the root complex remaps interrupts). Entries start unmasked."""
    msix = await find_capability(dev, pci.PCI_CAP_ID_MSIX)
    if msix is None or dev.msix_enabled:
        return -1
    table_size = (await dev.config_read_word(msix + pci.PCI_MSIX_FLAGS) & pci.PCI_MSIX_FLAGS_QSIZE) + 1
    if table_size < min_vecs:
        return -1
    count = min(table_size, max_vecs)
    table = await dev.config_read_dword(msix + pci.PCI_MSIX_TABLE)
    window = dev.bar_window[table & pci.PCI_MSIX_BIR_MASK]
    offset = table & ~pci.PCI_MSIX_BIR_MASK
    if not dev.msi_vectors:
        dev.msi_vectors = dev.rc.msi_alloc_vectors(table_size)
    compose = getattr(dev.rc, "msi_compose_msg", None)
    vectors = dev.msi_vectors[:count]
    messages = compose(int(dev.pcie_id), vectors) if compose else [(v.addr, v.data) for v in vectors]
    flags = await dev.config_read_word(msix + pci.PCI_MSIX_FLAGS)
    await dev.config_write_word(msix + pci.PCI_MSIX_FLAGS, flags & ~pci.PCI_MSIX_FLAGS_ENABLE)
    for k, (addr, data) in enumerate(messages):
        entry = offset + k * pci.PCI_MSIX_ENTRY_SIZE
        await window.write_dword(entry + pci.PCI_MSIX_ENTRY_LOWER_ADDR, addr & 0xFFFFFFFC)
        await window.write_dword(entry + pci.PCI_MSIX_ENTRY_UPPER_ADDR, addr >> 32)
        await window.write_dword(entry + pci.PCI_MSIX_ENTRY_DATA, data)
        await window.write_dword(entry + pci.PCI_MSIX_ENTRY_VECTOR_CTRL, 0)
    await window.read_dword(offset)                     # flush the posted writes
    await dev.config_write_word(msix + pci.PCI_MSIX_FLAGS, flags | pci.PCI_MSIX_FLAGS_ENABLE)
    dev.msix_enabled = True
    return count


def pci_free_irq_vectors(dev: PciDevice) -> None:
    """Forget the handlers bound to ``dev``'s vectors and mark MSI-X unallocated (the host side of
    Linux ``free_irq`` + ``pci_free_irq_vectors`` after the function was reset)."""
    for vector in dev.msi_vectors:
        vector.cb.clear()
    dev.msix_enabled = False


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


def pci_bus_for(pf: PciDevice, bus_num: int) -> PciBus:
    """The host bus object for ``bus_num``: the PF's own, or a virtual bus for VFs past it."""
    if bus_num == pf.bus.bus_num:
        return pf.bus
    for child in pf.bus.children:
        if child.bus_num == bus_num and child.bridge is None:
            return child
    vbus = PciBus(pf.bus, None, bus_num)
    pf.bus.children.append(vbus)
    return vbus


async def pci_iov_add_virtfn(pf: PciDevice, rid: int, vendor_id: int, device_id: int,
                             bars: dict[int, tuple[int, int]]) -> PciDevice:
    """Add one VF to the host's view (Linux ``pci_iov_add_virtfn``).

    ``bars`` maps BAR index to (address, size) computed from the PF's VF BARs;
    a VF's own BAR registers read 0, so they are not probed.
    """
    bus = pci_bus_for(pf, rid >> 8)
    vf = PciDevice(bus)
    vf.pcie_id = PcieId.from_int(rid)
    vf.vendor_id, vf.device_id = vendor_id, device_id
    vf.is_virtfn = True
    vf.physfn = pf
    await vf.setup()
    for idx, (addr, size) in bars.items():
        vf.bar[idx] = vf.bar_addr[idx] = addr
        vf.bar_size[idx] = size
        vf.bar_window[idx] = pf.rc.mem_address_space.create_window(addr, size)
    bus.devices.append(vf)
    return vf


def pci_iov_remove_virtfn(vf: PciDevice) -> None:
    """Remove a VF from the host's view."""
    vf.bus.devices.remove(vf)
    if vf.bus is not vf.physfn.bus and not vf.bus.devices:
        vf.bus.parent.children.remove(vf.bus)

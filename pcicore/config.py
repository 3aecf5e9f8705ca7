"""Capability walks with Linux's loop guards, the offsets found at enumeration, and
saving/restoring a function's configuration."""

from __future__ import annotations

from cocotbext.pcie.core.pci import PciDevice

from datasheet import pci

#: upper bound on list entries visited, as Linux's PCI_FIND_CAP_TTL
PCI_FIND_CAP_TTL = 48
PCI_EXT_CAP_TTL = (pci.PCI_CFG_SPACE_EXP_SIZE - pci.PCI_CFG_SPACE_SIZE) // 8


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


async def pci_find_capability(dev: PciDevice, cap_id: int) -> int | None:
    """Offset of standard capability ``cap_id`` as the host found it when it enumerated ``dev``
    (cocotbext-pcie's ``PciDevice.setup`` walks the list once), the way Linux caches
    ``pdev->pcie_cap`` and ``pdev->msix_cap`` in ``pci_init_capabilities`` instead of walking
    config space again on every use; walks the list (:func:`find_capability`) only when the
    enumeration recorded nothing for ``cap_id``."""
    pos = next((pos for cid, pos in dev.capabilities if cid == cap_id), None)
    return pos if pos is not None else await find_capability(dev, cap_id)


async def pci_find_ext_capability(dev: PciDevice, cap_id: int) -> int | None:
    """Offset of extended capability ``cap_id`` as found at enumeration (Linux's cached
    ``pdev->aer_cap``), else by walking the list (:func:`find_ext_capability`)."""
    pos = next((pos for cid, pos in dev.ext_capabilities if cid == cap_id), None)
    return pos if pos is not None else await find_ext_capability(dev, cap_id)


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
            value &= ~pci.PCI_EXP_DEVCTL_BCR_FLR & 0xFFFF  # never re-initiate an FLR
        if off != pci.PCI_COMMAND:
            await dev.config_write_dword(off, value)
    await dev.config_write_dword(pci.PCI_COMMAND, state[pci.PCI_COMMAND] & 0xFFFF)

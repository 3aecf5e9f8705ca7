"""Interrupt vectors of a function: the host programs its MSI-X table, or its MSI capability
(Linux ``pci_alloc_irq_vectors``)."""

from __future__ import annotations

from cocotbext.pcie.core.pci import PciDevice

from datasheet import pci
from pcicore.config import find_capability


async def pci_alloc_irq_vectors(dev: PciDevice, min_vecs: int, max_vecs: int) -> int:
    """Enable MSI-X with up to ``max_vecs`` vectors (Linux ``pci_alloc_irq_vectors``); returns
    how many, or -1. The host, not the device's owner, writes the table: each entry gets the
    message the interrupt controller composes for this requester (remappable format with its
    own IRTE when the root complex remaps interrupts). Entries start unmasked."""
    msix = await find_capability(dev, pci.PCI_CAP_ID_MSIX)
    if msix is None:
        return await _alloc_msi(dev) if min_vecs <= 1 else -1
    if dev.msix_enabled:
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
    messages = _compose(dev, dev.msi_vectors[:count])
    flags = await dev.config_read_word(msix + pci.PCI_MSIX_FLAGS)
    await dev.config_write_word(msix + pci.PCI_MSIX_FLAGS, flags & ~pci.PCI_MSIX_FLAGS_ENABLE)
    for k, (addr, data) in enumerate(messages):
        entry = offset + k * pci.PCI_MSIX_ENTRY_SIZE
        await window.write_dword(entry + pci.PCI_MSIX_ENTRY_LOWER_ADDR, addr & 0xFFFFFFFC)
        await window.write_dword(entry + pci.PCI_MSIX_ENTRY_UPPER_ADDR, addr >> 32)
        await window.write_dword(entry + pci.PCI_MSIX_ENTRY_DATA, data)
        await window.write_dword(entry + pci.PCI_MSIX_ENTRY_VECTOR_CTRL, 0)
    await window.read_dword(offset)  # flush the posted writes
    await dev.config_write_word(msix + pci.PCI_MSIX_FLAGS, flags | pci.PCI_MSIX_FLAGS_ENABLE)
    dev.msix_enabled = True
    return count


def _compose(dev: PciDevice, vectors: list) -> list[tuple[int, int]]:
    compose = getattr(dev.rc, "msi_compose_msg", None)
    return compose(int(dev.pcie_id), vectors) if compose else [(v.addr, v.data) for v in vectors]


async def _alloc_msi(dev: PciDevice) -> int:
    """One MSI vector (PCI 3.0 §6.8.1, 64-bit address), as Linux falls back to when a function
    has no MSI-X; returns 1, or -1 without an MSI capability."""
    msi = await find_capability(dev, pci.PCI_CAP_ID_MSI)
    if msi is None or dev.msi_enabled:
        return -1
    flags = await dev.config_read_word(msi + pci.PCI_MSI_FLAGS)
    if not flags & pci.PCI_MSI_FLAGS_64BIT:
        return -1
    if not dev.msi_vectors:
        dev.msi_vectors = dev.rc.msi_alloc_vectors(1)
    ((addr, data),) = _compose(dev, dev.msi_vectors[:1])
    await dev.config_write_dword(msi + pci.PCI_MSI_ADDRESS_LO, addr & 0xFFFFFFFC)
    await dev.config_write_dword(msi + pci.PCI_MSI_ADDRESS_HI, addr >> 32)
    await dev.config_write_word(msi + pci.PCI_MSI_DATA_64, data & 0xFFFF)
    await dev.config_write_word(msi + pci.PCI_MSI_FLAGS, flags | pci.PCI_MSI_FLAGS_ENABLE)
    dev.msi_enabled = True
    return 1


def pci_free_irq_vectors(dev: PciDevice) -> None:
    """Forget the handlers bound to ``dev``'s vectors and mark MSI-X unallocated (the host side of
    Linux ``free_irq`` + ``pci_free_irq_vectors`` after the function was reset)."""
    for vector in dev.msi_vectors:
        vector.cb.clear()
    dev.msix_enabled = False

"""MSI-X vectors of a function: the host programs its table (Linux ``pci_alloc_irq_vectors``)."""

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
        # two aligned QWORDs per entry, the widest access the table supports (PCIe 6.0
        # §6.1.4.2): Message Address, then Message Data with Vector Control (unmasked)
        entry = offset + k * pci.PCI_MSIX_ENTRY_SIZE
        await window.write_qword(entry + pci.PCI_MSIX_ENTRY_LOWER_ADDR, addr & ~0x3)
        await window.write_qword(entry + pci.PCI_MSIX_ENTRY_DATA, data)
    await window.read_dword(offset)  # flush the posted writes
    await dev.config_write_word(msix + pci.PCI_MSIX_FLAGS, flags | pci.PCI_MSIX_FLAGS_ENABLE)
    dev.msix_enabled = True
    return count


def pci_free_irq_vectors(dev: PciDevice) -> None:
    """Forget the handlers bound to ``dev``'s vectors and mark MSI-X unallocated (the host side of
    Linux ``free_irq`` + ``pci_free_irq_vectors`` after the function was reset)."""
    for vector in dev.msi_vectors:
        vector.cb.clear()
    dev.msix_enabled = False

"""Interrupt vectors of a function: the host programs its MSI-X table, or its MSI capability
(Linux ``pci_alloc_irq_vectors``), then a driver or a test binds a handler to a vector
(``request_irq``) or waits for it (``wait_for_irq``).

To make a function raise an interrupt, have it do what the NIC signals on: a write-back
on a queue whose TXDCTL/RXDCTL.VECTOR names the vector, a mailbox message, a link change
(PF_IMR), an error event. Each function's vector numbers are its MSI-X table entries:
0..``VF_MSIX_VECTORS``-1 for a VF, 0..``PF_MSIX_VECTORS``-1 for the PF (datasheet.device);
``VF_MBX_VECTOR`` is the VF's mailbox vector.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine

from cocotb.triggers import First, Timer
from cocotbext.pcie.core.pci import PciDevice

from datasheet import pci
from pcicore.config import pci_find_capability


async def pci_alloc_irq_vectors(dev: PciDevice, min_vecs: int, max_vecs: int) -> int:
    """Enable MSI-X with up to ``max_vecs`` vectors (Linux ``pci_alloc_irq_vectors``); returns
    how many, or -1. The host, not the device's owner, writes the table: each entry gets the
    message the interrupt controller composes for this requester (remappable format with its
    own IRTE when the root complex remaps interrupts). Entries start unmasked. The capability
    is the one enumeration found (Linux's ``pdev->msix_cap``), and Message Control is read once
    (only the function's own MSI-X Enable, cleared here, changes it)."""
    msix = await pci_find_capability(dev, pci.PCI_CAP_ID_MSIX)
    if msix is None:
        return await _alloc_msi(dev) if min_vecs <= 1 else -1
    if dev.msix_enabled:
        return -1
    flags = await dev.config_read_word(msix + pci.PCI_MSIX_FLAGS)
    table_size = (flags & pci.PCI_MSIX_FLAGS_QSIZE) + 1
    if table_size < min_vecs:
        return -1
    count = min(table_size, max_vecs)
    table = await dev.config_read_dword(msix + pci.PCI_MSIX_TABLE)
    window = dev.bar_window[table & pci.PCI_MSIX_BIR_MASK]
    offset = table & ~pci.PCI_MSIX_BIR_MASK
    if not dev.msi_vectors:
        dev.msi_vectors = dev.rc.msi_alloc_vectors(table_size)
    dev.msi_msgs = messages = _compose(dev, dev.msi_vectors[:count])
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


def _compose(dev: PciDevice, vectors: list) -> list[tuple[int, int]]:
    compose = getattr(dev.rc, "msi_compose_msg", None)
    return compose(int(dev.pcie_id), vectors) if compose else [(v.addr, v.data) for v in vectors]


def get_cached_msi_msg(dev: PciDevice, vector: int) -> tuple[int, int]:
    """The (address, data) message the host wrote for entry ``vector`` of ``dev``'s MSI-X table
    (or its MSI capability, entry 0) when it allocated the vectors (Linux
    ``get_cached_msi_msg``): what a write by ``dev`` carries to raise that vector, in the
    remappable format while interrupts are remapped. IndexError for an entry not allocated."""
    return getattr(dev, "msi_msgs", ())[vector]


async def _alloc_msi(dev: PciDevice) -> int:
    """One MSI vector (PCI 3.0 §6.8.1, 64-bit address), as Linux falls back to when a function
    has no MSI-X; returns 1, or -1 without an MSI capability."""
    msi = await pci_find_capability(dev, pci.PCI_CAP_ID_MSI)
    if msi is None or dev.msi_enabled:
        return -1
    flags = await dev.config_read_word(msi + pci.PCI_MSI_FLAGS)
    if not flags & pci.PCI_MSI_FLAGS_64BIT:
        return -1
    if not dev.msi_vectors:
        dev.msi_vectors = dev.rc.msi_alloc_vectors(1)
    dev.msi_msgs = _compose(dev, dev.msi_vectors[:1])
    ((addr, data),) = dev.msi_msgs
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


def request_irq(dev: PciDevice, vector: int, handler: Callable[[], Coroutine]) -> None:
    """Run ``handler()`` (a coroutine function) each time MSI-X entry ``vector`` of ``dev``
    fires (Linux ``request_irq`` on ``pci_irq_vector(dev, vector)``). Allocate the vectors
    with :func:`pci_alloc_irq_vectors` first."""
    dev.msi_vectors[vector].cb.append(handler)


async def wait_for_irq(dev: PciDevice, vector: int, timeout_ns: int | None = None) -> bool:
    """Wait until MSI-X entry ``vector`` of ``dev`` has fired since the last call for it;
    False if ``timeout_ns`` passed first. The host sees a vector fire only when the
    function sent its message (enabled, unmasked, Bus Master Enable set) and the platform
    delivered it (with interrupt remapping: the IRTE checked out)."""
    event = dev.msi_vectors[vector].event
    if not event.is_set():
        if timeout_ns is None:
            await event.wait()
        else:
            await First(event.wait(), Timer(timeout_ns, "ns"))
    fired = event.is_set()
    event.clear()
    return fired

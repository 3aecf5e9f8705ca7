"""MSI-X vectors of a function: the host programs its table (Linux ``pci_alloc_irq_vectors``),
then a driver or a test binds a handler to a vector (``request_irq``) or waits for it.

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
        entry = offset + k * pci.PCI_MSIX_ENTRY_SIZE
        await window.write_dword(entry + pci.PCI_MSIX_ENTRY_LOWER_ADDR, addr & 0xFFFFFFFC)
        await window.write_dword(entry + pci.PCI_MSIX_ENTRY_UPPER_ADDR, addr >> 32)
        await window.write_dword(entry + pci.PCI_MSIX_ENTRY_DATA, data)
        await window.write_dword(entry + pci.PCI_MSIX_ENTRY_VECTOR_CTRL, 0)
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

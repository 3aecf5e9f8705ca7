"""Function Level Reset and the reset Linux wraps around it."""

from __future__ import annotations

from cocotb.triggers import Timer
from cocotbext.pcie.core.pci import PciDevice

from datasheet import pci
from pcicore.config import find_capability, pci_restore_state, pci_save_state
from pcicore.errors import PciError
from pcicore.irq import pci_free_irq_vectors


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

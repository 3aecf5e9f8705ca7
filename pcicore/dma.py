"""Which DMA API each function uses (the platform's ``dev->dma_ops``): the host sets it when it
attaches the function to an IOMMU domain; the function's driver looks it up.  It is kept on
the host's device object, as Linux keeps it in ``struct pci_dev``, so it lives as long as the
device does (a table keyed by the device kept every platform a process ever built alive)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cocotbext.pcie.core.pci import PciDevice

if TYPE_CHECKING:
    from iommu import DmaDevice


def set_dma_device(dev: PciDevice, dma: DmaDevice | None) -> None:
    """``dma`` (an :class:`iommu.DmaDevice`, or None) is ``dev``'s DMA API from now on."""
    dev.dma_ops = dma


def dma_device(dev: PciDevice) -> DmaDevice | None:
    """``dev``'s DMA API, None until the host gave it one."""
    return getattr(dev, "dma_ops", None)

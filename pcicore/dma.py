"""Which DMA API each function uses (the platform's ``dev->dma_ops``): the host sets it when it
attaches the function to an IOMMU domain; the function's driver looks it up."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cocotbext.pcie.core.pci import PciDevice

if TYPE_CHECKING:
    from iommu import DmaDevice

_dma: dict[int, DmaDevice] = {}


def set_dma_device(dev: PciDevice, dma: DmaDevice | None) -> None:
    """``dma`` (an :class:`iommu.DmaDevice`, or None) is ``dev``'s DMA API from now on."""
    if dma is None:
        _dma.pop(id(dev), None)
    else:
        _dma[id(dev)] = dma


def dma_device(dev: PciDevice) -> DmaDevice | None:
    """``dev``'s DMA API, None until the host gave it one."""
    return _dma.get(id(dev))

"""Which DMA API each function uses (the platform's ``dev->dma_ops``): the host sets it when it
attaches the function to an IOMMU domain; the function's driver looks it up."""

from __future__ import annotations

from typing import Any

from cocotbext.pcie.core.pci import PciDevice

_dma: dict[int, Any] = {}


def set_dma_device(dev: PciDevice, dma) -> None:
    """``dma`` (an :class:`iommu.DmaDevice`, or None) is ``dev``'s DMA API from now on."""
    if dma is None:
        _dma.pop(id(dev), None)
    else:
        _dma[id(dev)] = dma


def dma_device(dev: PciDevice):
    """``dev``'s DMA API, None until the host gave it one."""
    return _dma.get(id(dev))

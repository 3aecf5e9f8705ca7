"""Intel VT-d style DMA remapping keyed by PCIe requester ID, and the DMA API over it.

Hardware: :class:`Iommu` (context lookup, second-level walk, IOTLB, fault log)
and :class:`IommuRootComplex` (a root complex on either fabric that sends device DMA
through it), whose root ports have ACS and AER.  Software: :class:`IommuDriver` (domains, attach, ``iommu_map``)
and :class:`DmaDevice` (``dma_alloc_coherent``, ``dma_map``...).  The package
knows nothing of any particular device.
"""

from __future__ import annotations

from .allocator import ExtentAllocator, PageAllocator
from .caches import ContextCache, Iotlb
from .dma import (
    DMA_BIDIRECTIONAL,
    DMA_FROM_DEVICE,
    DMA_TO_DEVICE,
    DmaBuffer,
    DmaDevice,
    DmaDirection,
)
from .driver import IOMMU_READ, IOMMU_WRITE, IommuDomain, IommuDriver
from .faults import FaultLog, FaultReason, FaultRecord
from .memory import BytearrayMemory, HostMemory, HostMemoryError, RcHostMemory
from .rc import IommuRootComplex
from .remapping import Iommu

__all__ = [
    "BytearrayMemory",
    "ContextCache",
    "DMA_BIDIRECTIONAL",
    "DMA_FROM_DEVICE",
    "DMA_TO_DEVICE",
    "DmaBuffer",
    "DmaDevice",
    "DmaDirection",
    "ExtentAllocator",
    "FaultLog",
    "FaultReason",
    "FaultRecord",
    "HostMemory",
    "HostMemoryError",
    "IOMMU_READ",
    "IOMMU_WRITE",
    "Iommu",
    "IommuDomain",
    "IommuDriver",
    "IommuRootComplex",
    "Iotlb",
    "PageAllocator",
    "RcHostMemory",
]

"""The DMA-mapping API a device driver calls (Linux ``dma_alloc_coherent``, ``dma_map``...).

A :class:`DmaDevice` stands for one ``struct device`` whose DMA goes through one
IOMMU domain, or, on a platform without an IOMMU, straight to host memory (Linux's
dma-direct: :meth:`DmaDevice.direct`, the bus address is the physical address).  The
driver gets IOVAs to program into its device and :class:`DmaBuffer` handles for CPU
access; host physical addresses stay inside the handles.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING

from .driver import IOMMU_READ, IOMMU_WRITE, IommuDomain, IommuDriver
from .vtd_format import PAGE_MASK, PAGE_SIZE, level_shift

if TYPE_CHECKING:
    from .allocator import PageAllocator
    from .memory import HostMemory

LARGE_ALIGN = 1 << level_shift(2)  # buffers of 2 MiB and more get 2 MiB pages


class DmaDirection(Enum):
    """Who reads the buffer (Linux ``enum dma_data_direction``) and the IOMMU prot it needs."""

    DMA_BIDIRECTIONAL = IOMMU_READ | IOMMU_WRITE
    DMA_TO_DEVICE = IOMMU_READ  # the device reads
    DMA_FROM_DEVICE = IOMMU_WRITE  # the device writes


DMA_BIDIRECTIONAL = DmaDirection.DMA_BIDIRECTIONAL
DMA_TO_DEVICE = DmaDirection.DMA_TO_DEVICE
DMA_FROM_DEVICE = DmaDirection.DMA_FROM_DEVICE


class DmaBuffer:
    """CPU access to a zeroed, page-aligned host buffer (the kernel virtual address)."""

    def __init__(self, memory: HostMemory, phys: int, size: int):
        self._memory = memory
        self.phys = phys  # host physical address (Linux virt_to_phys); the device sees IOVAs
        self.size = size

    def __len__(self) -> int:
        return self.size

    def _check(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise IndexError(f"[{offset:#x}, +{length:#x}) outside a {self.size:#x}-byte buffer")

    def read(self, offset: int = 0, length: int | None = None) -> bytes:
        length = self.size - offset if length is None else length
        self._check(offset, length)
        return self._memory.read(self.phys + offset, length)

    def write(self, offset: int, data: bytes) -> None:
        self._check(offset, len(data))
        self._memory.write(self.phys + offset, bytes(data))


class DmaDevice:
    """DMA operations for the devices attached to ``domain`` (pass-through: IOVA = phys);
    with no IOMMU (``driver`` and ``domain`` None) the IOVA is the physical address."""

    def __init__(self, driver: IommuDriver | None, domain: IommuDomain | None, pages: PageAllocator | None = None):
        self.driver = driver
        self.domain = domain
        self._pages = pages or driver.pages
        self._mapped: dict[int, int] = {}  # IOVA page base -> mapped size

    @classmethod
    def direct(cls, pages: PageAllocator) -> DmaDevice:
        """dma-direct: DMA of a platform without an IOMMU, buffers from ``pages``."""
        return cls(None, None, pages)

    @property
    def translated(self) -> bool:
        """False when IOVAs are host physical addresses (no IOMMU, or pass-through)."""
        return self.domain is not None and not self.domain.passthrough

    @classmethod
    def for_rid(cls, driver: IommuDriver, rid: int, domain: IommuDomain | None = None) -> DmaDevice:
        """Attach ``rid`` to ``domain`` (a new one if None) and return its DMA ops."""
        domain = domain or driver.iommu_domain_alloc()
        driver.attach_device(domain, rid)
        return cls(driver, domain)

    # -- CPU memory --------------------------------------------------------------
    def alloc_buffer(self, size: int) -> DmaBuffer:
        """Zeroed kernel memory, not yet visible to the device (kzalloc)."""
        align = LARGE_ALIGN if size >= LARGE_ALIGN else PAGE_SIZE
        return DmaBuffer(self._pages.memory, self._pages.alloc(size, align), size)

    def free_buffer(self, buf: DmaBuffer) -> None:
        self._pages.free(buf.phys)

    # -- streaming mappings ------------------------------------------------------
    def dma_map(self, buf: DmaBuffer | int, size: int, direction: DmaDirection) -> int:
        """Make ``size`` bytes of ``buf`` (or host physical address ``buf``) reachable
        by the device in ``direction``; returns the IOVA of its first byte."""
        phys = buf.phys if isinstance(buf, DmaBuffer) else buf
        if not self.translated:
            return phys
        first = phys & ~PAGE_MASK
        span = ((phys + size + PAGE_MASK) & ~PAGE_MASK) - first
        align = LARGE_ALIGN if span >= LARGE_ALIGN and not first & (LARGE_ALIGN - 1) else PAGE_SIZE
        iova = self.domain.iova.alloc(span, align)
        self.driver.iommu_map(self.domain, iova, first, span, direction.value)
        self._mapped[iova] = span
        return iova | (phys & PAGE_MASK)

    def dma_unmap(self, iova: int, size: int | None = None, direction: DmaDirection | None = None) -> None:
        """Tear down the mapping made by ``dma_map`` that returned ``iova``."""
        if not self.translated:
            return
        base = iova & ~PAGE_MASK
        span = self._mapped.get(base)
        if span is None or (size is not None and (iova & PAGE_MASK) + size > span):
            raise ValueError(f"dma_unmap of {iova:#x} does not match a dma_map")
        del self._mapped[base]
        self.driver.iommu_unmap(self.domain, base, span)
        self.domain.iova.free(base)

    # -- coherent allocations ----------------------------------------------------
    def dma_alloc_coherent(self, size: int) -> tuple[DmaBuffer, int]:
        """A zeroed buffer mapped both ways: (CPU handle, IOVA)."""
        buf = self.alloc_buffer(size)
        return buf, self.dma_map(buf, size, DMA_BIDIRECTIONAL)

    def dma_free_coherent(self, buf: DmaBuffer, iova: int) -> None:
        self.dma_unmap(iova)
        self.free_buffer(buf)

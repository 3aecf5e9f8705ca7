"""The DMA-mapping API a device driver calls (Linux ``dma_alloc_coherent``, ``dma_map``...).

A :class:`DmaDevice` stands for one ``struct device`` whose DMA goes through one
IOMMU domain, or, on a platform without an IOMMU, straight to host memory (Linux's
dma-direct: :meth:`DmaDevice.direct`, the bus address is the physical address).  The
driver gets IOVAs to program into its device and :class:`DmaBuffer` handles for CPU
access; host physical addresses stay inside the handles.
"""

from __future__ import annotations

from collections.abc import Callable
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
    """CPU access to a zeroed, page-aligned host buffer (the kernel virtual address).

    ``cpu_write_log(phys, length)``, if given, is told of every CPU write: the VMM's dirty log
    of guest memory (KVM_GET_DIRTY_LOG), which the IOMMU's A/D bits do not see."""

    def __init__(
        self, memory: HostMemory, phys: int, size: int, cpu_write_log: Callable[[int, int], None] | None = None
    ):
        self.size = size
        self.relocate(memory, phys, cpu_write_log)

    def relocate(self, memory: HostMemory, phys: int, cpu_write_log: Callable[[int, int], None] | None) -> None:
        """The hypervisor moved this guest memory to ``phys`` of ``memory`` (another host after a
        live migration: its EPT now points there); the guest keeps using the same handle."""
        self._memory, self._log = memory, cpu_write_log
        self.phys = phys  # host physical address (Linux virt_to_phys); the device sees IOVAs
        # the bytes behind the buffer, reached directly as a CPU mapping reaches them, when
        # one piece of memory holds it all (memory is never moved under a live buffer)
        self._ram = memory.span(phys, self.size)

    def __len__(self) -> int:
        return self.size

    def _check(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise IndexError(f"[{offset:#x}, +{length:#x}) outside a {self.size:#x}-byte buffer")

    def read(self, offset: int = 0, length: int | None = None) -> bytes:
        length = self.size - offset if length is None else length
        self._check(offset, length)
        if self._ram is not None:
            mem, base = self._ram
            return bytes(mem[base + offset : base + offset + length])
        return self._memory.read(self.phys + offset, length)

    def write(self, offset: int, data: bytes) -> None:
        length = len(data)
        self._check(offset, length)
        if self._ram is not None:
            mem, base = self._ram
            mem[base + offset : base + offset + length] = data
        else:
            self._memory.write(self.phys + offset, bytes(data))
        if self._log is not None:
            self._log(self.phys + offset, length)


class DmaDevice:
    """DMA operations for the devices attached to ``domain`` (pass-through: IOVA = phys);
    with no IOMMU (``driver`` and ``domain`` None) the IOVA is the physical address."""

    def __init__(self, driver: IommuDriver | None, domain: IommuDomain | None, pages: PageAllocator | None = None):
        self.driver = driver
        self.domain = domain
        self._pages = pages or driver.pages
        self._mapped: dict[int, int] = {}  # IOVA page base -> mapped size
        self._prot: dict[int, int] = {}  # IOVA page base -> IOMMU prot of the mapping
        self._buffers: dict[int, DmaBuffer] = {}  # live buffers by host physical address
        self.cpu_dirty: set[int] | None = None  # host pages the CPU wrote, while logging

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
        buf = DmaBuffer(self._pages.memory, self._pages.alloc(size, align), size, self._cpu_write)
        self._buffers[buf.phys] = buf
        return buf

    def free_buffer(self, buf: DmaBuffer) -> None:
        self._buffers.pop(buf.phys, None)
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
        self._prot[iova] = direction.value
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
        del self._prot[base]
        self.driver.iommu_unmap(self.domain, base, span)
        self.domain.iova.free(base)

    # -- what a VMM needs to move a guest (live migration) -------------------------------------
    def mapped(self) -> list[tuple[int, int, int]]:
        """Every mapping made through this device: (IOVA, size, IOMMU prot), by IOVA."""
        return sorted((iova, span, self._prot[iova]) for iova, span in self._mapped.items())

    def buffers(self) -> list[DmaBuffer]:
        """The buffers allocated here and not freed (the guest memory the driver holds)."""
        return list(self._buffers.values())

    def map_at(self, iova: int, size: int, prot: int) -> int:
        """Allocate ``size`` bytes of host memory and map them at exactly ``iova`` (reproducing a
        guest's IOVA layout on another host); returns their host physical address. A later
        ``dma_unmap(iova)`` / ``free_buffer`` of a buffer :meth:`adopt`-ed there undoes both."""
        align = LARGE_ALIGN if size >= LARGE_ALIGN and not iova & (LARGE_ALIGN - 1) else PAGE_SIZE
        phys = self._pages.alloc(size, align)
        self.domain.iova.claim(iova, size)
        self.driver.iommu_map(self.domain, iova, phys, size, prot)
        self._mapped[iova], self._prot[iova] = size, prot
        return phys

    def unmap_at(self, iova: int) -> None:
        """Undo :meth:`map_at` (the guest unmapped that range meanwhile): unmap, free the memory."""
        phys = self.driver.iova_to_phys(self.domain, iova)
        self.dma_unmap(iova)
        self._pages.free(phys)

    def adopt(self, buf: DmaBuffer, phys: int | None = None) -> None:
        """Take over a guest buffer whose memory now lies at ``phys`` of this device's host; with
        None (a buffer no mapping covers) its bytes are copied into memory allocated here."""
        if phys is None:
            data = buf.read()
            phys = self._pages.alloc(buf.size, LARGE_ALIGN if buf.size >= LARGE_ALIGN else PAGE_SIZE)
            self._pages.memory.write(phys, data)
        buf.relocate(self._pages.memory, phys, self._cpu_write)
        self._buffers[phys] = buf

    def start_cpu_dirty_log(self) -> None:
        """Log the host pages the CPU writes through this device's buffers (KVM dirty logging)."""
        self.cpu_dirty = set()

    def get_cpu_dirty_log(self) -> set[int]:
        """The host pages written since the last call (their page addresses); logging goes on."""
        if self.cpu_dirty is None:
            return set()
        pages, self.cpu_dirty = self.cpu_dirty, set()
        return pages

    def _cpu_write(self, phys: int, length: int) -> None:
        if self.cpu_dirty is not None and length:
            self.cpu_dirty.update(range(phys & ~PAGE_MASK, phys + length, PAGE_SIZE))

    # -- coherent allocations ----------------------------------------------------
    def dma_alloc_coherent(self, size: int) -> tuple[DmaBuffer, int]:
        """A zeroed buffer mapped both ways: (CPU handle, IOVA)."""
        buf = self.alloc_buffer(size)
        return buf, self.dma_map(buf, size, DMA_BIDIRECTIONAL)

    def dma_free_coherent(self, buf: DmaBuffer, iova: int) -> None:
        self.dma_unmap(iova)
        self.free_buffer(buf)

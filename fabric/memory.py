"""Host RAM as the root complex's own hardware sees it: synchronous, by physical address.

The IOMMU's table walks (VT-d §3.4-§3.7), the DMA API's CPU accesses and the transaction-level
fabric's DMA all read and write host RAM directly: no simulator time, no coroutine.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import mmap
    from collections.abc import Iterator

    from cocotbext.pcie.core import RootComplex


class HostMemoryError(Exception):
    """An access to a physical address that no memory backs."""


class RcHostMemory:
    """Synchronous view of a cocotbext-pcie RootComplex's host RAM.

    The RC's RAM is ``rc.mem_pool``, a cocotbext.axi ``Pool`` whose ``regions``
    list holds ``(base, size, offset, MemoryRegion)`` entries, one per
    ``rc.alloc_region``; each MemoryRegion keeps its bytes in the mmap ``.mem``.
    Regions are only ever added, so the sorted index is rebuilt when the list grows, and
    the region last found stays valid: most accesses (a ring, its buffers) hit it again.
    """

    def __init__(self, rc: RootComplex):
        self._pool = rc.mem_pool
        self._pool_base = rc.mem_pool.get_absolute_address(0)
        self._count = -1
        self._bases: list[int] = []
        self._spans: list[tuple[int, int, mmap.mmap]] = []
        self._last: tuple[int, int, mmap.mmap | None] = (0, 0, None)  # base, end, bytes of the last hit

    def _reindex(self) -> None:
        spans = sorted((self._pool_base + base, size, region.mem) for base, size, _offset, region in self._pool.regions)
        self._spans = spans
        self._bases = [base for base, _size, _mem in spans]
        self._count = len(self._pool.regions)

    def span(self, addr: int, length: int) -> tuple[mmap.mmap, int] | None:
        """(mmap, offset) when ``[addr, addr+length)`` lies in one region, else None."""
        base, end, mem = self._last
        if base <= addr and addr + length <= end and length >= 0:
            return mem, addr - base
        if len(self._pool.regions) != self._count:
            self._reindex()
        i = bisect_right(self._bases, addr) - 1
        if i < 0:
            return None
        base, size, mem = self._spans[i]
        off = addr - base
        if 0 <= off and off + length <= size:
            self._last = (base, base + size, mem)
            return mem, off
        return None

    def _segments(self, addr: int, length: int) -> Iterator[tuple[mmap.mmap, int, int]]:
        """Yield (mmap, offset, n) pieces covering [addr, addr+length)."""
        if len(self._pool.regions) != self._count:
            self._reindex()
        while length > 0:
            i = bisect_right(self._bases, addr) - 1
            if i < 0:
                raise HostMemoryError(f"no host memory at {addr:#x}")
            base, size, mem = self._spans[i]
            off = addr - base
            if off >= size:
                raise HostMemoryError(f"no host memory at {addr:#x}")
            n = min(length, size - off)
            yield mem, off, n
            addr += n
            length -= n

    def read(self, addr: int, length: int) -> bytes:
        hit = self.span(addr, length)
        if hit is not None:
            mem, off = hit
            return mem[off : off + length]
        return b"".join(bytes(mem[off : off + n]) for mem, off, n in self._segments(addr, length))

    def write(self, addr: int, data: bytes) -> None:
        hit = self.span(addr, len(data))
        if hit is not None:
            mem, off = hit
            mem[off : off + len(data)] = data
            return
        pos = 0
        for mem, off, n in self._segments(addr, len(data)):
            mem[off : off + n] = data[pos : pos + n]
            pos += n

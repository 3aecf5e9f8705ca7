"""Address-range allocators: host pages for tables and buffers, IOVAs per domain."""

from __future__ import annotations

from bisect import bisect_left

from .memory import HostMemory
from .vtd_format import PAGE_SIZE


def align_up(value: int, align: int) -> int:
    return (value + align - 1) & -align


class ExtentAllocator:
    """First-fit allocator of aligned ranges inside [base, base+size).

    ``top_down`` hands out the highest fitting range first, as Linux's IOVA
    allocator does below the DMA mask.
    """

    def __init__(self, base: int, size: int, granule: int = PAGE_SIZE, top_down: bool = False):
        self.granule = granule
        self.top_down = top_down
        self._free: list[tuple[int, int]] = [(base, base + size)]  # sorted [start, end)
        self._used: dict[int, int] = {}

    def _take(self, i: int, start: int, end: int) -> None:
        lo, hi = self._free[i]
        pieces = [(a, b) for a, b in ((lo, start), (end, hi)) if b > a]
        self._free[i : i + 1] = pieces

    def alloc(self, size: int, align: int = 0) -> int:
        """Return the start of a free range of ``size`` bytes aligned to ``align``."""
        size = align_up(max(size, 1), self.granule)
        align = max(align, self.granule)
        order = range(len(self._free) - 1, -1, -1) if self.top_down else range(len(self._free))
        for i in order:
            lo, hi = self._free[i]
            start = (hi - size) & -align if self.top_down else align_up(lo, align)
            if lo <= start and start + size <= hi:
                self._take(i, start, start + size)
                self._used[start] = size
                return start
        raise MemoryError(f"no free range of {size:#x} bytes aligned to {align:#x}")

    def reserve(self, start: int, size: int) -> None:
        """Withdraw [start, start+size) from the free ranges (e.g. the MSI window)."""
        end = start + size
        for i in range(len(self._free) - 1, -1, -1):
            lo, hi = self._free[i]
            if lo < end and start < hi:
                self._take(i, max(lo, start), min(hi, end))

    def claim(self, start: int, size: int) -> None:
        """Allocate exactly [start, start+size) (it must be free): an IOVA layout reproduced
        elsewhere, e.g. a migrated guest's; :meth:`free` returns it like any other."""
        size = align_up(max(size, 1), self.granule)
        for i, (lo, hi) in enumerate(self._free):
            if lo <= start and start + size <= hi:
                self._take(i, start, start + size)
                self._used[start] = size
                return
        raise MemoryError(f"[{start:#x}, +{size:#x}) is not free")

    def free(self, start: int) -> int:
        """Return the range starting at ``start`` to the pool; its size is returned."""
        size = self._used.pop(start)
        end = start + size
        i = bisect_left(self._free, (start, end))
        if i < len(self._free) and self._free[i][0] == end:
            end = self._free.pop(i)[1]
        if i > 0 and self._free[i - 1][1] == start:
            i -= 1
            start = self._free.pop(i)[0]
        self._free.insert(i, (start, end))
        return size

    def size_of(self, start: int) -> int:
        return self._used[start]


class PageAllocator:
    """Zeroed, page-aligned host memory from [base, base+size) of ``memory``."""

    def __init__(self, memory: HostMemory, base: int, size: int):
        self.memory = memory
        self._extents = ExtentAllocator(base, size)

    def alloc(self, size: int = PAGE_SIZE, align: int = PAGE_SIZE) -> int:
        addr = self._extents.alloc(size, align)
        self.memory.write(addr, bytes(self._extents.size_of(addr)))
        return addr

    def free(self, addr: int) -> None:
        self._extents.free(addr)

"""Host memory as the IOMMU and the DMA API see it: synchronous, by physical address.

The remapping hardware fetches root, context and page-table entries from host
memory (VT-d §3.4-§3.7); here those fetches are plain synchronous reads so that a
translation costs no simulator time and no coroutine.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import mmap
    from collections.abc import Iterator

    from cocotbext.pcie.core import RootComplex


class HostMemoryError(Exception):
    """An access to a physical address that no memory backs."""


@runtime_checkable
class HostMemory(Protocol):
    """Synchronous byte access to host physical memory."""

    def read(self, addr: int, length: int) -> bytes: ...

    def write(self, addr: int, data: bytes) -> None: ...


class BytearrayMemory:
    """``size`` bytes of host memory at physical ``base``, for unit tests."""

    def __init__(self, size: int, base: int = 0):
        self.base = base
        self.size = size
        self.mem = bytearray(size)

    def _offset(self, addr: int, length: int) -> int:
        off = addr - self.base
        if off < 0 or length < 0 or off + length > self.size:
            raise HostMemoryError(f"no memory at {addr:#x}+{length:#x}")
        return off

    def read(self, addr: int, length: int) -> bytes:
        off = self._offset(addr, length)
        return bytes(self.mem[off : off + length])

    def write(self, addr: int, data: bytes) -> None:
        off = self._offset(addr, len(data))
        self.mem[off : off + len(data)] = data


class RcHostMemory:
    """Synchronous view of a cocotbext-pcie RootComplex's host RAM.

    The RC's RAM is ``rc.mem_pool``, a cocotbext.axi ``Pool`` whose ``regions``
    list holds ``(base, size, offset, MemoryRegion)`` entries, one per
    ``rc.alloc_region``; each MemoryRegion keeps its bytes in the mmap ``.mem``.
    Regions are only ever added, so the sorted index is rebuilt when the list grows.
    """

    def __init__(self, rc: RootComplex):
        self._pool = rc.mem_pool
        self._pool_base = rc.mem_pool.get_absolute_address(0)
        self._count = -1
        self._bases: list[int] = []
        self._spans: list[tuple[int, int, mmap.mmap]] = []

    def _reindex(self) -> None:
        spans = sorted((self._pool_base + base, size, region.mem) for base, size, _offset, region in self._pool.regions)
        self._spans = spans
        self._bases = [base for base, _size, _mem in spans]
        self._count = len(self._pool.regions)

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
        return b"".join(bytes(mem[off : off + n]) for mem, off, n in self._segments(addr, length))

    def write(self, addr: int, data: bytes) -> None:
        pos = 0
        for mem, off, n in self._segments(addr, len(data)):
            mem[off : off + n] = data[pos : pos + n]
            pos += n

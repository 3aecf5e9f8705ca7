"""Host memory as the IOMMU and the DMA API see it: synchronous, by physical address.

The remapping hardware fetches root, context and page-table entries from host
memory (VT-d §3.4-§3.7); here those fetches are plain synchronous reads so that a
translation costs no simulator time and no coroutine.  The root complex's own RAM view
(:class:`RcHostMemory`) is the fabric's (:mod:`fabric.memory`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from fabric.memory import HostMemoryError, RcHostMemory

if TYPE_CHECKING:
    import mmap

__all__ = ["BytearrayMemory", "HostMemory", "HostMemoryError", "RcHostMemory"]


@runtime_checkable
class HostMemory(Protocol):
    """Synchronous byte access to host physical memory."""

    def read(self, addr: int, length: int) -> bytes: ...

    def write(self, addr: int, data: bytes) -> None: ...

    def span(self, addr: int, length: int) -> tuple[bytearray | mmap.mmap, int] | None:
        """(the bytes, offset) that hold ``[addr, addr+length)`` when one piece of memory holds
        them all, else None: what a CPU mapping of a buffer reaches directly."""


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

    def span(self, addr: int, length: int) -> tuple[bytearray, int] | None:
        off = addr - self.base
        return (self.mem, off) if 0 <= off and 0 <= length and off + length <= self.size else None

    def read(self, addr: int, length: int) -> bytes:
        off = self._offset(addr, length)
        return bytes(self.mem[off : off + length])

    def write(self, addr: int, data: bytes) -> None:
        off = self._offset(addr, len(data))
        self.mem[off : off + len(data)] = data

"""cocotbext.axi address spaces with a quicker look-up, same behaviour.

Every host MMIO access (a ``bar_window`` is a window on the root complex's memory space) and
every DMA goes through an ``AddressSpace``, whose look-up scans and sorts its regions on each
access.  :class:`HostAddressSpace` keeps them sorted and bisects (the root complex's space:
RAM pool, BAR windows, MSI region); :class:`BusMasterSpace` is a function's memory space on
the fast fabric, one region covering all of it.  An access that one region holds entirely
goes straight to it; anything else (an access across regions, past the end, into a hole)
takes the stock path, with its exceptions.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import TYPE_CHECKING, Any

from cocotbext.axi import AddressSpace, Region
from cocotbext.axi.address_space import Window

if TYPE_CHECKING:
    from collections.abc import Sequence

SPACE = 2**64


class HostWindow(Window):
    """A window on the host's memory space (a ``bar_window``) whose DWORD accesses, what
    drivers do, skip the generic word packing: same checks, same bytes."""

    async def read_dword(self, address: int, byteorder: str = "little", **kwargs: Any) -> int:
        self.check_range(address, 4)
        return int.from_bytes(await self.parent.read(self.offset + address, 4, **kwargs), byteorder)

    async def write_dword(self, address: int, data: int, byteorder: str = "little", **kwargs: Any) -> None:
        self.check_range(address, 4)
        await self.parent.write(self.offset + address, data.to_bytes(4, byteorder), **kwargs)


class HostAddressSpace(AddressSpace):
    """An ``AddressSpace`` that finds regions by bisection over an index kept sorted."""

    def __init__(self, size: int = SPACE, **kwargs: Any):
        super().__init__(size=size, **kwargs)
        self.window_type = HostWindow
        self._bases: list[int] = []
        self._entries: list[tuple] = []
        self._count = -1

    def __bool__(self) -> bool:
        return True  # ``len()`` of a 2**64-byte space overflows; ``space or default`` must not ask

    def register_region(self, region: Region, base: int, size: int | None = None, offset: int | None = 0) -> None:
        super().register_region(region, base, size, offset)
        self._count = -1

    def _index(self) -> None:
        self._entries = sorted(self.regions, key=lambda entry: entry[0])
        self._bases = [entry[0] for entry in self._entries]
        self._count = len(self.regions)

    def find_regions(self, address: int, length: int = 1) -> list[tuple]:
        if address < 0 or address >= self.size:
            raise ValueError("address out of range")
        if length < 0:
            raise ValueError("invalid length")
        if len(self.regions) != self._count:
            self._index()
        end = address + max(length, 1)
        i = max(bisect_right(self._bases, address) - 1, 0)
        found = []
        for entry in self._entries[i:]:
            base, size = entry[0], entry[1]
            if base >= end:
                break
            if address < base + size:
                found.append(entry)
        return found

    def _holder(self, address: int, length: int) -> tuple | None:
        """The one region entry that holds ``[address, address+length)``, if any."""
        if address < 0 or address >= self.size or length < 0:
            return None
        if len(self.regions) != self._count:
            self._index()
        i = bisect_right(self._bases, address) - 1
        if i < 0:
            return None
        entry = self._entries[i]
        return entry if address + max(length, 1) <= entry[0] + entry[1] else None

    async def read(self, address: int, length: int, **kwargs: Any) -> bytes:
        entry = self._holder(address, length)
        if entry is None:
            return await super().read(address, length, **kwargs)
        base, _size, offset, region = entry
        seg = address if offset is None else address - base + offset
        return bytes(await region.read(seg, length, **kwargs))

    async def write(self, address: int, data: bytes, **kwargs: Any) -> None:
        entry = self._holder(address, len(data))
        if entry is None:
            await super().write(address, data, **kwargs)
            return
        base, _size, offset, region = entry
        await region.write(address if offset is None else address - base + offset, data, **kwargs)


class BusMasterSpace(AddressSpace):
    """A function's memory space holding one region, ``master``, over all of it."""

    def __init__(self, master: Region):
        super().__init__(SPACE)
        self.register_region(master, 0, SPACE)
        self.master = master

    async def read(self, address: int, length: int, **kwargs: Any) -> bytes:
        if 0 <= address and address + max(length, 1) <= SPACE:
            return await self.master.read(address, length, **kwargs)
        return await super().read(address, length, **kwargs)

    def read_burst(self, cut: Sequence[tuple[int, int]]) -> bytes | None:
        """The read requests ``cut`` at once, or None (:meth:`fabric.transaction.BusMasterRegion.read_burst`)."""
        return self.master.read_burst(cut)

    async def read_request(self, address: int, nbytes: int) -> tuple[Any, bytes, Any]:
        """One read request of the function, its completion annotated
        (:meth:`fabric.transaction.BusMasterRegion.read_request`)."""
        return await self.master.read_request(address, nbytes)

    async def write(self, address: int, data: bytes, **kwargs: Any) -> None:
        if 0 <= address and address + max(len(data), 1) <= SPACE:
            await self.master.write(address, data, **kwargs)
            return
        await super().write(address, data, **kwargs)

"""Translation caches of the remapping hardware: context-cache and IOTLB (VT-d §6.1, §6.2).

Both are plain dicts so that a hit costs one lookup; both are invalidated only
when software says so (§6.5), which is what lets a stale mapping outlive its
page-table entry until the invalidation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from observe import EventBus

from .events import IotlbFill, IotlbInvalidate
from .vtd_format import PAGE_SHIFT

if TYPE_CHECKING:
    from collections.abc import Iterable


class Context(NamedTuple):
    """A decoded, present and valid context entry (§9.3)."""

    did: int
    tt: int
    slptptr: int
    levels: int
    aw_bits: int
    fpd: bool


class ContextCache:
    """Context entries by source ID, tagged with their domain ID (§6.1)."""

    def __init__(self):
        self.entries: dict[int, Context] = {}
        self.hits = 0
        self.misses = 0

    def lookup(self, source_id: int) -> Context | None:
        ctx = self.entries.get(source_id)
        if ctx is None:
            self.misses += 1
        else:
            self.hits += 1
        return ctx

    def invalidate(self, did: int | None = None, source_id: int | None = None) -> None:
        """Global (no arguments), domain-selective or device-selective invalidation (§6.5.1.1)."""
        if source_id is not None:
            self.entries.pop(source_id, None)
        elif did is not None:
            self.entries = {sid: ctx for sid, ctx in self.entries.items() if ctx.did != did}
        else:
            self.entries.clear()


class IotlbEntry(NamedTuple):
    page: int  # host physical address of the page
    shift: int  # log2 page size: 12, 21 or 30
    perms: int  # SL_R | SL_W, ANDed over all levels
    slot: int = 0  # host address of the leaf entry (where A/D bits are set)
    dirty: bool = False  # the leaf's D bit as cached: a write through a clean entry sets it


class Iotlb:
    """Leaf translations keyed by (domain ID, page shift, IOVA page number) (§6.2.2).

    ``capacity`` bounds the entries; the oldest one is evicted first.
    """

    def __init__(self, capacity: int = 8192, events: EventBus | None = None):
        self.capacity = capacity
        events = events or EventBus()
        self._fill = events.topic(IotlbFill)
        self._invalidate = events.topic(IotlbInvalidate)
        self.entries: dict[tuple[int, int, int], IotlbEntry] = {}
        self._count: dict[int, int] = {}  # entries per page shift
        self._shifts: list[int] = []  # page shifts present, smallest first
        self.hits = 0
        self.misses = 0
        self.walks = 0  # page walks the hardware performed to fill it

    def lookup(self, did: int, iova: int) -> IotlbEntry | None:
        entry = self.peek(did, iova)
        if entry is None:
            self.misses += 1
        else:
            self.hits += 1
        return entry

    def peek(self, did: int, iova: int) -> IotlbEntry | None:
        """The entry :meth:`lookup` finds, without counting the look-up."""
        get = self.entries.get
        for shift in self._shifts:
            entry = get((did, shift, iova >> shift))
            if entry is not None:
                return entry
        return None

    def insert(self, did: int, iova: int, entry: IotlbEntry) -> None:
        key = (did, entry.shift, iova >> entry.shift)
        if key not in self.entries:
            if len(self.entries) >= self.capacity:
                self._drop([next(iter(self.entries))])
            self._count[entry.shift] = self._count.get(entry.shift, 0) + 1
            self._shifts = sorted(self._count)
        self.entries[key] = entry
        if self._fill:
            self._fill.emit(IotlbFill(did, iova, entry.shift))

    def update(self, did: int, iova: int, entry: IotlbEntry) -> None:
        """Replace a cached entry in place (the hardware's own A/D update, not a fill)."""
        key = (did, entry.shift, iova >> entry.shift)
        if key in self.entries:
            self.entries[key] = entry

    def _drop(self, keys: Iterable[tuple[int, int, int]]) -> None:
        for key in keys:
            if self.entries.pop(key, None) is not None:
                self._count[key[1]] -= 1
                if not self._count[key[1]]:
                    del self._count[key[1]]
                    self._shifts = sorted(self._count)

    def invalidate(self, did: int | None = None) -> None:
        """Global (``did`` None) or domain-selective invalidation (§6.5.1.2)."""
        if self._invalidate:
            self._invalidate.emit(IotlbInvalidate(did))
        if did is None:
            self._drop(list(self.entries))
        else:
            self._drop([key for key in self.entries if key[0] == did])

    def invalidate_pages(self, did: int, addr: int, am: int) -> None:
        """Page-selective-within-domain invalidation: the 2**am 4 KiB pages at
        ``addr`` (aligned down to that size) and any larger page overlapping them."""
        if self._invalidate:
            self._invalidate.emit(IotlbInvalidate(did, addr, am))
        span = PAGE_SHIFT + am
        start = addr >> span << span
        last = start + (1 << span) - 1
        if (1 << am) <= len(self.entries):  # few pages: name their keys
            keys = [(did, shift, vpn) for shift in self._shifts for vpn in range(start >> shift, (last >> shift) + 1)]
        else:  # few entries: test each
            keys = [key for key in self.entries if key[0] == did and start >> key[1] <= key[2] <= last >> key[1]]
        self._drop(keys)

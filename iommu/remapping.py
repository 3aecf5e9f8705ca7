"""The DMA-remapping hardware unit: context lookup, second-level walk, IOTLB, faults.

Models the VT-d legacy-mode translation of untranslated requests (§3.4 context
lookup, §3.6-§3.7 second-level translation) by reading the root, context and
paging entries from host memory as real bytes.  Nothing here raises for a bad
request: a blocked request yields a :class:`FaultRecord` (§7).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from observe import EventBus

from .caches import Context, ContextCache, Iotlb, IotlbEntry
from .events import Translation
from .faults import FaultLog, FaultReason, FaultRecord
from .irq_remapping import InterruptRemapper
from .memory import HostMemory, HostMemoryError
from .vtd_format import (
    CE_FPD,
    CE_HI_AW_MASK,
    CE_HI_DID_MASK,
    CE_HI_DID_SHIFT,
    CE_HI_RSVD,
    CE_LO_RSVD,
    CE_P,
    CE_SLPTPTR_MASK,
    CE_TT_MASK,
    CE_TT_SHIFT,
    CONTEXT_ENTRY_SIZE,
    LARGE_PAGE_LEVELS,
    RE_CTP_MASK,
    RE_HI_RSVD,
    RE_LO_RSVD,
    RE_P,
    ROOT_ENTRY_SIZE,
    SL_A,
    SL_ADDR_MASK,
    SL_D,
    SL_PS,
    SL_R,
    SL_RW,
    SL_W,
    SLPTE_SIZE,
    SUPPORTED_AW,
    TT_PASS_THROUGH,
    TT_UNTRANSLATED,
    aw_bits,
    aw_levels,
    context_entry_addr,
    level_shift,
    pack_u64,
    root_entry_addr,
    slpte_offset,
    slpte_reserved,
    unpack_entry128,
    unpack_u64,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

Chunks = list[tuple[int, int]]


class _EntryKind(NamedTuple):
    size: int
    present: int
    rsvd_lo: int
    rsvd_hi: int
    access_error: FaultReason
    not_present: FaultReason
    reserved: FaultReason


_ROOT_ENTRY = _EntryKind(
    ROOT_ENTRY_SIZE,
    RE_P,
    RE_LO_RSVD,
    RE_HI_RSVD,
    FaultReason.ROOT_TABLE_ACCESS_ERROR,
    FaultReason.ROOT_ENTRY_NOT_PRESENT,
    FaultReason.ROOT_ENTRY_RESERVED,
)  # §9.1
_CONTEXT_ENTRY = _EntryKind(
    CONTEXT_ENTRY_SIZE,
    CE_P,
    CE_LO_RSVD,
    CE_HI_RSVD,
    FaultReason.CONTEXT_TABLE_ACCESS_ERROR,
    FaultReason.CONTEXT_ENTRY_NOT_PRESENT,
    FaultReason.CONTEXT_ENTRY_RESERVED,
)  # §9.3


class _Blocked(Exception):
    """Internal: the request being translated is blocked for ``reason``."""

    def __init__(self, reason: FaultReason, level: int = 0):
        super().__init__(reason)
        self.reason = reason
        self.level = level


class Iommu:
    """One DMA-remapping hardware unit (DRHD).

    Software programs it through :meth:`set_root_table` (RTADDR_REG and GCMD.SRTP,
    §10.4.6) and :meth:`set_translation` (GCMD_REG.TE, §10.4.4); ``root_table_address``
    and ``translation_enabled`` read back the status (GSTS_REG).  Software
    invalidates the caches through ``context_cache.invalidate`` (CCMD_REG) and
    ``iotlb.invalidate`` / ``iotlb.invalidate_pages`` (IOTLB_REG, §6.5.1).
    ``reserved_regions`` lists the (base, size) ranges that are not DMA-remapped
    (the interrupt window), for software to keep out of every IOVA space;
    ``interrupt_window`` is that window's (base, size), and ``interrupts`` the interrupt
    remapping half of the unit (:class:`~iommu.irq_remapping.InterruptRemapper`).
    ``events`` publishes every translation, IOTLB fill and invalidation and fault
    (:mod:`iommu.events`).
    """

    def __init__(
        self,
        memory: HostMemory,
        fault_log_size: int = 16,
        iotlb_capacity: int = 8192,
        interrupt_window: tuple[int, int] | None = None,
    ):
        self.memory = memory
        self.events = EventBus()
        self._translation = self.events.topic(Translation)
        self.root_table_address = 0
        self.translation_enabled = False
        self.context_cache = ContextCache()
        self.iotlb = Iotlb(iotlb_capacity, self.events)
        self.faults = FaultLog(fault_log_size, self.events)
        self.interrupts = InterruptRemapper(memory, self.faults)
        self.reserved_regions: list[tuple[int, int]] = []
        self.interrupt_window = interrupt_window
        self.slade: set[int] = set()  # domain IDs whose leaves get A/D bits (dirty tracking)
        self.fast_path = True  # set_fast_path()

    # -- global command (GCMD_REG, §10.4.4) ------------------------------------
    def set_root_table(self, address: int) -> None:
        """RTADDR_REG = ``address``, then GCMD.SRTP: the unit uses the new root table."""
        self.root_table_address = address

    def set_translation(self, enabled: bool) -> None:
        """GCMD.TE: DMA remapping on (every request translated) or off (untranslated)."""
        self.translation_enabled = enabled

    def set_fast_path(self, enabled: bool) -> None:
        """On (the default): a request the context-cache and the IOTLB serve is translated
        from the two entries directly, and the fast fabric takes a burst of such requests at
        once. Off: every request goes through :meth:`translate` one by one (an IOTLB look-up or
        a walk), with the same outcomes, counts and events, to compare the two against."""
        self.fast_path = enabled

    def set_dirty_tracking(self, did: int, enabled: bool) -> None:
        """SLADE for domain ``did`` (VT-d 3.x §3.6.2, §9.6: the scalable-mode PASID entry's
        Second-Level Access/Dirty Enable; this legacy-mode model keeps it per domain ID).
        While on, a walk sets A in the leaf entry and a write sets D, in host memory."""
        if enabled:
            self.slade.add(did)
        else:
            self.slade.discard(did)

    # -- translation ---------------------------------------------------------
    def translate(self, source_id: int, iova: int, length: int, is_write: bool) -> Chunks | FaultRecord:
        """Host-physical (addr, len) chunks for a DMA of ``length`` bytes at ``iova``,
        split where the mapping's pages end, or the FaultRecord of a blocked request."""
        result = self._translate(source_id, iova, length, is_write)
        if self._translation:
            fault = result if isinstance(result, FaultRecord) else None
            self._translation.emit(
                Translation(source_id, iova, length, is_write, () if fault else tuple(result), fault)
            )
        return result

    def translate_request(self, source_id: int, iova: int, length: int, is_write: bool) -> int | FaultRecord:
        """:meth:`translate` of one request, which never crosses 4 KiB (PCIe 6.0 §2.2.7): its
        host-physical address, or the FaultRecord. Same caches, counters, faults and events;
        a request :meth:`cached_translation` serves is counted and published as :meth:`translate`
        would count and publish it."""
        phys = self.cached_translation(source_id, iova, length, is_write)
        if phys is None:
            result = self.translate(source_id, iova, length, is_write)
            return result if isinstance(result, FaultRecord) else result[0][0]
        self.served(source_id, is_write, 1, ((iova, length, phys),))
        return phys

    def cached_translation(self, source_id: int, iova: int, length: int, is_write: bool) -> int | None:
        """The host-physical address of ``length`` bytes at ``iova`` (within one 4 KiB page) when
        the context-cache and the IOTLB alone serve it: both hit with the right it needs, through
        a leaf that needs no A/D update. None when :meth:`translate` must handle it, and always
        with the fast path off (:meth:`set_fast_path`). Nothing is counted or published:
        :meth:`served` does that for what the caller takes."""
        if not (self.translation_enabled and self.fast_path):
            return None
        ctx = self.context_cache.entries.get(source_id)
        if ctx is None or ctx.tt != TT_UNTRANSLATED or iova < 0 or iova + length > 1 << ctx.aw_bits:
            return None
        entry = self.iotlb.peek(ctx.did, iova)
        if (
            entry is None
            or not entry.perms & (SL_W if is_write else SL_R)
            or (is_write and not entry.dirty and ctx.did in self.slade)
        ):
            return None
        offset = iova & ((1 << entry.shift) - 1)
        return entry.page | offset if offset + length <= 1 << entry.shift else None

    def served(self, source_id: int, is_write: bool, count: int, requests: Iterable[tuple[int, int, int]]) -> None:
        """Count and publish ``count`` requests translated by :meth:`cached_translation` and
        taken at once by the caller: a context-cache and an IOTLB hit each, and a
        :class:`Translation` each, as one by one. ``requests`` gives their (IOVA, length,
        host address), in order; it is looked at only while someone subscribes to translations."""
        self.context_cache.hits += count
        self.iotlb.hits += count
        if self._translation:
            for iova, length, phys in requests:
                self._translation.emit(Translation(source_id, iova, length, is_write, ((phys, length),), None))

    def _translate(self, source_id: int, iova: int, length: int, is_write: bool) -> Chunks | FaultRecord:
        if not self.translation_enabled:
            return [(iova, length)]
        ctx = None
        addr = iova
        try:
            ctx = self._context(source_id)
            if ctx.tt == TT_PASS_THROUGH:
                return [(iova, length)]
            end = iova + length
            if iova < 0 or end > 1 << ctx.aw_bits:
                raise _Blocked(FaultReason.ADDRESS_BEYOND_AW)
            need = SL_W if is_write else SL_R
            chunks = []
            while addr < end:
                entry = self.iotlb.lookup(ctx.did, addr) or self._walk(ctx, addr)
                if not entry.perms & need:
                    raise _Blocked(FaultReason.WRITE_DENIED if is_write else FaultReason.READ_DENIED)
                if is_write and not entry.dirty and ctx.did in self.slade:
                    entry = self._set_dirty(ctx.did, addr, entry)
                offset = addr & ((1 << entry.shift) - 1)
                n = min(end - addr, (1 << entry.shift) - offset)
                chunks.append((entry.page | offset, n))
                addr += n
            return chunks
        except _Blocked as blocked:
            record = FaultRecord(source_id, addr, is_write, blocked.reason, blocked.level)
            self.faults.report(record, fpd=ctx is not None and ctx.fpd)
            return record

    # -- context lookup (§3.4.2, §9.1, §9.3) ----------------------------------
    def _fetch(self, addr: int, length: int, reason: FaultReason, level: int = 0) -> bytes:
        try:
            return self.memory.read(addr, length)
        except HostMemoryError:
            raise _Blocked(reason, level) from None

    def _entry128(self, addr: int, kind: _EntryKind) -> tuple[int, int]:
        """Fetch a root or context entry; fault if unreadable, not present or reserved bits set."""
        lo, hi = unpack_entry128(self._fetch(addr, kind.size, kind.access_error))
        if not lo & kind.present:
            raise _Blocked(kind.not_present)
        if lo & kind.rsvd_lo or hi & kind.rsvd_hi:
            raise _Blocked(kind.reserved)
        return lo, hi

    def _context(self, source_id: int) -> Context:
        ctx = self.context_cache.lookup(source_id)
        if ctx is not None:
            return ctx
        lo, _hi = self._entry128(root_entry_addr(self.root_table_address, source_id), _ROOT_ENTRY)
        lo, hi = self._entry128(context_entry_addr(lo & RE_CTP_MASK, source_id), _CONTEXT_ENTRY)
        tt = (lo & CE_TT_MASK) >> CE_TT_SHIFT
        aw = hi & CE_HI_AW_MASK
        if tt not in (TT_UNTRANSLATED, TT_PASS_THROUGH) or (tt == TT_UNTRANSLATED and aw not in SUPPORTED_AW):
            raise _Blocked(FaultReason.CONTEXT_ENTRY_INVALID)
        ctx = Context(
            did=(hi & CE_HI_DID_MASK) >> CE_HI_DID_SHIFT,
            tt=tt,
            slptptr=lo & CE_SLPTPTR_MASK,
            levels=aw_levels(aw),
            aw_bits=aw_bits(aw),
            fpd=bool(lo & CE_FPD),
        )
        self.context_cache.entries[source_id] = ctx
        return ctx

    def _set_dirty(self, did: int, iova: int, entry: IotlbEntry) -> IotlbEntry:
        """A write through a leaf whose D bit is clear (walked or cached): set A and D in the
        entry in memory, atomically as the hardware does, and cache the entry as dirty, so an
        IOTLB hit never hides a write from dirty tracking (VT-d 3.x §3.6.2)."""
        pte = unpack_u64(self.memory.read(entry.slot, SLPTE_SIZE))
        self.memory.write(entry.slot, pack_u64(pte | SL_A | SL_D))
        entry = entry._replace(dirty=True)
        self.iotlb.update(did, iova, entry)
        return entry

    # -- second-level walk (§3.7, §9.8) ----------------------------------------
    def _walk(self, ctx: Context, iova: int) -> IotlbEntry:
        """Walk the SL tables for ``iova``; fill and return the IOTLB entry.
        Access rights are the AND of R/W over every level (§3.7.1)."""
        self.iotlb.walks += 1
        table = ctx.slptptr
        perms = SL_RW
        for level in range(ctx.levels, 0, -1):
            pte = unpack_u64(
                self._fetch(table + slpte_offset(iova, level), SLPTE_SIZE, FaultReason.SLPTE_ACCESS_ERROR, level)
            )
            if not pte & SL_RW:
                raise _Blocked(FaultReason.SLPTE_NOT_PRESENT, level)
            leaf = level == 1 or (level in LARGE_PAGE_LEVELS and pte & SL_PS)
            if pte & slpte_reserved(level, leaf):
                raise _Blocked(FaultReason.SLPTE_RESERVED, level)
            perms &= pte
            if leaf:
                shift = level_shift(level)
                slot = table + slpte_offset(iova, level)
                if ctx.did in self.slade and not pte & SL_A:
                    pte |= SL_A
                    self.memory.write(slot, pack_u64(pte))
                entry = IotlbEntry(pte & SL_ADDR_MASK, shift, perms & SL_RW, slot, bool(pte & SL_D))
                self.iotlb.insert(ctx.did, iova, entry)
                return entry
            table = pte & SL_ADDR_MASK
        raise AssertionError("unreachable: level 1 is always a leaf")

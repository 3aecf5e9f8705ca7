"""The host's IOMMU driver, shaped like Linux intel-iommu: domains, attach, map, unmap.

Owns the root table, context tables and each domain's second-level page tables,
all written as real entries into host memory (VT-d §9), and issues the cache
invalidations the spec requires after changing them (§6.5).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .allocator import ExtentAllocator, PageAllocator
from .events import ContextChange, DomainMap, DomainUnmap
from .remapping import Iommu
from .vtd_format import (
    AW_48,
    CONTEXT_ENTRIES,
    CONTEXT_ENTRY_SIZE,
    IRTE_SIZE,
    LARGE_PAGE_LEVELS,
    PAGE_MASK,
    PAGE_SHIFT,
    RE_CTP_MASK,
    RE_P,
    ROOT_ENTRY_SIZE,
    SL_ADDR_MASK,
    SL_D,
    SL_PS,
    SL_R,
    SL_RW,
    SL_W,
    SLPT_ENTRIES,
    SLPTE_SIZE,
    TABLE_SIZE,
    TT_PASS_THROUGH,
    aw_bits,
    aw_levels,
    context_entry,
    context_entry_addr,
    irte,
    level_shift,
    pack_u64,
    remappable_msi,
    root_entry,
    root_entry_addr,
    slpte,
    slpte_offset,
    unpack_entry128,
    unpack_u64,
)

if TYPE_CHECKING:
    from .rc import IommuRootComplex

IOMMU_READ = SL_R
IOMMU_WRITE = SL_W

#: entries of the interrupt remapping table the driver sets up (IRTA.S = log2 - 1)
IRT_ENTRIES = 4096

IOVA_START = 0x10_0000  # IOVAs below 1 MiB are never handed out (keeps 0 invalid)
IOVA_LIMIT = 1 << 32  # like a 32-bit DMA mask: the allocator works down from here
MAX_PSI_AM = 18  # CAP.MAMV: largest page-selective invalidation (1 GiB); beyond, domain-selective


@dataclass(eq=False)
class IommuDomain:
    """A DMA address space (Linux ``struct dmar_domain``): domain ID + SL page table.
    A ``passthrough`` domain has no table: its devices' DMA is untranslated (TT=10)."""

    did: int
    pgd: int  # host physical address of the top-level SL table
    aw: int = AW_48
    passthrough: bool = False
    iova: ExtentAllocator | None = None  # used by the DMA-mapping layer
    devices: set[int] = field(default_factory=set)  # attached requester IDs
    tables: list[int] = field(default_factory=list)  # SL table pages below the pgd
    dirty_tracking: bool = False  # SLADE on: the hardware sets A/D bits in its leaves

    @property
    def levels(self) -> int:
        return aw_levels(self.aw)

    @property
    def aw_bits(self) -> int:
        return aw_bits(self.aw)


class IommuDriver:
    """Programs one :class:`Iommu`; pages for its tables come from ``pages``.

    Construction writes an empty root table, points RTADDR_REG at it, invalidates
    globally and sets TE unless ``enable`` is false.
    """

    def __init__(self, iommu: Iommu, pages: PageAllocator, enable: bool = True):
        self.iommu = iommu
        self.pages = pages
        self.memory = pages.memory
        self.root_table = pages.alloc(TABLE_SIZE)
        self._next_did = 1  # DID 0 is left unused, as Linux does
        self._attached: dict[int, IommuDomain] = {}  # rid -> domain
        self._si_domain: IommuDomain | None = None  # the shared pass-through domain
        self.irt: int | None = None  # interrupt remapping table, once enabled
        self._irte_next = 0
        self._irte_owner: dict[int, int] = {}  # IRTE index -> requester ID
        self._context_changed = iommu.events.topic(ContextChange)
        self._mapped = iommu.events.topic(DomainMap)
        self._unmapped = iommu.events.topic(DomainUnmap)
        iommu.set_root_table(self.root_table)
        iommu.context_cache.invalidate()
        iommu.iotlb.invalidate()
        iommu.set_translation(enable)

    @classmethod
    def for_root_complex(
        cls, rc: IommuRootComplex, pool_size: int = 64 << 20, enable: bool = True, irq_remapping: bool = False
    ) -> IommuDriver:
        """A driver for ``rc.iommu`` taking its pages from a fresh ``rc.alloc_region``; with
        ``irq_remapping`` it also turns interrupt remapping on and becomes the RC's IRQ domain."""
        base, _mem = rc.alloc_region(pool_size)
        driver = cls(rc.iommu, PageAllocator(rc.host_memory, base, pool_size), enable)
        if irq_remapping:
            driver.enable_irq_remapping()
            rc.irq_domain = driver
        return driver

    # -- interrupt remapping (Linux intel_irq_remapping) -------------------------
    def enable_irq_remapping(self, entries: int = IRT_ENTRIES, allow_compat: bool = False) -> None:
        """Allocate an empty interrupt remapping table, point IRTA_REG at it and set GCMD.IRE;
        compatibility-format interrupts are blocked unless ``allow_compat`` (GCMD.CFI)."""
        if entries & (entries - 1) or not 2 <= entries <= 1 << 16:
            raise ValueError(f"{entries} IRT entries: a power of two in [2, 65536]")
        self.irt = self.pages.alloc(entries * IRTE_SIZE)
        self.iommu.interrupts.enable(self.irt, entries, allow_compat)

    @property
    def irq_remapping(self) -> bool:
        return self.iommu.interrupts.enabled

    def alloc_irte(self, rid: int, vectors: list[int]) -> list[int]:
        """One IRTE per host vector in ``vectors``, each delivering only requests from ``rid``
        (SVT=01, SQ=00: all 16 bits of the requester ID); returns their indices."""
        if self._irte_next + len(vectors) > self.iommu.interrupts.entries:
            raise MemoryError("interrupt remapping table full")
        indices = list(range(self._irte_next, self._irte_next + len(vectors)))
        self._irte_next += len(vectors)
        for index, vector in zip(indices, vectors):
            self.memory.write(self.irt + index * IRTE_SIZE, irte(vector, rid))
            self._irte_owner[index] = rid
        return indices

    def irte_owner(self, index: int) -> int | None:
        return self._irte_owner.get(index)

    def msi_compose_msg(self, rid: int, vectors: list[int]) -> list[tuple[int, int]]:
        """Remappable-format (address, data) for each host vector, with its own IRTE for ``rid``."""
        window, _size = self.iommu.interrupt_window
        return [remappable_msi(window, index) for index in self.alloc_irte(rid, vectors)]

    # -- domains ---------------------------------------------------------------
    def iommu_domain_alloc(self) -> IommuDomain:
        domain = IommuDomain(did=self._alloc_did(), pgd=self.pages.alloc(TABLE_SIZE))
        domain.iova = ExtentAllocator(IOVA_START, IOVA_LIMIT - IOVA_START, top_down=True)
        for base, size in self.iommu.reserved_regions:
            domain.iova.reserve(base & ~PAGE_MASK, ((base & PAGE_MASK) + size + PAGE_MASK) & ~PAGE_MASK)
        return domain

    def iommu_domain_free(self, domain: IommuDomain) -> None:
        if domain.devices:
            raise ValueError(f"domain {domain.did} still has devices attached")
        for page in (*domain.tables, domain.pgd):
            self.pages.free(page)
        domain.tables.clear()
        self.iommu.iotlb.invalidate(domain.did)

    def _alloc_did(self) -> int:
        did = self._next_did
        self._next_did += 1
        return did

    # -- context entries -------------------------------------------------------
    def _context_slot(self, rid: int, create: bool) -> int | None:
        """Host address of ``rid``'s context entry; allocates the bus's context table."""
        root_slot = root_entry_addr(self.root_table, rid)
        lo, _hi = unpack_entry128(self.memory.read(root_slot, ROOT_ENTRY_SIZE))
        if not lo & RE_P:
            if not create:
                return None
            lo = self.pages.alloc(CONTEXT_ENTRIES * CONTEXT_ENTRY_SIZE)
            self.memory.write(root_slot, root_entry(lo))
        return context_entry_addr(lo & RE_CTP_MASK, rid)

    def _set_context(self, rid: int, domain: IommuDomain | None) -> None:
        """Point ``rid``'s context entry at ``domain`` (None: clear it), then
        invalidate as §6.5.3.3 asks: context cache for the device, IOTLB for the
        domain it leaves."""
        slot = self._context_slot(rid, create=domain is not None)
        if domain is None:
            entry = bytes(CONTEXT_ENTRY_SIZE)
        elif domain.passthrough:
            entry = context_entry(0, domain.did, tt=TT_PASS_THROUGH, aw=domain.aw)
        else:
            entry = context_entry(domain.pgd, domain.did, aw=domain.aw)
        if slot is not None:
            self.memory.write(slot, entry)
        self.iommu.context_cache.invalidate(source_id=rid)
        old = self._attached.pop(rid, None)
        if old is not None:
            self.iommu.iotlb.invalidate(old.did)
            old.devices.discard(rid)
        if domain is not None:
            self._attached[rid] = domain
            domain.devices.add(rid)
        if self._context_changed:
            self._context_changed.emit(
                ContextChange(rid, None if domain is None else domain.did, domain is not None and domain.passthrough)
            )

    def attach_device(self, domain: IommuDomain, rid: int) -> None:
        """Translate ``rid``'s DMA through ``domain`` (context TT=00)."""
        self._set_context(rid, domain)

    def attach_passthrough(self, rid: int) -> IommuDomain:
        """Let ``rid``'s DMA through untranslated (context TT=10); returns the
        shared identity domain."""
        if self._si_domain is None:
            self._si_domain = IommuDomain(did=self._alloc_did(), pgd=0, passthrough=True)
        self._set_context(rid, self._si_domain)
        return self._si_domain

    def detach_device(self, rid: int) -> None:
        """Clear ``rid``'s context entry: its DMA is blocked from the next request on."""
        self._set_context(rid, None)

    def domain_of(self, rid: int) -> IommuDomain | None:
        return self._attached.get(rid)

    # -- second-level page tables ----------------------------------------------
    def _read_pte(self, slot: int) -> int:
        return unpack_u64(self.memory.read(slot, SLPTE_SIZE))

    def _write_pte(self, slot: int, pte: int) -> None:
        self.memory.write(slot, pack_u64(pte))

    def _lookup(self, domain: IommuDomain, iova: int) -> tuple[int, int, int]:
        """(slot, level, entry) where the walk for ``iova`` ends: a leaf or a
        non-present entry."""
        table = domain.pgd
        for level in range(domain.levels, 1, -1):
            slot = table + slpte_offset(iova, level)
            pte = self._read_pte(slot)
            if not pte & SL_RW or (level in LARGE_PAGE_LEVELS and pte & SL_PS):
                return slot, level, pte
            table = pte & SL_ADDR_MASK
        slot = table + slpte_offset(iova, 1)
        return slot, 1, self._read_pte(slot)

    def _table_for(self, domain: IommuDomain, iova: int, level: int) -> int:
        """Address of the level-``level`` table covering ``iova``, creating any
        missing table above it."""
        table = domain.pgd
        for upper in range(domain.levels, level, -1):
            slot = table + slpte_offset(iova, upper)
            pte = self._read_pte(slot)
            if not pte & SL_RW:
                pte = self.pages.alloc(TABLE_SIZE)
                domain.tables.append(pte)
                self._write_pte(slot, slpte(pte, SL_RW))
            elif upper in LARGE_PAGE_LEVELS and pte & SL_PS:
                raise ValueError(f"IOVA {iova:#x} lies in a mapped large page")
            table = pte & SL_ADDR_MASK
        return table

    def _leaf_level(self, iova: int, phys: int, size: int) -> int:
        """Largest page level usable at (iova, phys) for ``size`` bytes (CAP.SLLPS)."""
        for level in sorted(LARGE_PAGE_LEVELS, reverse=True):
            span = 1 << level_shift(level)
            if not (iova | phys) & (span - 1) and size >= span:
                return level
        return 1

    def iommu_map(self, domain: IommuDomain, iova: int, phys: int, size: int, prot: int) -> None:
        """Map [iova, iova+size) to [phys, phys+size) with ``prot`` (IOMMU_READ|IOMMU_WRITE),
        using 1 GiB and 2 MiB pages where alignment and size allow."""
        if (iova | phys | size) & PAGE_MASK or size <= 0:
            raise ValueError("iommu_map needs 4 KiB-aligned iova, phys and size")
        if not prot & SL_RW:
            raise ValueError("prot must include IOMMU_READ or IOMMU_WRITE")
        if iova + size > 1 << domain.aw_bits:
            raise ValueError(f"IOVA {iova + size - 1:#x} beyond the domain's {domain.aw_bits}-bit width")
        event = DomainMap(domain.did, iova, phys, size, prot & SL_RW)
        while size:
            level = self._leaf_level(iova, phys, size)
            slot = self._table_for(domain, iova, level) + slpte_offset(iova, level)
            if self._read_pte(slot) & SL_RW:
                raise ValueError(f"IOVA {iova:#x} is already mapped")
            self._write_pte(slot, slpte(phys, prot, level))
            span = 1 << level_shift(level)
            iova += span
            phys += span
            size -= span
        if self._mapped:
            self._mapped.emit(event)

    def iommu_unmap(self, domain: IommuDomain, iova: int, size: int, flush: bool = True) -> int:
        """Clear the leaf entries over [iova, iova+size) and, unless ``flush`` is false,
        invalidate those IOTLB pages.  A large page touched is unmapped whole (as
        Linux does); the number of bytes unmapped is returned.  ``flush=False``
        leaves stale IOTLB entries in place: a test hook, not a driver path."""
        addr, limit = iova, iova + size
        first = last = None
        unmapped = 0
        while addr < limit:
            slot, level, pte = self._lookup(domain, addr)
            span = 1 << level_shift(level)
            base = addr & -span
            if pte & SL_RW:
                self._write_pte(slot, 0)
                unmapped += span
                first = base if first is None else first
                last = base + span
            addr = base + span
        if flush and unmapped:
            self.flush_iotlb_range(domain, first, last - first)
        if unmapped and self._unmapped:
            self._unmapped.emit(DomainUnmap(domain.did, first, last - first))
        return unmapped

    def flush_iotlb_range(self, domain: IommuDomain, iova: int, size: int) -> None:
        """Page-selective IOTLB invalidation covering [iova, iova+size): the smallest
        aligned power-of-two block of pages (address mask AM, §6.5.1.2); past
        CAP.MAMV a domain-selective one."""
        first = iova >> PAGE_SHIFT
        last = (iova + size - 1) >> PAGE_SHIFT
        am = (first ^ last).bit_length()
        if am > MAX_PSI_AM:
            self.iommu.iotlb.invalidate(domain.did)
        else:
            self.iommu.iotlb.invalidate_pages(domain.did, first << PAGE_SHIFT, am)

    def mappings(self, domain: IommuDomain) -> list[tuple[int, int, int, int]]:
        """Every leaf mapping of ``domain`` as (iova, phys, size, prot), by a software walk."""
        out = []

        def walk(table: int, level: int, base: int) -> None:
            for index in range(SLPT_ENTRIES):
                pte = self._read_pte(table + index * SLPTE_SIZE)
                if not pte & SL_RW:
                    continue
                iova = base | index << level_shift(level)
                if level == 1 or (level in LARGE_PAGE_LEVELS and pte & SL_PS):
                    out.append((iova, pte & SL_ADDR_MASK, 1 << level_shift(level), pte & SL_RW))
                else:
                    walk(pte & SL_ADDR_MASK, level - 1, iova)

        if not domain.passthrough:
            walk(domain.pgd, domain.levels, 0)
        return out

    # -- dirty tracking (Linux iommu_dirty_ops, iommufd IOMMU_HWPT_GET_DIRTY_BITMAP) -------------
    def set_dirty_tracking(self, domain: IommuDomain, enabled: bool) -> None:
        """Turn SLADE on or off for ``domain`` (Linux ``intel_iommu_set_dirty_tracking``).
        Enabling clears every leaf's D bit first, so the first read reports only writes made
        from now on; either way the domain's IOTLB entries are invalidated, as the cached
        A/D state changes meaning."""
        if domain.passthrough:
            raise ValueError("a pass-through domain has no page tables to track")
        if enabled and not domain.dirty_tracking:
            self._dirty_leaves(domain, 0, 1 << domain.aw_bits, clear=True)
        domain.dirty_tracking = enabled
        self.iommu.set_dirty_tracking(domain.did, enabled)
        self.iommu.iotlb.invalidate(domain.did)

    def iommu_read_and_clear_dirty(
        self, domain: IommuDomain, iova: int, size: int, no_clear: bool = False
    ) -> list[tuple[int, int]]:
        """The leaves of [iova, iova+size) the device wrote since the last read, as sorted
        (iova, page size) pairs, at the granularity of the mapping (4 KiB, 2 MiB, 1 GiB).
        Their D bits are cleared (unless ``no_clear``, Linux IOMMU_DIRTY_NO_CLEAR) and the
        IOTLB is flushed over them, so the next write through a cached entry sets D again."""
        if not domain.dirty_tracking:
            raise ValueError(f"domain {domain.did}: dirty tracking is not enabled")
        dirty = self._dirty_leaves(domain, iova, iova + size, clear=not no_clear)
        if dirty and not no_clear:
            first, last = dirty[0][0], dirty[-1][0] + dirty[-1][1]
            self.flush_iotlb_range(domain, first, last - first)
        return dirty

    def _dirty_leaves(self, domain: IommuDomain, start: int, end: int, clear: bool) -> list[tuple[int, int]]:
        """Leaves of ``domain`` overlapping [start, end) with D set, clearing D if ``clear``."""
        out: list[tuple[int, int]] = []

        def walk(table: int, level: int, base: int) -> None:
            span = 1 << level_shift(level)
            first = max(start - base, 0) // span
            last = min((end - 1 - base) // span, SLPT_ENTRIES - 1)
            for index in range(first, last + 1):
                slot = table + index * SLPTE_SIZE
                pte = self._read_pte(slot)
                if not pte & SL_RW:
                    continue
                addr = base + index * span
                if level == 1 or (level in LARGE_PAGE_LEVELS and pte & SL_PS):
                    if pte & SL_D:
                        out.append((addr, span))
                        if clear:
                            self._write_pte(slot, pte & ~SL_D)
                else:
                    walk(pte & SL_ADDR_MASK, level - 1, addr)

        if end > start:
            walk(domain.pgd, domain.levels, 0)
        return out

    def iova_to_phys(self, domain: IommuDomain, iova: int) -> int | None:
        """Software walk of ``domain``'s tables (Linux ``iommu_iova_to_phys``)."""
        _slot, level, pte = self._lookup(domain, iova)
        if not pte & SL_RW:
            return None
        return (pte & SL_ADDR_MASK) | (iova & ((1 << level_shift(level)) - 1))

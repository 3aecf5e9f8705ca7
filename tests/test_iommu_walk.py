"""The remapping hardware against hand-built VT-d structures (no simulator).

Every root, context and paging entry here is packed from the spec's bit
positions written out in this file, not with iommu's own encoder, so a wrong
mask in iommu/vtd_format.py shows up as a failed walk.
"""

import struct

import pytest

from iommu import BytearrayMemory, FaultReason, FaultRecord, Iommu
from iommu.events import Fault, Translation

# VT-d rev 3.x bit positions, typed out independently of iommu.vtd_format
P, R, W, PS = 1 << 0, 1 << 0, 1 << 1, 1 << 7
TT_SHIFT, DID_SHIFT = 2, 8

ROOT, CTX, PML4, PDPT, PD, PT, PT2 = (0x1000 * k for k in range(1, 8))
RID = 0x0310  # 03:02.0
BUS, DEVFN = 0x03, 0x10
DID = 7
IOVA = (0x1A5 << 39) | (0x0C3 << 30) | (0x111 << 21) | (0x0F0 << 12)  # 48-bit IOVA
PHYS = 0x00AB_C000


def idx(iova, level):
    return (iova >> (12 + 9 * (level - 1))) & 0x1FF


def put_root(mem, bus, ctp, hi=0):
    mem.write(ROOT + 16 * bus, struct.pack("<QQ", ctp | P, hi))


def put_ctx(mem, devfn, slptptr, did=DID, tt=0, aw=2, fpd=0, lo_extra=0, hi_extra=0):
    lo = slptptr | (tt << TT_SHIFT) | (fpd << 1) | P | lo_extra
    mem.write(CTX + 16 * devfn, struct.pack("<QQ", lo, aw | (did << DID_SHIFT) | hi_extra))


def put_pte(mem, table, iova, level, value):
    mem.write(table + 8 * idx(iova, level), struct.pack("<Q", value))


def get_pte(mem, table, iova, level):
    return struct.unpack("<Q", mem.read(table + 8 * idx(iova, level), 8))[0]


@pytest.fixture
def hw():
    return make_hw()


def make_hw(**options):
    """An enabled IOMMU with RID 03:02.0 -> domain 7 -> 4-level tables mapping
    IOVA (4 KiB page) to PHYS with R/W."""
    mem = BytearrayMemory(0x10_0000)
    put_root(mem, BUS, CTX)
    put_ctx(mem, DEVFN, PML4)
    put_pte(mem, PML4, IOVA, 4, PDPT | R | W)
    put_pte(mem, PDPT, IOVA, 3, PD | R | W)
    put_pte(mem, PD, IOVA, 2, PT | R | W)
    put_pte(mem, PT, IOVA, 1, PHYS | R | W)
    iommu = Iommu(mem, **options)
    iommu.set_root_table(ROOT)
    iommu.set_translation(True)
    return iommu


def fault_of(result):
    assert isinstance(result, FaultRecord), result
    return result


# -- successful walks ----------------------------------------------------------
def test_4k_page_walk(hw):
    assert hw.translate(RID, IOVA + 0x89, 16, is_write=False) == [(PHYS + 0x89, 16)]
    assert hw.translate(RID, IOVA + 0xFFC, 4, is_write=True) == [(PHYS + 0xFFC, 4)]
    assert hw.faults.total == 0


def test_2m_page_walk(hw):
    big = 0x4020_0000
    put_pte(hw.memory, PD, IOVA, 2, big | R | W | PS)
    assert hw.translate(RID, IOVA + 0x345, 8, is_write=True) == [(big + (IOVA & 0x1F_FFFF) + 0x345, 8)]
    assert hw.iotlb.lookup(DID, IOVA).shift == 21


def test_1g_page_walk(hw):
    huge = 0x3_4000_0000
    put_pte(hw.memory, PDPT, IOVA, 3, huge | R | PS)
    assert hw.translate(RID, IOVA + 0x10, 4, is_write=False) == [(huge + (IOVA & 0x3FFF_FFFF) + 0x10, 4)]
    assert hw.iotlb.lookup(DID, IOVA).shift == 30


def test_split_at_4k_page_boundary_to_non_contiguous_pages(hw):
    other = 0x0007_0000
    put_pte(hw.memory, PT, IOVA + 0x1000, 1, other | R | W)
    chunks = hw.translate(RID, IOVA + 0xFF0, 0x20, is_write=True)
    assert chunks == [(PHYS + 0xFF0, 0x10), (other, 0x10)]


def test_split_at_2m_boundary_then_4k(hw):
    big = 0x4020_0000
    base = IOVA & ~0x1F_FFFF
    nxt = base + 0x20_0000
    put_pte(hw.memory, PD, base, 2, big | R | W | PS)
    put_pte(hw.memory, PD, nxt, 2, PT2 | R | W)
    put_pte(hw.memory, PT2, nxt, 1, 0x9000 | R | W)
    chunks = hw.translate(RID, nxt - 8, 24, is_write=False)
    assert chunks == [(big + 0x20_0000 - 8, 8), (0x9000, 16)]


def test_three_level_table_for_aw_39(hw):
    iova = (0x55 << 30) | (0x66 << 21) | (0x77 << 12)
    put_ctx(hw.memory, DEVFN, PDPT, aw=1)
    put_pte(hw.memory, PDPT, iova, 3, PD | R | W)
    put_pte(hw.memory, PD, iova, 2, PT2 | R | W)
    put_pte(hw.memory, PT2, iova, 1, 0x5000 | R)
    assert hw.translate(RID, iova + 4, 4, is_write=False) == [(0x5004, 4)]
    fault = fault_of(hw.translate(RID, 1 << 39, 4, is_write=False))
    assert fault.reason is FaultReason.ADDRESS_BEYOND_AW and fault.fault_reason == 0x4


# -- permission faults ----------------------------------------------------------
def test_write_to_read_only_page_faults(hw):
    put_pte(hw.memory, PT, IOVA, 1, PHYS | R)
    assert hw.translate(RID, IOVA, 4, is_write=False) == [(PHYS, 4)]
    fault = fault_of(hw.translate(RID, IOVA + 8, 4, is_write=True))
    assert (fault.source_id, fault.address, fault.is_write) == (RID, IOVA + 8, True)
    assert fault.reason is FaultReason.WRITE_DENIED and fault.fault_reason == 0x5
    assert hw.faults.records == [fault]


def test_read_from_write_only_page_faults(hw):
    put_pte(hw.memory, PT, IOVA, 1, PHYS | W)
    assert hw.translate(RID, IOVA, 4, is_write=True) == [(PHYS, 4)]
    fault = fault_of(hw.translate(RID, IOVA, 4, is_write=False))
    assert fault.reason is FaultReason.READ_DENIED and fault.fault_reason == 0x6


def test_rights_are_anded_over_levels(hw):
    put_pte(hw.memory, PD, IOVA, 2, PT | R)  # the directory allows reads only
    assert hw.translate(RID, IOVA, 4, is_write=False) == [(PHYS, 4)]
    assert fault_of(hw.translate(RID, IOVA, 4, is_write=True)).reason is FaultReason.WRITE_DENIED


def test_fault_in_second_page_reports_that_address(hw):
    fault = fault_of(hw.translate(RID, IOVA + 0xFFC, 8, is_write=False))
    assert fault.address == IOVA + 0x1000 and fault.level == 1


# -- non-present and invalid structures ------------------------------------------
@pytest.mark.parametrize("level,table", [(4, PML4), (3, PDPT), (2, PD), (1, PT)])
@pytest.mark.parametrize("is_write,code", [(False, 0x6), (True, 0x5)])
def test_non_present_entry_at_each_level(hw, level, table, is_write, code):
    put_pte(hw.memory, table, IOVA, level, 0)
    fault = fault_of(hw.translate(RID, IOVA + 0x40, 4, is_write=is_write))
    assert (fault.reason, fault.level, fault.address) == (FaultReason.SLPTE_NOT_PRESENT, level, IOVA + 0x40)
    assert fault.fault_reason == code


def test_address_beyond_48_bits(hw):
    for iova, length in ((1 << 48, 4), ((1 << 48) - 4, 8)):
        fault = fault_of(hw.translate(RID, iova, length, is_write=False))
        assert (fault.reason, fault.address, fault.fault_reason) == (FaultReason.ADDRESS_BEYOND_AW, iova, 0x4)


def test_root_entry_not_present(hw):
    fault = fault_of(hw.translate(0x0510, IOVA, 4, is_write=True))
    assert (fault.source_id, fault.reason, fault.fault_reason) == (0x0510, FaultReason.ROOT_ENTRY_NOT_PRESENT, 0x1)


def test_context_entry_not_present(hw):
    fault = fault_of(hw.translate(RID + 1, IOVA, 4, is_write=False))
    assert (fault.source_id, fault.reason, fault.fault_reason) == (RID + 1, FaultReason.CONTEXT_ENTRY_NOT_PRESENT, 0x2)


@pytest.mark.parametrize("tt,aw", [(0b11, 2), (0b01, 2), (0b00, 3), (0b00, 4), (0b00, 0)])
def test_invalid_context_translation_type_or_width(hw, tt, aw):
    put_ctx(hw.memory, DEVFN, PML4, tt=tt, aw=aw)
    fault = fault_of(hw.translate(RID, IOVA, 4, is_write=False))
    assert (fault.reason, fault.fault_reason) == (FaultReason.CONTEXT_ENTRY_INVALID, 0x3)


def test_reserved_bits_in_root_and_context_entries(hw):
    put_ctx(hw.memory, DEVFN, PML4, lo_extra=1 << 4)
    assert fault_of(hw.translate(RID, IOVA, 4, False)).fault_reason == 0xB
    put_ctx(hw.memory, DEVFN, PML4, hi_extra=1 << 30)
    hw.context_cache.invalidate()
    assert fault_of(hw.translate(RID, IOVA, 4, False)).reason is FaultReason.CONTEXT_ENTRY_RESERVED
    put_root(hw.memory, BUS, CTX, hi=1)
    assert fault_of(hw.translate(RID, IOVA, 4, False)).fault_reason == 0xA


def test_reserved_bits_in_paging_entries(hw):
    put_pte(hw.memory, PML4, IOVA, 4, PDPT | R | W | PS)  # PS is reserved in a PML4E
    fault = fault_of(hw.translate(RID, IOVA, 4, False))
    assert (fault.reason, fault.level, fault.fault_reason) == (FaultReason.SLPTE_RESERVED, 4, 0xC)
    put_pte(hw.memory, PML4, IOVA, 4, PDPT | R | W)
    put_pte(hw.memory, PD, IOVA, 2, 0x4020_0000 | 0x1000 | R | PS)  # 2 MiB page, bit 12 set
    assert fault_of(hw.translate(RID, IOVA, 4, False)).level == 2


def test_unbacked_table_addresses_fault_not_raise(hw):
    put_pte(hw.memory, PDPT, IOVA, 3, 0x7000_0000 | R | W)  # no memory there
    fault = fault_of(hw.translate(RID, IOVA, 4, False))
    assert (fault.reason, fault.level, fault.fault_reason) == (FaultReason.SLPTE_ACCESS_ERROR, 2, 0x7)
    hw.set_root_table(0x7000_0000)
    hw.context_cache.invalidate()
    assert fault_of(hw.translate(RID, IOVA, 4, False)).fault_reason == 0x8


def test_pass_through_context_is_identity_without_walk(hw):
    put_ctx(hw.memory, DEVFN, 0, tt=0b10)
    assert hw.translate(RID, 0x1234_5678, 64, is_write=True) == [(0x1234_5678, 64)]
    assert hw.iotlb.walks == 0


def test_disabled_translation_is_identity(hw):
    hw.set_translation(False)
    assert hw.translate(0x0510, IOVA, 8, is_write=True) == [(IOVA, 8)]
    assert hw.faults.total == 0


def test_fault_processing_disable_suppresses_record(hw):
    put_ctx(hw.memory, DEVFN, PML4, fpd=1)
    fault = fault_of(hw.translate(RID, IOVA + 0x1000, 4, is_write=False))
    assert fault.reason is FaultReason.SLPTE_NOT_PRESENT
    assert hw.faults.records == [] and hw.faults.suppressed == 1


# -- IOTLB and context-cache ----------------------------------------------------
def test_iotlb_counters(hw):
    hw.translate(RID, IOVA, 4, False)
    assert (hw.iotlb.hits, hw.iotlb.misses, hw.iotlb.walks) == (0, 1, 1)
    hw.translate(RID, IOVA + 0x100, 4, True)
    hw.translate(RID, IOVA + 0x200, 4, False)
    assert (hw.iotlb.hits, hw.iotlb.misses, hw.iotlb.walks) == (2, 1, 1)
    assert (hw.context_cache.hits, hw.context_cache.misses) == (2, 1)


INVALIDATIONS = {
    "global": lambda hw: hw.iotlb.invalidate(),
    "domain": lambda hw: hw.iotlb.invalidate(DID),
    "page": lambda hw: hw.iotlb.invalidate_pages(DID, IOVA, 0),
    "page-block": lambda hw: hw.iotlb.invalidate_pages(DID, IOVA + 0x3000, 2),  # aligned down to IOVA
}
NON_INVALIDATIONS = {
    "other-domain": lambda hw: hw.iotlb.invalidate(DID + 1),
    "other-page": lambda hw: hw.iotlb.invalidate_pages(DID, IOVA + 0x1000, 0),
    "other-domain-page": lambda hw: hw.iotlb.invalidate_pages(DID + 1, IOVA, 0),
}


@pytest.mark.parametrize("kind", INVALIDATIONS)
def test_stale_mapping_works_until_invalidated(hw, kind):
    assert hw.translate(RID, IOVA, 4, True) == [(PHYS, 4)]
    put_pte(hw.memory, PT, IOVA, 1, 0)  # software unmaps, no flush yet
    assert hw.translate(RID, IOVA + 4, 4, True) == [(PHYS + 4, 4)]  # stale IOTLB hit
    for other in NON_INVALIDATIONS.values():
        other(hw)
    assert hw.translate(RID, IOVA + 8, 4, True) == [(PHYS + 8, 4)]  # still stale
    INVALIDATIONS[kind](hw)
    fault = fault_of(hw.translate(RID, IOVA + 8, 4, True))
    assert (fault.reason, fault.level) == (FaultReason.SLPTE_NOT_PRESENT, 1)


def test_page_invalidation_drops_overlapping_large_page(hw):
    put_pte(hw.memory, PD, IOVA, 2, 0x4020_0000 | R | W | PS)
    hw.translate(RID, IOVA, 4, False)
    put_pte(hw.memory, PD, IOVA, 2, 0)
    hw.iotlb.invalidate_pages(DID, IOVA + 0x5000, 0)  # one 4 KiB page inside the 2 MiB page
    assert fault_of(hw.translate(RID, IOVA, 4, False)).level == 2


def test_iotlb_is_tagged_by_domain(hw):
    hw.translate(RID, IOVA, 4, False)
    put_ctx(hw.memory, DEVFN, PML4, did=DID + 1)  # same tables, new domain id
    hw.context_cache.invalidate(source_id=RID)
    put_pte(hw.memory, PT, IOVA, 1, 0)
    assert fault_of(hw.translate(RID, IOVA, 4, False)).reason is FaultReason.SLPTE_NOT_PRESENT


def test_context_cache_is_stale_until_invalidated(hw):
    hw.translate(RID, IOVA, 4, False)
    CTX_ENTRY = CTX + 16 * DEVFN
    hw.memory.write(CTX_ENTRY, bytes(16))
    assert hw.translate(RID, IOVA, 4, False) == [(PHYS, 4)]
    hw.context_cache.invalidate(did=DID + 1)  # another domain: no effect
    assert hw.translate(RID, IOVA, 4, False) == [(PHYS, 4)]
    hw.context_cache.invalidate(did=DID)
    assert fault_of(hw.translate(RID, IOVA, 4, False)).reason is FaultReason.CONTEXT_ENTRY_NOT_PRESENT


def test_iotlb_capacity_evicts_oldest():
    hw = make_hw(iotlb_capacity=1)
    put_pte(hw.memory, PT, IOVA + 0x1000, 1, 0x8000 | R)
    hw.translate(RID, IOVA, 4, False)
    hw.translate(RID, IOVA + 0x1000, 4, False)
    assert len(hw.iotlb.entries) == 1 and hw.iotlb.lookup(DID, IOVA) is None


# -- fault log ------------------------------------------------------------------
def test_fault_log_overflow_and_clear(hw):
    seen = []
    hw.events.subscribe(Fault, lambda e: e.logged and seen.append(e.record))
    for n in range(20):
        hw.translate(RID, IOVA + 0x1000 * (n + 1), 4, is_write=bool(n & 1))
    assert len(hw.faults.records) == 16 and hw.faults.overflow
    assert (hw.faults.dropped, hw.faults.total) == (4, 20)
    assert seen == hw.faults.records  # the fault event fires once per recorded fault
    assert [r.address for r in seen] == [IOVA + 0x1000 * (n + 1) for n in range(16)]
    assert [r.is_write for r in seen[:2]] == [False, True]
    cleared = hw.faults.clear()
    assert len(cleared) == 16 and not hw.faults.overflow and hw.faults.records == []
    fault = fault_of(hw.translate(0x0510, 0x1000, 4, is_write=True))
    assert hw.faults.records == [fault] and seen[-1] is fault
    assert (fault.source_id, fault.address, fault.reason) == (0x0510, 0x1000, FaultReason.ROOT_ENTRY_NOT_PRESENT)


def test_failing_fault_observer_does_not_escape(hw):
    def boom(event):
        raise RuntimeError("handler bug")

    hw.events.subscribe(Fault, boom)
    assert fault_of(hw.translate(RID + 1, IOVA, 4, False)).source_id == RID + 1
    assert len(hw.faults.records) == 1
    assert [type(exc) for _cb, _event, exc in hw.events.failures] == [RuntimeError]


# -- one request at a time (the fabrics' path) -----------------------------------------------
def request_sequence(hw):
    """Requests exercising every branch: walk, hits of each right, a fault on rights, a stale
    hit after an unmap, an invalidation, a 2 MiB page, a request past the address width."""
    put_pte(hw.memory, PT, IOVA + 0x1000, 1, 0x9000 | R)  # read-only page
    yield RID, IOVA + 0x10, 16, False
    yield RID, IOVA + 0x20, 8, True
    yield RID, IOVA + 0x1000, 4, False
    yield RID, IOVA + 0x1000, 4, True  # write to a read-only page: fault from the cached entry
    put_pte(hw.memory, PT, IOVA, 1, 0)  # unmapped, not yet invalidated: stale hits
    yield RID, IOVA + 0xFFC, 4, True
    hw.iotlb.invalidate_pages(DID, IOVA, 0)
    yield RID, IOVA + 0x40, 4, False  # now a not-present fault
    put_pte(hw.memory, PD, IOVA, 2, 0x4020_0000 | R | W | PS)
    hw.iotlb.invalidate()
    yield RID, IOVA + 0x3_0000, 64, True
    yield RID, IOVA + 0x3_0040, 64, True
    yield RID, 1 << 48, 4, False
    yield RID + 1, IOVA, 4, False  # no context entry


def counters(hw):
    return (
        hw.iotlb.hits,
        hw.iotlb.misses,
        hw.iotlb.walks,
        hw.context_cache.hits,
        hw.context_cache.misses,
        dict(hw.iotlb.entries),
        [(r.source_id, r.address, r.reason) for r in hw.faults.records],
    )


@pytest.mark.parametrize("dirty_tracking", [False, True])
def test_one_request_translates_and_counts_as_translate_does(dirty_tracking):
    """``translate_request`` (the fabrics' one-request path, which skips building chunks on a
    cache hit) gives the same address or fault, IOTLB/context-cache counts, entries and
    fault records as ``translate``, request after request, and the same A/D bits in memory."""
    ref, fast = make_hw(), make_hw()
    for hw in (ref, fast):
        if dirty_tracking:
            hw.set_dirty_tracking(DID, True)
    for (rid, iova, n, write), _ in zip(request_sequence(ref), request_sequence(fast)):
        expected = ref.translate(rid, iova, n, write)
        got = fast.translate_request(rid, iova, n, write)
        if isinstance(expected, FaultRecord):
            assert isinstance(got, FaultRecord) and got.reason is expected.reason
        else:
            assert [(got, n)] == expected
        assert counters(fast) == counters(ref)
    assert fast.memory.read(0, 0x10_0000) == ref.memory.read(0, 0x10_0000)


def test_one_request_publishes_each_translation_while_watched(hw):
    """With a subscriber to Translation events, every request is published, hit or not."""
    seen = []
    hw.events.subscribe(Translation, seen.append)
    for _ in range(3):
        assert hw.translate_request(RID, IOVA + 8, 4, False) == PHYS + 8
    assert [(t.source_id, t.iova, t.chunks) for t in seen] == [(RID, IOVA + 8, ((PHYS + 8, 4),))] * 3

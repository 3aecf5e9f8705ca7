"""Dirty-page tracking: second-level A/D bits (VT-d 3.x §3.6.2) and the driver's
read-and-clear (Linux ``iommu_dirty_ops.read_and_clear_dirty``).

A "device write" is what the root complex does for one: a translation with
``is_write`` (that is where the hardware marks the leaf), then the bytes.  The A and
D bit positions (8 and 9 of a second-level leaf) are typed out here, not imported.
"""

import struct

import pytest

from iommu import IOMMU_READ, IOMMU_WRITE, BytearrayMemory, DmaDevice, FaultRecord, Iommu, IommuDriver, PageAllocator

RW = IOMMU_READ | IOMMU_WRITE
A_BIT, D_BIT = 1 << 8, 1 << 9
RID = 0x0100
MEM_SIZE = 0x80_0000
KIB4, MIB2, GIB1 = 1 << 12, 1 << 21, 1 << 30


@pytest.fixture
def drv():
    mem = BytearrayMemory(MEM_SIZE)
    return IommuDriver(Iommu(mem), PageAllocator(mem, 0, MEM_SIZE))


def domain_with(drv, iova, phys, size, track=True):
    dom = drv.iommu_domain_alloc()
    drv.attach_device(dom, RID)
    drv.iommu_map(dom, iova, phys, size, RW)
    if track:
        drv.set_dirty_tracking(dom, True)
    return dom


def dma(drv, iova, length=8, write=True):
    result = drv.iommu.translate(RID, iova, length, is_write=write)
    assert not isinstance(result, FaultRecord), result
    return result


def leaf(drv, iova):
    """The leaf entry for ``iova``, found by a hand-written 4-level walk."""
    lo = struct.unpack("<Q", drv.memory.read(drv.root_table + 16 * (RID >> 8), 8))[0]
    table = struct.unpack("<Q", drv.memory.read((lo & ~0xFFF) + 16 * (RID & 0xFF), 8))[0] & ~0xFFF
    for level in (4, 3, 2, 1):
        entry = struct.unpack("<Q", drv.memory.read(table + 8 * ((iova >> (12 + 9 * (level - 1))) & 0x1FF), 8))[0]
        if level == 1 or entry & 0x80:
            return entry
        table = entry & 0x000F_FFFF_FFFF_F000
    raise AssertionError


@pytest.mark.parametrize(
    ("iova", "phys", "size", "page"),
    [(0x4000_0000, 0x30_0000, 4 * KIB4, KIB4), (0x40_0000, 0x60_0000, MIB2, MIB2), (GIB1, 0, GIB1, GIB1)],
    ids=["4KiB", "2MiB", "1GiB"],
)
def test_write_marks_the_leaf_dirty_at_its_page_size(drv, iova, phys, size, page):
    dom = domain_with(drv, iova, phys, size)
    dma(drv, iova + page // 2, write=False)
    assert leaf(drv, iova) & (A_BIT | D_BIT) == A_BIT  # a read sets A only
    assert drv.iommu_read_and_clear_dirty(dom, iova, size) == []
    dma(drv, iova + page // 2)
    assert leaf(drv, iova) & D_BIT
    assert drv.iommu_read_and_clear_dirty(dom, iova, size) == [(iova, page)]
    assert not leaf(drv, iova) & D_BIT
    assert drv.iommu_read_and_clear_dirty(dom, iova, size) == []


def test_write_through_a_cached_translation_still_marks_dirty(drv):
    dom = domain_with(drv, 0x4000_0000, 0x30_0000, 2 * KIB4)
    dma(drv, 0x4000_0000, write=False)  # fills the IOTLB with a clean entry
    walks, hits = drv.iommu.iotlb.walks, drv.iommu.iotlb.hits
    dma(drv, 0x4000_0010)
    assert (drv.iommu.iotlb.walks, drv.iommu.iotlb.hits) == (walks, hits + 1)  # served by the IOTLB
    assert drv.iommu_read_and_clear_dirty(dom, 0x4000_0000, 2 * KIB4) == [(0x4000_0000, KIB4)]
    dma(drv, 0x4000_0000, write=False)  # cached again, clean after the read's flush
    dma(drv, 0x4000_0020)
    assert drv.iommu_read_and_clear_dirty(dom, 0x4000_0000, 2 * KIB4) == [(0x4000_0000, KIB4)]


def test_a_write_between_two_reads_is_reported_exactly_once(drv):
    dom = domain_with(drv, 0x4000_0000, 0x30_0000, 8 * KIB4)
    assert drv.iommu_read_and_clear_dirty(dom, 0x4000_0000, 8 * KIB4) == []
    for offset in (0x3000, 0x3008, 0x3FF8):  # three writes to one page: one report
        dma(drv, 0x4000_0000 + offset)
    dma(drv, 0x4000_5FFC, length=8)  # straddles pages 5 and 6
    assert drv.iommu_read_and_clear_dirty(dom, 0x4000_0000, 8 * KIB4) == [
        (0x4000_3000, KIB4),
        (0x4000_5000, KIB4),
        (0x4000_6000, KIB4),
    ]
    assert drv.iommu_read_and_clear_dirty(dom, 0x4000_0000, 8 * KIB4) == []


def test_read_covers_only_its_range_and_no_clear_keeps_the_bits(drv):
    dom = domain_with(drv, 0x4000_0000, 0x30_0000, 4 * KIB4)
    dma(drv, 0x4000_0000)
    dma(drv, 0x4000_3000)
    assert drv.iommu_read_and_clear_dirty(dom, 0x4000_2000, 2 * KIB4, no_clear=True) == [(0x4000_3000, KIB4)]
    assert drv.iommu_read_and_clear_dirty(dom, 0x4000_2000, 2 * KIB4) == [(0x4000_3000, KIB4)]
    assert drv.iommu_read_and_clear_dirty(dom, 0x4000_0000, 4 * KIB4) == [(0x4000_0000, KIB4)]


def test_without_tracking_no_bit_is_set_and_reading_is_refused(drv):
    dom = domain_with(drv, 0x4000_0000, 0x30_0000, KIB4, track=False)
    dma(drv, 0x4000_0000)
    assert leaf(drv, 0x4000_0000) & (A_BIT | D_BIT) == 0
    with pytest.raises(ValueError, match="not enabled"):
        drv.iommu_read_and_clear_dirty(dom, 0x4000_0000, KIB4)
    drv.set_dirty_tracking(dom, True)
    dma(drv, 0x4000_0000)  # the IOTLB entry from before tracking was invalidated
    assert drv.iommu_read_and_clear_dirty(dom, 0x4000_0000, KIB4) == [(0x4000_0000, KIB4)]
    drv.set_dirty_tracking(dom, False)
    dma(drv, 0x4000_0000)
    assert not leaf(drv, 0x4000_0000) & D_BIT


def test_enabling_forgets_writes_made_before(drv):
    dom = domain_with(drv, 0x4000_0000, 0x30_0000, KIB4)
    dma(drv, 0x4000_0000)
    drv.set_dirty_tracking(dom, False)
    drv.set_dirty_tracking(dom, True)
    assert drv.iommu_read_and_clear_dirty(dom, 0x4000_0000, KIB4) == []


def test_tracking_is_per_domain(drv):
    dom = domain_with(drv, 0x4000_0000, 0x30_0000, KIB4)
    other = drv.iommu_domain_alloc()
    drv.attach_device(other, RID + 1)
    drv.iommu_map(other, 0x4000_0000, 0x40_0000, KIB4, RW)
    assert not isinstance(drv.iommu.translate(RID + 1, 0x4000_0000, 8, is_write=True), FaultRecord)
    assert drv.iommu_read_and_clear_dirty(dom, 0x4000_0000, KIB4) == []
    with pytest.raises(ValueError, match="not enabled"):
        drv.iommu_read_and_clear_dirty(other, 0x4000_0000, KIB4)


# -- what a VMM needs of the DMA API to move a guest (live migration) ------------------------------
def test_cpu_writes_are_logged_per_page_while_logging():
    mem = BytearrayMemory(MEM_SIZE)
    drv = IommuDriver(Iommu(mem), PageAllocator(mem, 0, MEM_SIZE))
    dev = DmaDevice.for_rid(drv, RID)
    buf, _iova = dev.dma_alloc_coherent(3 * KIB4)
    buf.write(0, b"x")
    assert dev.get_cpu_dirty_log() == set()  # not logging yet
    dev.start_cpu_dirty_log()
    buf.write(KIB4 - 2, b"abcd")  # straddles pages 0 and 1
    assert dev.get_cpu_dirty_log() == {buf.phys, buf.phys + KIB4}
    assert dev.get_cpu_dirty_log() == set()


def test_a_layout_is_reproduced_on_another_host_and_the_buffers_follow():
    """map_at the same IOVAs on a second host, adopt the guest's buffers there: the handles now
    read and write the second host's memory, and the guest's later unmap and free work there."""
    src_mem, dst_mem = BytearrayMemory(MEM_SIZE), BytearrayMemory(MEM_SIZE)
    src = DmaDevice.for_rid(IommuDriver(Iommu(src_mem), PageAllocator(src_mem, 0, MEM_SIZE)), RID)
    dst_drv = IommuDriver(Iommu(dst_mem), PageAllocator(dst_mem, 0, MEM_SIZE))
    dst = DmaDevice.for_rid(dst_drv, RID)
    buf, iova = src.dma_alloc_coherent(2 * KIB4)
    buf.write(10, b"guest data")
    [(base, size, prot)] = src.mapped()
    assert (base, size, prot) == (iova, 2 * KIB4, RW)
    phys = dst.map_at(iova, size, prot)
    dst_mem.write(phys, src_mem.read(buf.phys, size))
    dst.adopt(buf, phys)
    assert buf.read(10, 10) == b"guest data" and buf.phys == phys
    buf.write(0, b"after")
    assert dst_mem.read(phys, 5) == b"after" and src_mem.read(src.driver.iova_to_phys(src.domain, iova), 5) != b"after"
    assert dst_drv.iommu.translate(RID, iova + 10, 4, is_write=False) == [(phys + 10, 4)]
    with pytest.raises(MemoryError):
        dst.map_at(iova, KIB4, RW)  # the IOVA is taken
    dst.dma_free_coherent(buf, iova)  # the guest frees it on the new host
    assert dst.mapped() == [] and dst.buffers() == []
    assert isinstance(dst_drv.iommu.translate(RID, iova, 4, is_write=False), FaultRecord)

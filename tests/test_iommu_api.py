"""The software side: IommuDriver (domains, attach, iommu_map/unmap) and the DMA API.

Entries the driver writes are decoded here with the spec's bit positions typed
out by hand, and every mapping is checked through the hardware walker.
"""

import struct
from types import SimpleNamespace

import pytest
from cocotbext.axi import AddressSpace

from iommu import (
    DMA_BIDIRECTIONAL,
    DMA_FROM_DEVICE,
    DMA_TO_DEVICE,
    IOMMU_READ,
    IOMMU_WRITE,
    BytearrayMemory,
    DmaBuffer,
    DmaDevice,
    ExtentAllocator,
    FaultReason,
    FaultRecord,
    HostMemoryError,
    Iommu,
    IommuDriver,
    PageAllocator,
    RcHostMemory,
)
from iommu.events import Fault, IotlbFill, IotlbInvalidate, Translation

RW = IOMMU_READ | IOMMU_WRITE
RID_A, RID_B = 0x0100, 0x0101  # 01:00.0 and 01:00.1
MEM_SIZE = 0x80_0000  # 8 MiB: page tables and buffers


@pytest.fixture
def drv():
    mem = BytearrayMemory(MEM_SIZE)
    return IommuDriver(Iommu(mem), PageAllocator(mem, 0, MEM_SIZE))


def qword(mem, addr):
    return struct.unpack("<Q", mem.read(addr, 8))[0]


def raw_walk(mem, root, rid, iova):
    """Decode root -> context -> 4-level SL tables by hand; returns [(level, entry)]."""
    lo = qword(mem, root + 16 * (rid >> 8))
    assert lo & 1, "root entry present"
    ctx_lo = qword(mem, (lo & ~0xFFF) + 16 * (rid & 0xFF))
    ctx_hi = qword(mem, (lo & ~0xFFF) + 16 * (rid & 0xFF) + 8)
    assert ctx_lo & 1 and (ctx_lo >> 2) & 3 == 0 and ctx_hi & 7 == 2, "present, TT=00, AW=48-bit"
    table, path = ctx_lo & ~0xFFF, []
    for level in (4, 3, 2, 1):
        entry = qword(mem, table + 8 * ((iova >> (12 + 9 * (level - 1))) & 0x1FF))
        path.append((level, entry))
        if not entry & 3 or level == 1 or entry & 0x80:
            break
        table = entry & 0x000F_FFFF_FFFF_F000
    return path


def fault_of(result):
    assert isinstance(result, FaultRecord), result
    return result


# -- attach and context entries -----------------------------------------------------
def test_attach_writes_context_entry_with_domain_id(drv):
    dom = drv.iommu_domain_alloc()
    drv.attach_device(dom, RID_A)
    lo = qword(drv.memory, drv.root_table + 16)
    ctx_hi = qword(drv.memory, (lo & ~0xFFF) + 8)
    assert (ctx_hi >> 8) & 0xFFFF == dom.did and dom.did != 0
    assert qword(drv.memory, lo & ~0xFFF) & ~0xFFF == dom.pgd
    assert drv.iommu.root_table_address == drv.root_table and drv.iommu.translation_enabled
    assert drv.domain_of(RID_A) is dom and dom.devices == {RID_A}


def test_unattached_device_is_blocked(drv):
    drv.attach_device(drv.iommu_domain_alloc(), RID_A)
    fault = fault_of(drv.iommu.translate(RID_B, 0x1000, 4, False))
    assert (fault.source_id, fault.reason) == (RID_B, FaultReason.CONTEXT_ENTRY_NOT_PRESENT)
    assert fault_of(drv.iommu.translate(0x0200, 0x1000, 4, False)).reason is FaultReason.ROOT_ENTRY_NOT_PRESENT


def test_passthrough_is_identity(drv):
    si = drv.attach_passthrough(RID_B)
    assert si.passthrough and drv.domain_of(RID_B) is si
    assert drv.iommu.translate(RID_B, 0x0012_3456, 8, True) == [(0x0012_3456, 8)]
    dev = DmaDevice(drv, si)
    buf = dev.alloc_buffer(64)
    assert dev.dma_map(buf, 64, DMA_TO_DEVICE) == buf.phys


# -- iommu_map / iommu_unmap ------------------------------------------------------
def test_map_4k_pages_writes_sl_entries(drv):
    dom = drv.iommu_domain_alloc()
    drv.attach_device(dom, RID_A)
    drv.iommu_map(dom, 0x4000_0000, 0x0030_0000, 0x2000, IOMMU_READ)
    path = raw_walk(drv.memory, drv.root_table, RID_A, 0x4000_1000)
    assert [level for level, _ in path] == [4, 3, 2, 1]
    assert path[-1][1] == 0x0030_1000 | 0b01  # R only, no PS
    assert all(entry & 3 == 3 for _, entry in path[:-1])  # directories grant R|W
    fault = fault_of(drv.iommu.translate(RID_A, 0x4000_1FF0, 0x20, False))  # runs off the mapping
    assert (fault.address, fault.level) == (0x4000_2000, 1)
    assert drv.iommu.translate(RID_A, 0x4000_0FF0, 0x20, False) == [(0x0030_0FF0, 0x10), (0x0030_1000, 0x10)]
    assert drv.iova_to_phys(dom, 0x4000_1ABC) == 0x0030_1ABC
    assert drv.iova_to_phys(dom, 0x4000_2000) is None


def test_map_uses_2m_and_1g_pages_when_aligned(drv):
    dom = drv.iommu_domain_alloc()
    drv.attach_device(dom, RID_A)
    drv.iommu_map(dom, 0x40_0000, 0x60_0000, 0x20_0000, RW)  # 2 MiB-aligned both sides
    drv.iommu_map(dom, 0x8000_0000, 0x1_4000_0000, 1 << 30, IOMMU_WRITE)  # 1 GiB-aligned
    level, pde = raw_walk(drv.memory, drv.root_table, RID_A, 0x40_0000)[-1]
    assert (level, pde) == (2, 0x60_0000 | 0x80 | 0b11)
    level, pdpte = raw_walk(drv.memory, drv.root_table, RID_A, 0x8000_0000)[-1]
    assert (level, pdpte) == (3, 0x1_4000_0000 | 0x80 | 0b10)
    assert drv.iommu.translate(RID_A, 0x5F_FFFC, 4, True) == [(0x7F_FFFC, 4)]
    assert drv.iommu.translate(RID_A, 0xBFFF_FFF0, 16, True) == [(0x1_7FFF_FFF0, 16)]
    assert {e.shift for e in drv.iommu.iotlb.entries.values()} == {21, 30}


def test_map_misaligned_2m_uses_4k_pages(drv):
    dom = drv.iommu_domain_alloc()
    drv.attach_device(dom, RID_A)
    drv.iommu_map(dom, 0x40_0000, 0x60_1000, 0x20_0000, RW)  # phys only 4 KiB-aligned
    path = raw_walk(drv.memory, drv.root_table, RID_A, 0x5F_F000)
    assert path[-1] == (1, 0x80_0000 | 0b11)
    assert len(dom.tables) == 3  # PDPT, PD, one PT: 512 PTEs in one table


def test_map_rejects_overlap_and_bad_arguments(drv):
    dom = drv.iommu_domain_alloc()
    drv.iommu_map(dom, 0x40_0000, 0x60_0000, 0x20_0000, RW)
    with pytest.raises(ValueError, match="large page"):
        drv.iommu_map(dom, 0x41_0000, 0x1000, 0x1000, RW)
    drv.iommu_map(dom, 0x1000, 0x2000, 0x1000, RW)
    with pytest.raises(ValueError, match="already mapped"):
        drv.iommu_map(dom, 0x1000, 0x3000, 0x1000, RW)
    with pytest.raises(ValueError):
        drv.iommu_map(dom, 0x2001, 0x3000, 0x1000, RW)
    with pytest.raises(ValueError):
        drv.iommu_map(dom, 0x2000, 0x3000, 0x1000, 0)
    with pytest.raises(ValueError, match="beyond"):
        drv.iommu_map(dom, (1 << 48) - 0x1000, 0x3000, 0x2000, RW)


def test_unmap_flushes_iotlb(drv):
    dom = drv.iommu_domain_alloc()
    drv.attach_device(dom, RID_A)
    drv.iommu_map(dom, 0x10_0000, 0x20_0000, 0x3000, RW)
    for page in range(3):
        drv.iommu.translate(RID_A, 0x10_0000 + 0x1000 * page, 4, False)
    assert drv.iommu_unmap(dom, 0x10_1000, 0x1000) == 0x1000
    fault = fault_of(drv.iommu.translate(RID_A, 0x10_1008, 4, False))
    assert (fault.reason, fault.level, fault.address) == (FaultReason.SLPTE_NOT_PRESENT, 1, 0x10_1008)
    assert drv.iommu.translate(RID_A, 0x10_2000, 4, False) == [(0x20_2000, 4)]  # neighbour intact
    assert drv.iommu_unmap(dom, 0x10_1000, 0x1000) == 0  # nothing left there


def test_unmap_without_flush_leaves_stale_mapping_until_invalidated(drv):
    dom = drv.iommu_domain_alloc()
    drv.attach_device(dom, RID_A)
    drv.iommu_map(dom, 0x10_0000, 0x20_0000, 0x1000, RW)
    assert drv.iommu.translate(RID_A, 0x10_0000, 4, True) == [(0x20_0000, 4)]
    assert drv.iommu_unmap(dom, 0x10_0000, 0x1000, flush=False) == 0x1000
    assert drv.iova_to_phys(dom, 0x10_0000) is None  # gone from the tables...
    assert drv.iommu.translate(RID_A, 0x10_0004, 4, True) == [(0x20_0004, 4)]  # ...not from the IOTLB
    drv.flush_iotlb_range(dom, 0x10_0000, 0x1000)
    assert fault_of(drv.iommu.translate(RID_A, 0x10_0004, 4, True)).reason is FaultReason.SLPTE_NOT_PRESENT


def test_unmap_inside_large_page_unmaps_it_whole(drv):
    dom = drv.iommu_domain_alloc()
    drv.attach_device(dom, RID_A)
    drv.iommu_map(dom, 0x40_0000, 0x60_0000, 0x20_0000, RW)
    drv.iommu.translate(RID_A, 0x40_0000, 4, False)
    assert drv.iommu_unmap(dom, 0x41_0000, 0x1000) == 0x20_0000
    assert fault_of(drv.iommu.translate(RID_A, 0x40_0000, 4, False)).level == 2


def test_flush_range_uses_psi_mask_or_domain(drv):
    dom = drv.iommu_domain_alloc()
    drv.attach_device(dom, RID_A)
    drv.iommu_map(dom, 0x100_0000, 0x10_0000, 0x40_0000, RW)  # 2 x 2 MiB pages
    drv.iommu_map(dom, 0x200_0000, 0x50_0000, 0x1000, RW)
    for iova in (0x100_0000, 0x120_0000, 0x200_0000):
        drv.iommu.translate(RID_A, iova, 4, False)
    drv.flush_iotlb_range(dom, 0x11F_F000, 0x2000)  # straddles both 2 MiB pages
    assert drv.iommu.iotlb.lookup(dom.did, 0x100_0000) is None
    assert drv.iommu.iotlb.lookup(dom.did, 0x120_0000) is None
    assert drv.iommu.iotlb.lookup(dom.did, 0x200_0000) is not None
    drv.iommu_map(dom, 1 << 32, 0x60_0000, 0x1000, RW)
    drv.iommu.translate(RID_A, 1 << 32, 4, False)
    drv.flush_iotlb_range(dom, 0, 1 << 31)  # AM 19 > MAMV: domain-selective instead
    assert drv.iommu.iotlb.lookup(dom.did, 1 << 32) is None  # outside the range, yet dropped


def test_detach_blocks_at_once_and_reattach_restores(drv):
    dom = drv.iommu_domain_alloc()
    drv.attach_device(dom, RID_A)
    drv.iommu_map(dom, 0x10_0000, 0x20_0000, 0x1000, RW)
    assert drv.iommu.translate(RID_A, 0x10_0000, 4, True) == [(0x20_0000, 4)]
    drv.detach_device(RID_A)
    fault = fault_of(drv.iommu.translate(RID_A, 0x10_0000, 4, True))
    assert (fault.source_id, fault.reason) == (RID_A, FaultReason.CONTEXT_ENTRY_NOT_PRESENT)
    assert drv.domain_of(RID_A) is None and dom.devices == set()
    drv.attach_device(dom, RID_A)
    assert drv.iommu.translate(RID_A, 0x10_0000, 4, True) == [(0x20_0000, 4)]


def test_moving_device_to_another_domain(drv):
    a, b = drv.iommu_domain_alloc(), drv.iommu_domain_alloc()
    drv.iommu_map(a, 0x10_0000, 0x20_0000, 0x1000, RW)
    drv.iommu_map(b, 0x10_0000, 0x30_0000, 0x1000, RW)
    drv.attach_device(a, RID_A)
    assert drv.iommu.translate(RID_A, 0x10_0000, 4, False) == [(0x20_0000, 4)]
    drv.attach_device(b, RID_A)
    assert drv.iommu.translate(RID_A, 0x10_0000, 4, False) == [(0x30_0000, 4)]
    assert a.devices == set() and b.devices == {RID_A}


def test_domain_free_returns_table_pages(drv):
    dom = drv.iommu_domain_alloc()
    drv.attach_device(dom, RID_A)
    drv.iommu_map(dom, 0x10_0000, 0x20_0000, 0x1000, RW)
    with pytest.raises(ValueError, match="attached"):
        drv.iommu_domain_free(dom)
    drv.detach_device(RID_A)
    pages = [dom.pgd, *dom.tables]
    drv.iommu_domain_free(dom)
    assert sorted(drv.pages.alloc() for _ in pages) == sorted(pages)


# -- the DMA API ---------------------------------------------------------------------
def device_write(hw, rid, iova, data):
    """What the root complex does for a device's DMA write."""
    chunks = hw.translate(rid, iova, len(data), is_write=True)
    if isinstance(chunks, FaultRecord):
        return chunks
    pos = 0
    for phys, n in chunks:
        hw.memory.write(phys, data[pos : pos + n])
        pos += n
    return None


def device_read(hw, rid, iova, length):
    chunks = hw.translate(rid, iova, length, is_write=False)
    if isinstance(chunks, FaultRecord):
        return chunks
    return b"".join(hw.memory.read(phys, n) for phys, n in chunks)


def test_alloc_coherent_round_trip(drv):
    dev = DmaDevice.for_rid(drv, RID_A)
    buf, iova = dev.dma_alloc_coherent(0x1800)
    assert len(buf) == 0x1800 and buf.read() == bytes(0x1800)
    buf.write(0x10, b"cpu->device")
    assert device_read(drv.iommu, RID_A, iova + 0x10, 11) == b"cpu->device"
    assert device_write(drv.iommu, RID_A, iova + 0xFFA, b"device->cpu!") is None  # crosses a page
    assert buf.read(0xFFA, 12) == b"device->cpu!"
    assert fault_of(device_read(drv.iommu, RID_A, iova + 0x2000, 4)).reason is FaultReason.SLPTE_NOT_PRESENT
    with pytest.raises(IndexError):
        buf.write(0x17FF, b"xy")
    dev.dma_free_coherent(buf, iova)
    fault = fault_of(device_read(drv.iommu, RID_A, iova, 4))
    assert (fault.reason, fault.address) == (FaultReason.SLPTE_NOT_PRESENT, iova)


def test_iovas_are_not_physical_addresses(drv):
    dev = DmaDevice.for_rid(drv, RID_A)
    buf, iova = dev.dma_alloc_coherent(0x1000)
    assert iova != buf.phys and iova >= 0x10_0000 and iova < 1 << 32


def test_dma_map_directions_set_permissions(drv):
    dev = DmaDevice.for_rid(drv, RID_A)
    tx = dev.alloc_buffer(0x100)
    tx.write(0, b"payload")
    rx = dev.alloc_buffer(0x100)
    tx_iova = dev.dma_map(tx, 0x100, DMA_TO_DEVICE)
    rx_iova = dev.dma_map(rx, 0x100, DMA_FROM_DEVICE)
    assert device_read(drv.iommu, RID_A, tx_iova, 7) == b"payload"
    assert fault_of(device_write(drv.iommu, RID_A, tx_iova, b"x")).reason is FaultReason.WRITE_DENIED
    assert device_write(drv.iommu, RID_A, rx_iova + 3, b"frame") is None
    assert rx.read(3, 5) == b"frame"
    assert fault_of(device_read(drv.iommu, RID_A, rx_iova, 4)).reason is FaultReason.READ_DENIED
    both = dev.dma_map(tx, 0x100, DMA_BIDIRECTIONAL)
    assert device_write(drv.iommu, RID_A, both + 7, b"!") is None and tx.read(0, 8) == b"payload!"


def test_dma_map_keeps_offset_in_page_and_unmap_frees_iova(drv):
    dev = DmaDevice.for_rid(drv, RID_A)
    buf = dev.alloc_buffer(0x3000)
    phys = buf.phys + 0xF80  # a raw physical address, not page aligned
    iova = dev.dma_map(phys, 0x100, DMA_TO_DEVICE)
    assert iova & 0xFFF == 0xF80
    assert drv.iommu.translate(RID_A, iova, 0x100, False) == [(phys, 0x80), (buf.phys + 0x1000, 0x80)]
    with pytest.raises(ValueError):
        dev.dma_unmap(iova, 0x2000)  # larger than the mapping
    dev.dma_unmap(iova, 0x100)
    assert fault_of(drv.iommu.translate(RID_A, iova, 4, False)).reason is FaultReason.SLPTE_NOT_PRESENT
    with pytest.raises(ValueError):
        dev.dma_unmap(iova, 0x100)
    assert dev.dma_map(phys, 0x100, DMA_TO_DEVICE) == iova  # the IOVA range was freed


def test_large_coherent_buffer_uses_2m_page(drv):
    dev = DmaDevice.for_rid(drv, RID_A)
    buf, iova = dev.dma_alloc_coherent(0x20_0000)
    assert iova & 0x1F_FFFF == 0 and buf.phys & 0x1F_FFFF == 0
    assert drv.iommu.translate(RID_A, iova + 0x1F_FFFC, 4, True) == [(buf.phys + 0x1F_FFFC, 4)]
    assert drv.iommu.iotlb.lookup(drv.domain_of(RID_A).did, iova).shift == 21


def test_two_domains_have_independent_iova_spaces(drv):
    dev_a = DmaDevice.for_rid(drv, RID_A)
    dev_b = DmaDevice.for_rid(drv, RID_B)
    buf_a, iova_a = dev_a.dma_alloc_coherent(0x1000)
    buf_b, iova_b = dev_b.dma_alloc_coherent(0x1000)
    buf_a.write(0, b"AAAA")
    buf_b.write(0, b"BBBB")
    assert iova_a == iova_b  # same IOVA, different address spaces
    assert device_read(drv.iommu, RID_A, iova_a, 4) == b"AAAA"
    assert device_read(drv.iommu, RID_B, iova_b, 4) == b"BBBB"
    only_b, iova_b2 = dev_b.dma_alloc_coherent(0x1000)
    fault = fault_of(device_read(drv.iommu, RID_A, iova_b2, 4))  # A cannot reach B's buffer
    assert (fault.source_id, fault.address, fault.reason) == (RID_A, iova_b2, FaultReason.SLPTE_NOT_PRESENT)


def test_shared_domain_serves_two_requesters(drv):
    dev = DmaDevice.for_rid(drv, RID_A)
    DmaDevice.for_rid(drv, RID_B, dev.domain)
    buf, iova = dev.dma_alloc_coherent(0x1000)
    buf.write(0, b"both")
    assert device_read(drv.iommu, RID_B, iova, 4) == b"both"


def test_detach_faults_dma_of_mapped_buffer(drv):
    dev = DmaDevice.for_rid(drv, RID_A)
    buf, iova = dev.dma_alloc_coherent(0x1000)
    assert device_write(drv.iommu, RID_A, iova, b"ok") is None
    drv.detach_device(RID_A)
    fault = fault_of(device_write(drv.iommu, RID_A, iova, b"no"))
    assert (fault.reason, fault.is_write) == (FaultReason.CONTEXT_ENTRY_NOT_PRESENT, True)
    assert buf.read(0, 2) == b"ok"


def test_reserved_regions_stay_out_of_iova_space():
    mem = BytearrayMemory(MEM_SIZE)
    hw = Iommu(mem)
    hw.reserved_regions.append((0xFFFF_E000, 0x10))  # an interrupt window at the top
    drv = IommuDriver(hw, PageAllocator(mem, 0, MEM_SIZE))
    dev = DmaDevice.for_rid(drv, RID_A)
    _buf, iova = dev.dma_alloc_coherent(0x1000)
    assert iova == 0xFFFF_F000  # the page above the window is still usable
    _buf, iova = dev.dma_alloc_coherent(0x1000)
    assert iova == 0xFFFF_D000


# -- allocators and memory -------------------------------------------------------------
def test_extent_allocator_alignment_merge_and_reserve():
    ext = ExtentAllocator(0x1000, 0x10_0000)
    a = ext.alloc(0x1000)
    b = ext.alloc(0x3000, align=0x4000)
    assert (a, b) == (0x1000, 0x4000)
    ext.free(a)
    ext.free(b)
    assert ext.alloc(0x10_0000) == 0x1000  # everything merged back into one range
    top = ExtentAllocator(0, 0x10_0000, top_down=True)
    top.reserve(0xF_F000, 0x1000)
    assert top.alloc(0x2000) == 0xF_D000
    with pytest.raises(MemoryError):
        top.alloc(0x20_0000)


def test_page_allocator_zeroes_pages():
    mem = BytearrayMemory(0x4000, base=0x1_0000)
    pages = PageAllocator(mem, 0x1_0000, 0x4000)
    page = pages.alloc()
    mem.write(page, b"\xff" * 16)
    pages.free(page)
    assert pages.alloc() == page and mem.read(page, 16) == bytes(16)
    with pytest.raises(HostMemoryError):
        mem.read(0x1_4000 - 2, 4)


def test_rc_host_memory_reads_pool_regions_synchronously():
    space = AddressSpace(2**64)
    rc = SimpleNamespace(mem_pool=space.create_pool(0, 0x8000_0000))
    first = rc.mem_pool.alloc_region(0x2000)
    host = RcHostMemory(rc)
    second = rc.mem_pool.alloc_region(0x2000)  # allocated after the view was made
    base1, base2 = first.get_absolute_address(0), second.get_absolute_address(0)
    assert base2 == base1 + 0x2000
    host.write(base1 + 0x1FFE, b"span")  # crosses from one region into the next
    assert first.mem[0x1FFE:0x2000] == b"sp" and second.mem[0:2] == b"an"
    assert host.read(base1 + 0x1FFE, 4) == b"span"
    with pytest.raises(HostMemoryError):
        host.read(base2 + 0x2000, 4)
    # the region last found answers first: it must not answer for its neighbour or past its end
    host.write(base2 + 0x10, b"two")
    assert host.span(base2 + 0x10, 3) == (second.mem, 0x10)
    assert host.span(base1 + 0x10, 3) == (first.mem, 0x10) and host.read(base2 + 0x10, 3) == b"two"
    assert host.span(base2 + 0x1FFF, 2) is None and host.span(base1 + 0x1FFF, 2) is None
    with pytest.raises(HostMemoryError):
        host.write(base2 + 0x1FFF, b"ab")


def test_a_buffer_is_the_memory_it_lies_in_until_relocated():
    """The CPU reaches a buffer's bytes in place; a buffer split over two RAM regions, or one
    the hypervisor moved, is still its memory's, byte for byte."""
    old, new = BytearrayMemory(0x4000, base=0x10_0000), BytearrayMemory(0x4000, base=0x80_0000)
    buf = DmaBuffer(old, 0x10_1000, 0x100)
    buf.write(0x10, b"ring")
    old.write(0x10_1020, b"device")  # what a device's DMA left there
    assert old.read(0x10_1010, 4) == b"ring" and buf.read(0x20, 6) == b"device"
    with pytest.raises(IndexError):
        buf.write(0xFE, b"abc")
    new.write(0x80_2000, old.read(0x10_1000, 0x100))  # live migration: the VMM copies the page
    written = []
    buf.relocate(new, 0x80_2000, lambda phys, n: written.append((phys, n)))
    buf.write(0x10, b"RING")
    assert new.read(0x80_2010, 4) == b"RING" and old.read(0x10_1010, 4) == b"ring"
    assert buf.read(0x20, 6) == b"device" and written == [(0x80_2010, 4)]

    space = AddressSpace(2**64)
    rc = SimpleNamespace(mem_pool=space.create_pool(0, 0x8000_0000))
    first, second = rc.mem_pool.alloc_region(0x1000), rc.mem_pool.alloc_region(0x1000)
    split = DmaBuffer(RcHostMemory(rc), first.get_absolute_address(0xF00), 0x200)
    split.write(0xF0, b"across")
    assert first.mem[0xFF0:0xFF6] == b"across" and split.read(0xF0, 6) == b"across"
    split.write(0xFE, b"seam")
    assert first.mem[0xFFE:0x1000] == b"se" and second.mem[0:2] == b"am" and split.read(0xFE, 4) == b"seam"


# -- observation: iommu.events and a software walk of a domain ------------------------------------
def test_events_report_translations_faults_fills_and_invalidations(drv):
    seen = []
    for kind in (Translation, Fault, IotlbFill, IotlbInvalidate):
        drv.iommu.events.subscribe(kind, seen.append)
    dom = drv.iommu_domain_alloc()
    drv.attach_device(dom, RID_A)
    seen.clear()  # attach invalidated the caches
    drv.iommu_map(dom, 0x4000_0000, 0x0030_0000, 0x1000, IOMMU_READ)
    drv.iommu.translate(RID_A, 0x4000_0010, 8, False)
    drv.iommu.translate(RID_A, 0x4000_0010, 8, True)
    drv.iommu_unmap(dom, 0x4000_0000, 0x1000)
    fill, ok, fault_event, denied, invalidate = seen
    assert fill == IotlbFill(dom.did, 0x4000_0010, 12)
    assert ok == Translation(RID_A, 0x4000_0010, 8, False, ((0x0030_0010, 8),), None) and ok.phys == 0x0030_0010
    assert fault_event.logged and fault_event.record.reason is FaultReason.WRITE_DENIED
    assert denied.fault is fault_event.record and denied.phys is None and denied.chunks == ()
    assert invalidate == IotlbInvalidate(dom.did, 0x4000_0000, 0)


def test_mappings_walks_every_leaf_of_a_domain(drv):
    dom = drv.iommu_domain_alloc()
    drv.iommu_map(dom, 0x4000_0000, 0x0030_0000, 0x2000, IOMMU_READ)
    drv.iommu_map(dom, 0x8000_0000, 0x0060_0000, 2 << 20, IOMMU_READ | IOMMU_WRITE)
    assert drv.mappings(dom) == [
        (0x4000_0000, 0x0030_0000, 0x1000, IOMMU_READ),
        (0x4000_1000, 0x0030_1000, 0x1000, IOMMU_READ),
        (0x8000_0000, 0x0060_0000, 2 << 20, IOMMU_READ | IOMMU_WRITE),
    ]
    assert drv.mappings(drv.attach_passthrough(RID_B)) == []

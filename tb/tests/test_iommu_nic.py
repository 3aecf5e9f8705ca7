"""DMA isolation of the NIC's functions behind the IOMMU (``build_system(iommu=True)``).

The NIC has no queue engine yet, so device DMA is issued through the model's
function objects: ``nic.vfs[i].mem_write`` / ``mem_read`` send real upstream TLPs
carrying that VF's requester ID, and IommuRootComplex remaps them.  The PF is in
pass-through, each VF is blocked until ``System.attach_vf_domain``.  Run:
``python -m tb.tools.runner tb.tests.test_iommu_nic``.
"""

from __future__ import annotations

import cocotb
from cocotb.triggers import First, Timer

from iommu import DMA_TO_DEVICE, FaultReason
from tb.lib.system import System, build_system
from tb.tests.test_iommu_rc import (
    expect_ur,  # mem_read raises, and the raw completion is UR
)

TIMEOUT = dict(timeout=20, timeout_unit="us")
UNMAPPED_IOVA = 0x20_0000  # below every IOVA the allocator hands out (it works down from 4 GiB)
#: VT-d fault reason (FR) codes, (write, read), from the spec's table (§7.1.3): a
#: non-present second-level entry reports as write/read denied
FR_CODES = {
    FaultReason.ROOT_ENTRY_NOT_PRESENT: (1, 1),
    FaultReason.CONTEXT_ENTRY_NOT_PRESENT: (2, 2),
    FaultReason.ADDRESS_BEYOND_AW: (4, 4),
    FaultReason.SLPTE_NOT_PRESENT: (5, 6),
}


async def iommu_system(dut, num_vfs: int, total_vfs: int = 16, ari: bool = True) -> System:
    system = await build_system(dut, total_vfs=total_vfs, ari=ari, iommu=True)
    await system.enable_vfs(num_vfs)
    assert system.rc.iommu.translation_enabled
    return system


async def settle() -> None:
    """Let posted writes cross the link and reach the IOMMU."""
    await Timer(2, "us")


def rid(system: System, index: int) -> int:
    rid_ = int(system.nic.vfs[index].pcie_id)
    assert rid_ == int(system.vfs[index].pdev.pcie_id)  # device and host agree on the RID
    return rid_


def host_snapshot(system: System) -> list[bytes]:
    """Every byte of host RAM (all RC regions: IOMMU pool, MSI, the PF driver's)."""
    return [bytes(region.mem) for _base, _size, _off, region in system.rc.mem_pool.regions]


def faults_since(system: System, mark: int) -> list[tuple]:
    return [
        (r.source_id, r.address, r.is_write, r.reason, r.fault_reason) for r in system.rc.iommu.faults.records[mark:]
    ]


async def expect_blocked(system: System, index: int, addr: int, reason: FaultReason) -> None:
    """VF ``index`` writes then reads ``addr``: host RAM is unchanged, the reads get
    UR, and the fault log gains exactly those records (the write, the read, the raw
    re-read in ``expect_ur``) with the VF's RID."""
    function = system.nic.vfs[index]
    mark = len(system.rc.iommu.faults.records)
    before = host_snapshot(system)
    await function.mem_write(addr, b"\xee" * 64)
    await settle()
    assert host_snapshot(system) == before, f"blocked write to {addr:#x} changed host memory"
    await expect_ur(function, addr, 16)
    fr_write, fr_read = FR_CODES[reason]
    write = (rid(system, index), addr, True, reason, fr_write)
    read = (rid(system, index), addr, False, reason, fr_read)
    assert faults_since(system, mark) == [write, read, read]


@cocotb.test()
async def vfs_are_blocked_until_assigned_a_domain(dut):
    """The default: no context entry for a VF, so its DMA faults; the PF passes through."""
    system = await iommu_system(dut, num_vfs=2)
    drv = system.iommu_driver
    assert drv.domain_of(int(system.nic.pf.pcie_id)).passthrough
    assert all(drv.domain_of(rid(system, i)) is None for i in range(2))
    pf_buf, pf_phys = system.pf_dma.dma_alloc_coherent(0x1000)
    pf_buf.write(0, b"PF private data")
    await expect_blocked(system, 1, pf_phys, FaultReason.CONTEXT_ENTRY_NOT_PRESENT)
    assert pf_buf.read(0, 15) == b"PF private data"
    dev = system.attach_vf_domain(1)
    assert system.vfs[1].dma is dev and drv.domain_of(rid(system, 1)) is dev.domain
    assert drv.domain_of(rid(system, 0)) is None  # assigning one VF leaves the others blocked
    await expect_blocked(system, 0, UNMAPPED_IOVA, FaultReason.CONTEXT_ENTRY_NOT_PRESENT)


@cocotb.test()
async def each_vf_dma_reaches_only_its_own_domain(dut):
    system = await iommu_system(dut, num_vfs=2)
    dev_a, dev_b = system.attach_vf_domain(0), system.attach_vf_domain(system.vfs[1])
    assert dev_a.domain.did != dev_b.domain.did
    buf_a, iova_a = dev_a.dma_alloc_coherent(0x3000)
    buf_b, iova_b = dev_b.dma_alloc_coherent(0x3000)
    assert iova_a == iova_b  # the same IOVA names different host pages in each domain
    assert buf_a.phys != buf_b.phys and iova_a != buf_a.phys
    data_a = bytes(range(256)) * 0x27  # 0x2700 bytes from 0x7F9: touches all three pages
    data_b = bytes(255 - k % 256 for k in range(len(data_a)))
    vf_a, vf_b = system.nic.vfs[0], system.nic.vfs[1]
    await vf_a.mem_write(iova_a + 0x7F9, data_a)  # crosses two page boundaries, several TLPs
    await vf_b.mem_write(iova_b + 0x7F9, data_b)
    await settle()
    assert buf_a.read(0x7F9, len(data_a)) == data_a
    assert buf_b.read(0x7F9, len(data_b)) == data_b
    assert buf_a.read(0, 0x7F9) == bytes(0x7F9) and buf_b.read(0, 0x7F9) == bytes(0x7F9)
    buf_a.write(0x40, b"for VF A only")
    buf_b.write(0x40, b"for VF B only")
    assert await vf_a.mem_read(iova_a + 0x40, 13, **TIMEOUT) == b"for VF A only"
    assert await vf_b.mem_read(iova_b + 0x40, 13, **TIMEOUT) == b"for VF B only"
    assert await vf_a.mem_read(iova_a + 0x7F9, len(data_a), **TIMEOUT) == data_a
    iommu = system.rc.iommu
    assert iommu.faults.total == 0
    assert iommu.iotlb.walks == 6 and iommu.iotlb.hits > iommu.iotlb.walks  # 3 pages per domain, then cached


@cocotb.test()
async def vf_cannot_reach_another_domain_the_pf_or_unmapped_pages(dut):
    system = await iommu_system(dut, num_vfs=2)
    dev_a, dev_b = system.attach_vf_domain(0), system.attach_vf_domain(1)
    buf_a, iova_a = dev_a.dma_alloc_coherent(0x1000)
    buf_b, iova_b = dev_b.dma_alloc_coherent(0x1000)
    only_b, iova_b2 = dev_b.dma_alloc_coherent(0x1000)  # mapped in B's domain only
    only_b.write(0, b"B's private page")
    pf_buf, pf_phys = system.pf_dma.dma_alloc_coherent(0x1000)
    assert pf_phys == pf_buf.phys  # pass-through: the PF's IOVA is the physical address
    pf_buf.write(0, b"PF private data")
    assert system.iommu_driver.iova_to_phys(dev_a.domain, iova_b2) is None

    await expect_blocked(system, 0, iova_b2, FaultReason.SLPTE_NOT_PRESENT)
    await expect_blocked(system, 0, pf_phys, FaultReason.SLPTE_NOT_PRESENT)
    await expect_blocked(system, 0, UNMAPPED_IOVA + 0x10, FaultReason.SLPTE_NOT_PRESENT)
    await expect_blocked(system, 0, buf_b.phys, FaultReason.SLPTE_NOT_PRESENT)  # B's page by physical address
    await expect_blocked(system, 0, 1 << 48, FaultReason.ADDRESS_BEYOND_AW)
    assert only_b.read(0, 16) == b"B's private page" and pf_buf.read(0, 15) == b"PF private data"
    # a read-only mapping refuses the device's writes
    tx = dev_a.alloc_buffer(0x1000)
    tx.write(0, b"to the wire")
    tx_iova = dev_a.dma_map(tx, 0x1000, DMA_TO_DEVICE)
    faults = system.rc.iommu.faults
    assert not faults.overflow and len(faults.clear()) == 15  # the log holds 16
    mark = 0
    await system.nic.vfs[0].mem_write(tx_iova, b"overwritten")
    assert await system.nic.vfs[0].mem_read(tx_iova, 11, **TIMEOUT) == b"to the wire"
    assert faults_since(system, mark) == [(rid(system, 0), tx_iova, True, FaultReason.WRITE_DENIED, 5)]
    # VF A's own page and VF B's still work after all that
    await system.nic.vfs[0].mem_write(iova_a, b"A ok")
    await system.nic.vfs[1].mem_write(iova_b, b"B ok")
    await settle()
    assert (buf_a.read(0, 4), buf_b.read(0, 4)) == (b"A ok", b"B ok")
    assert {r.source_id for r in system.rc.iommu.faults.records} == {rid(system, 0)}


@cocotb.test()
async def detach_stops_one_vf_at_once_while_the_other_continues(dut):
    system = await iommu_system(dut, num_vfs=2)
    dev_a, dev_b = system.attach_vf_domain(0), system.attach_vf_domain(1)
    (buf_a, iova_a), (buf_b, iova_b) = dev_a.dma_alloc_coherent(0x1000), dev_b.dma_alloc_coherent(0x1000)
    vf_a, vf_b = system.nic.vfs
    await vf_a.mem_write(iova_a, b"A before")
    assert await vf_a.mem_read(iova_a, 8, **TIMEOUT) == b"A before"  # the read also flushes the write
    assert (dev_a.domain.did, 12, iova_a >> 12) in system.rc.iommu.iotlb.entries  # translation cached

    assert system.detach_vf(0) is dev_a and system.vfs[0].dma is None
    await expect_blocked(system, 0, iova_a, FaultReason.CONTEXT_ENTRY_NOT_PRESENT)  # the very next request
    assert buf_a.read(0, 8) == b"A before"
    assert (dev_a.domain.did, 12, iova_a >> 12) not in system.rc.iommu.iotlb.entries
    await vf_b.mem_write(iova_b, b"B still")
    assert await vf_b.mem_read(iova_b, 7, **TIMEOUT) == b"B still"
    assert buf_b.read(0, 7) == b"B still"
    # a fresh domain for VF A: new address space, the old buffer is not in it
    dev_a2 = system.attach_vf_domain(0)
    assert dev_a2.domain is not dev_a.domain and system.vfs[0].dma is dev_a2
    await expect_blocked(system, 0, iova_a, FaultReason.SLPTE_NOT_PRESENT)


@cocotb.test()
async def fault_log_names_vfs_past_function_7(dut):
    """VF 9 of 10 sits at devfn 0x0a (device 1, function 2): its RID is logged whole."""
    system = await iommu_system(dut, num_vfs=10)
    rid9 = rid(system, 9)
    pf_rid = int(system.nic.pf.pcie_id)
    assert rid9 == pf_rid + 1 + 9 and rid9 & 0xFF >= 8
    dev8, dev9 = system.attach_vf_domain(8), system.attach_vf_domain(9)
    buf8, iova8 = dev8.dma_alloc_coherent(0x1000)
    buf9, iova9 = dev9.dma_alloc_coherent(0x1000)
    await system.nic.vfs[9].mem_write(iova9 + 0x10, b"VF 9 was here")
    assert await system.nic.vfs[9].mem_read(iova9 + 0x10, 13, **TIMEOUT) == b"VF 9 was here"
    assert buf9.read(0x10, 13) == b"VF 9 was here" and buf8.read(0x10, 13) == bytes(13)
    await expect_blocked(system, 9, buf8.phys, FaultReason.SLPTE_NOT_PRESENT)
    await expect_blocked(system, 7, iova9, FaultReason.CONTEXT_ENTRY_NOT_PRESENT)  # VF 7 unassigned
    fault = system.rc.iommu.faults.records[0]
    bus, dev, fn = rid9 >> 8, (rid9 >> 3) & 0x1F, rid9 & 7
    assert f"from {bus:02x}:{dev:02x}.{fn} addr {buf8.phys:#x}" in str(fault), str(fault)
    assert (dev, fn) == (1, 2)


@cocotb.test()
async def vfs_on_the_next_bus_without_ari(dut):
    """Without ARI the VFs start on the PF's bus + 1: a root entry the driver adds on attach."""
    system = await iommu_system(dut, num_vfs=2, ari=False)
    pf_rid, rid0 = int(system.nic.pf.pcie_id), rid(system, 0)
    assert rid0 >> 8 == (pf_rid >> 8) + 1
    await expect_blocked(system, 0, UNMAPPED_IOVA, FaultReason.ROOT_ENTRY_NOT_PRESENT)
    dev0 = system.attach_vf_domain(0)
    await expect_blocked(system, 1, UNMAPPED_IOVA, FaultReason.CONTEXT_ENTRY_NOT_PRESENT)
    buf, iova = dev0.dma_alloc_coherent(0x1000)
    await system.nic.vfs[0].mem_write(iova + 8, b"next bus")
    assert await system.nic.vfs[0].mem_read(iova + 8, 8, **TIMEOUT) == b"next bus"
    assert buf.read(8, 8) == b"next bus"


@cocotb.test()
async def pf_dma_passes_through_untranslated(dut):
    system = await iommu_system(dut, num_vfs=1)
    pf = system.nic.pf
    buf, phys = system.pf_dma.dma_alloc_coherent(0x2000)
    walks = system.rc.iommu.iotlb.walks
    payload = bytes((7 * k) & 0xFF for k in range(0x1800))
    await pf.mem_write(phys + 0x400, payload)
    assert await pf.mem_read(phys + 0x400, len(payload), **TIMEOUT) == payload
    assert buf.read(0x400, len(payload)) == payload
    assert system.rc.host_memory.read(phys + 0x400, 16) == payload[:16]
    assert system.rc.iommu.faults.total == 0 and system.rc.iommu.iotlb.walks == walks  # no page walk


@cocotb.test()
async def vf_msix_reaches_the_host_with_translation_on(dut):
    """MSI-X writes target the interrupt window, which is not DMA-remapped: an
    assigned VF and a still-blocked VF both interrupt.  Vector 0 (which the VF
    driver may also use itself) and the last vector (used by nothing else)."""
    system = await iommu_system(dut, num_vfs=2)
    system.attach_vf_domain(0)  # VF 1 stays blocked
    await Timer(50, "us")  # let anything the drivers started settle
    for index in range(2):
        msix = system.nic.vfs[index].slice.msix
        for number in (0, msix.num_vectors - 1):
            vector = system.vfs[index].pdev.msi_vectors[number]
            vector.event.clear()
            sent, delivered = msix.sent[number], system.rc.msi_delivered
            assert msix.signal(number) == "sent"
            await First(vector.event.wait(), Timer(20, "us"))
            assert vector.event.is_set(), f"VF {index}: MSI-X vector {number} did not reach the host"
            assert msix.sent[number] == sent + 1 and system.rc.msi_delivered == delivered + 1
    assert system.rc.iommu.faults.total == 0 and system.rc.msi_bogus == 0

"""IOMMU in the root complex, end to end over the simulated PCIe link.

Two generic cocotbext-pcie MemoryEndpoint functions (01:00.0 and 01:00.1) issue
DMA with the Function API; IommuRootComplex remaps it by requester ID.  The checks are
TLP-level (completion status of raw requests, TLPs split across pages), so the rig always
runs on the TLP fabric, whatever ``$FABRIC`` says.  Run:
``python -m tb.tools.runner tb.tests.test_iommu_rc``.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass

import cocotb
from cocotb.triggers import First, Timer
from cocotbext.pcie.core import Device, MemoryEndpoint
from cocotbext.pcie.core.tlp import CplStatus, Tlp, TlpType

from fabric import TLP
from iommu import (
    DMA_FROM_DEVICE,
    DMA_TO_DEVICE,
    IOMMU_READ,
    IOMMU_WRITE,
    DmaDevice,
    FaultReason,
    IommuDriver,
    IommuRootComplex,
)
from iommu.events import Fault

RW = IOMMU_READ | IOMMU_WRITE
TIMEOUT = dict(timeout=20, timeout_unit="us")


@dataclass
class Rig:
    rc: IommuRootComplex
    drv: IommuDriver
    ep_a: MemoryEndpoint
    ep_b: MemoryEndpoint
    rid_a: int
    rid_b: int
    dev_a: DmaDevice | None  # DMA ops of function A in its own domain


async def make_rig(attach_a: bool = True) -> Rig:
    """IommuRootComplex + one two-function device on a Gen3 x8 root port, enumerated,
    bus mastering on, IOMMU driver loaded (translation on); function A attached to
    a domain of its own if ``attach_a``, function B to nothing."""
    pcie_log = logging.getLogger("cocotb.pcie")
    rc = IommuRootComplex(fabric=TLP)
    ep_a, ep_b = MemoryEndpoint(), MemoryEndpoint()
    dev = Device([ep_a, ep_b])
    dev.upstream_port.max_link_speed = 3
    dev.upstream_port.max_link_width = 8
    port = rc.make_port()
    port.downstream_port.max_link_speed = 3
    port.downstream_port.max_link_width = 8
    port.connect(dev)
    pcie_log.setLevel(logging.ERROR)  # the bus scan's misses on absent devices are expected
    await rc.enumerate()
    pcie_log.setLevel(logging.WARNING)  # no per-TLP INFO logging
    for ep in (ep_a, ep_b):
        pdev = rc.find_device(ep.pcie_id)
        await pdev.enable_device()
        await pdev.set_master()
        assert ep.bus_master_enable
    drv = IommuDriver.for_root_complex(rc, pool_size=16 << 20)
    rid_a, rid_b = int(ep_a.pcie_id), int(ep_b.pcie_id)
    assert (rid_a, rid_b) == (0x0100, 0x0101)
    return Rig(rc, drv, ep_a, ep_b, rid_a, rid_b, DmaDevice.for_rid(drv, rid_a) if attach_a else None)


async def settle() -> None:
    """Let posted writes cross the link and reach host memory."""
    await Timer(1, "us")


async def read_status(ep, addr: int, length: int = 4) -> CplStatus:
    """Completion status of one raw memory read request from ``ep``."""
    req = Tlp()
    req.fmt_type = TlpType.MEM_READ_64 if addr >> 32 else TlpType.MEM_READ
    req.requester_id = ep.pcie_id
    req.set_addr_be(addr, length)
    cpls = await ep.perform_nonposted_operation(req, **TIMEOUT)
    assert cpls, "no completion"
    return cpls[0].status


async def expect_ur(ep, addr: int, length: int = 4) -> None:
    """The Function API raises on a non-SC completion; the raw status is UR."""
    try:
        await ep.mem_read(addr, length, **TIMEOUT)
    except Exception as exc:  # noqa: BLE001 -- cocotbext raises a bare Exception
        assert str(exc) == "Unsuccessful completion", exc
    else:
        raise AssertionError(f"read of {addr:#x} succeeded")
    assert await read_status(ep, addr, length) == CplStatus.UR


def host_snapshot(rc) -> list[bytes]:
    return [bytes(region.mem) for _base, _size, _off, region in rc.mem_pool.regions]


def last_fault(rig):
    return rig.rc.iommu.faults.records[-1]


@cocotb.test()
async def dma_lands_at_translated_address(dut):
    rig = await make_rig()
    buf, iova = rig.dev_a.dma_alloc_coherent(0x3000)
    assert iova != buf.phys
    payload = bytes(range(256)) * 0x30
    await rig.ep_a.mem_write(iova + 0x3, payload[:0x2FF0])  # several TLPs, 3 pages
    await settle()
    assert buf.read(0x3, 0x2FF0) == payload[:0x2FF0]
    assert rig.rc.host_memory.read(buf.phys + 0x3, 0x2FF0) == payload[:0x2FF0]
    buf.write(0x100, b"written by the CPU")
    assert await rig.ep_a.mem_read(iova + 0x100, 18, **TIMEOUT) == b"written by the CPU"
    # an odd-sized unaligned read split into many completions comes back intact
    assert await rig.ep_a.mem_read(iova + 0x5, 0x2FF7, **TIMEOUT) == buf.read(0x5, 0x2FF7)
    assert rig.rc.iommu.faults.total == 0
    assert rig.rc.iommu.iotlb.hits > 0 and rig.rc.iommu.iotlb.walks == 3


@cocotb.test()
async def dma_across_non_contiguous_pages_is_split(dut):
    rig = await make_rig()
    page0, _gap, page1 = (rig.drv.pages.alloc() for _ in range(3))
    iova = rig.dev_a.domain.iova.alloc(0x2000)
    rig.drv.iommu_map(rig.dev_a.domain, iova, page1, 0x1000, RW)  # IOVA order != physical order
    rig.drv.iommu_map(rig.dev_a.domain, iova + 0x1000, page0, 0x1000, RW)
    data = bytes(0xA0 + k for k in range(64))
    await rig.ep_a.mem_write(iova + 0x1000 - 24, data)
    await settle()
    mem = rig.rc.host_memory
    assert mem.read(page1 + 0x1000 - 24, 24) == data[:24]
    assert mem.read(page0, 40) == data[24:]
    assert mem.read(page1 + 0x1000 - 28, 4) == bytes(4) and mem.read(page0 + 40, 4) == bytes(4)
    assert await rig.ep_a.mem_read(iova + 0x1000 - 24, 64, **TIMEOUT) == data


@cocotb.test()
async def each_fault_kind_is_recorded_with_rid_and_address(dut):
    rig = await make_rig(attach_a=False)
    faults = rig.rc.iommu.faults
    snapshot = host_snapshot(rig.rc)

    await rig.ep_b.mem_write(0x20_0000, b"\x11" * 8)  # nothing attached on bus 1 yet
    await expect_ur(rig.ep_b, 0x20_0000)
    assert [(r.source_id, r.address, r.is_write, r.reason) for r in faults.records] == [
        (rig.rid_b, 0x20_0000, True, FaultReason.ROOT_ENTRY_NOT_PRESENT),
        (rig.rid_b, 0x20_0000, False, FaultReason.ROOT_ENTRY_NOT_PRESENT),
        (rig.rid_b, 0x20_0000, False, FaultReason.ROOT_ENTRY_NOT_PRESENT),  # raw re-read in expect_ur
    ]
    assert host_snapshot(rig.rc) == snapshot

    rig.dev_a = DmaDevice.for_rid(rig.drv, rig.rid_a)
    snapshot = host_snapshot(rig.rc)
    await expect_ur(rig.ep_b, 0x30_0040)
    assert (last_fault(rig).source_id, last_fault(rig).reason) == (rig.rid_b, FaultReason.CONTEXT_ENTRY_NOT_PRESENT)

    await expect_ur(rig.ep_a, 0x30_0040)  # attached, nothing mapped there
    fault = last_fault(rig)
    assert (fault.source_id, fault.address, fault.reason, fault.fault_reason) == (
        rig.rid_a,
        0x30_0040,
        FaultReason.SLPTE_NOT_PRESENT,
        0x6,
    )

    tx = rig.dev_a.alloc_buffer(0x1000)
    tx.write(0, b"read-only")
    tx_iova = rig.dev_a.dma_map(tx, 0x1000, DMA_TO_DEVICE)
    snapshot = host_snapshot(rig.rc)
    await rig.ep_a.mem_write(tx_iova, b"overwrite")
    await settle()
    fault = last_fault(rig)
    assert (fault.source_id, fault.address, fault.is_write, fault.reason) == (
        rig.rid_a,
        tx_iova,
        True,
        FaultReason.WRITE_DENIED,
    )
    assert tx.read(0, 9) == b"read-only" and host_snapshot(rig.rc) == snapshot

    rx = rig.dev_a.alloc_buffer(0x1000)
    rx_iova = rig.dev_a.dma_map(rx, 0x1000, DMA_FROM_DEVICE)
    await expect_ur(rig.ep_a, rx_iova + 0x80, 16)
    assert (last_fault(rig).address, last_fault(rig).reason) == (rx_iova + 0x80, FaultReason.READ_DENIED)

    beyond = 1 << 48
    await rig.ep_a.mem_write(beyond + 0x10, b"far")
    await settle()
    assert (last_fault(rig).address, last_fault(rig).reason) == (beyond + 0x10, FaultReason.ADDRESS_BEYOND_AW)

    # an invalid context (TT = 11b) written straight into B's context entry
    (root_lo,) = struct.unpack_from("<Q", rig.rc.host_memory.read(rig.drv.root_table + 16 * 1, 8))
    slot = (root_lo & ~0xFFF) + 16 * (rig.rid_b & 0xFF)
    rig.rc.host_memory.write(slot, struct.pack("<QQ", (0b11 << 2) | 1, 2 | (9 << 8)))
    await expect_ur(rig.ep_b, 0x1000)
    assert (last_fault(rig).source_id, last_fault(rig).reason) == (rig.rid_b, FaultReason.CONTEXT_ENTRY_INVALID)
    assert not faults.overflow and faults.total == len(faults.records)


@cocotb.test()
async def function_a_cannot_reach_function_b_domain(dut):
    rig = await make_rig()
    dev_b = DmaDevice.for_rid(rig.drv, rig.rid_b)
    buf_a, iova_a = rig.dev_a.dma_alloc_coherent(0x1000)
    buf_b, iova_b = dev_b.dma_alloc_coherent(0x1000)
    assert iova_a == iova_b  # same IOVA, separate address spaces
    buf_b.write(0, b"B's secret")
    await rig.ep_a.mem_write(iova_a, b"A's data!!")
    await settle()
    assert buf_a.read(0, 10) == b"A's data!!" and buf_b.read(0, 10) == b"B's secret"
    assert await rig.ep_b.mem_read(iova_b, 10, **TIMEOUT) == b"B's secret"

    only_b, iova_b2 = dev_b.dma_alloc_coherent(0x1000)
    only_b.write(0, b"private")
    await expect_ur(rig.ep_a, iova_b2)
    await rig.ep_a.mem_write(iova_b2, b"clobber")
    await settle()
    assert only_b.read(0, 7) == b"private"
    assert [(r.source_id, r.address) for r in rig.rc.iommu.faults.records] == [(rig.rid_a, iova_b2)] * 3


@cocotb.test()
async def detach_stops_dma_at_once(dut):
    rig = await make_rig()
    buf, iova = rig.dev_a.dma_alloc_coherent(0x1000)
    await rig.ep_a.mem_write(iova, b"before")
    assert await rig.ep_a.mem_read(iova, 6, **TIMEOUT) == b"before"  # also flushes the write
    assert rig.rc.iommu.iotlb.entries  # the translation is cached...
    rig.drv.detach_device(rig.rid_a)
    await rig.ep_a.mem_write(iova, b"after!")  # ...yet the very next request is blocked
    await expect_ur(rig.ep_a, iova)
    assert buf.read(0, 6) == b"before"
    assert [r.reason for r in rig.rc.iommu.faults.records] == [FaultReason.CONTEXT_ENTRY_NOT_PRESENT] * 3
    rig.drv.attach_device(rig.dev_a.domain, rig.rid_a)
    await rig.ep_a.mem_write(iova, b"again!")
    assert await rig.ep_a.mem_read(iova, 6, **TIMEOUT) == b"again!"


@cocotb.test()
async def stale_iotlb_entry_until_invalidation(dut):
    rig = await make_rig()
    page = rig.drv.pages.alloc()
    rig.rc.host_memory.write(page, b"stale ok")
    iova = rig.dev_a.domain.iova.alloc(0x1000)
    rig.drv.iommu_map(rig.dev_a.domain, iova, page, 0x1000, RW)
    assert await rig.ep_a.mem_read(iova, 8, **TIMEOUT) == b"stale ok"
    rig.drv.iommu_unmap(rig.dev_a.domain, iova, 0x1000, flush=False)
    assert await rig.ep_a.mem_read(iova, 8, **TIMEOUT) == b"stale ok"  # IOTLB still has it
    rig.drv.flush_iotlb_range(rig.dev_a.domain, iova, 0x1000)
    await expect_ur(rig.ep_a, iova)


@cocotb.test()
async def fault_log_overflow_is_clean(dut):
    rig = await make_rig()
    events = []
    faults = rig.rc.iommu.faults
    rig.rc.iommu.events.subscribe(Fault, lambda e: e.logged and events.append(e.record))
    for n in range(20):
        await rig.ep_a.mem_write(0x40_0000 + 0x1000 * n, b"x" * 4)
    await settle()
    assert len(faults.records) == 16 and faults.overflow and faults.dropped == 4 and faults.total == 20
    assert events == faults.records
    assert [r.address for r in events] == [0x40_0000 + 0x1000 * n for n in range(16)]
    assert all(r.source_id == rig.rid_a and r.is_write for r in events)
    buf, iova = rig.dev_a.dma_alloc_coherent(0x1000)  # good DMA still flows
    await rig.ep_a.mem_write(iova, b"fine")
    assert await rig.ep_a.mem_read(iova, 4, **TIMEOUT) == b"fine"
    assert len(faults.clear()) == 16 and not faults.overflow
    await expect_ur(rig.ep_b, 0x40_0000)
    assert faults.records[-1].source_id == rig.rid_b and events[-1] is faults.records[-1]


@cocotb.test()
async def msi_writes_bypass_translation(dut):
    rig = await make_rig()
    assert rig.rc.iommu.translation_enabled
    (vec,) = rig.rc.msi_alloc_vectors(1)
    hits = []

    async def handler():
        hits.append(vec.data)

    vec.cb.append(handler)
    await rig.ep_a.mem_write(vec.addr, struct.pack("<L", vec.data))
    await First(vec.event.wait(), Timer(20, "us"))
    assert vec.event.is_set() and rig.rc.msi_delivered == 1
    await settle()
    assert hits == [vec.data]
    await rig.ep_a.mem_write(vec.addr, struct.pack("<L", 0x1234))  # no such vector
    await rig.ep_b.mem_write(vec.addr + 4, struct.pack("<L", vec.data))  # inside the window, wrong address
    await settle()
    assert rig.rc.msi_bogus == 2 and rig.rc.msi_delivered == 1
    vec.event.clear()
    await rig.ep_b.mem_write(vec.addr, struct.pack("<L", vec.data))  # B is not attached: MSI still works
    await First(vec.event.wait(), Timer(20, "us"))
    assert vec.event.is_set() and rig.rc.msi_delivered == 2
    assert rig.rc.iommu.faults.total == 0


@cocotb.test()
async def disabled_iommu_passes_dma_untranslated(dut):
    rig = await make_rig()
    rig.rc.iommu.set_translation(False)
    page = rig.drv.pages.alloc()
    await rig.ep_b.mem_write(page + 0x7, b"physical")  # B has no context: untranslated anyway
    assert await rig.ep_b.mem_read(page + 0x7, 8, **TIMEOUT) == b"physical"
    assert rig.rc.host_memory.read(page + 0x7, 8) == b"physical"
    assert rig.rc.iommu.faults.total == 0 and rig.rc.iommu.iotlb.walks == 0

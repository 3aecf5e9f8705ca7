"""Benchmark: VF-to-VF packets per wall-clock second through the whole path.

Full path: VF driver ``start_xmit`` -> TX ring -> doorbell -> queue engine (descriptor
fetch, buffer DMA read, write-back) -> IOMMU -> embedded switch -> RX engine (buffer DMA
write, write-back) -> MSI-X -> NAPI poll -> received frame. Each active VF sends to the
next one, so 1, 8 and 64 active VFs show whether the per-packet cost stays flat. Each
sender sends at least ``STEADY_PER_SENDER`` frames a measurement, so a row of many VFs
measures a stream on each VF, not each VF's first burst (a VF's first frames after idle each
take a doorbell, an RX tail write and an interrupt of their own, which a stream shares).

Baseline, measured in the same run on the same VFs and IOMMU domains: the bare
cocotbext-pcie operations one packet needs, issued back to back with no model or driver
logic: a TX doorbell (MMIO write), a TX descriptor read (``DESC_FETCH_BATCH`` descriptors
every ``DESC_FETCH_BATCH`` packets, as the engine fetches them), TX buffer read, TX
write-back (``WB_BATCH`` descriptors every ``WB_BATCH`` packets, as the engine writes them
back), the same three on the RX side with a buffer write, an RX doorbell (MMIO write) and
one MSI-X message (to a vector no handler listens to). The
ratio full / bare is the model's own overhead. Measured in steady state: before the rows
every VF sends a ring's worth of frames, so every ring buffer's IOTLB entry is filled (the
IOTLB hit rate reported is the rows' own). The fabric is the run's (``$FABRIC``);
results go to ``sim_build/bench_datapath-<fabric>.json``; nothing asserts on time.

Environment: ``BENCH_OPS`` (packets per measurement, default 240, at least
``STEADY_PER_SENDER`` per active VF), ``BENCH_ROUNDS``
(measurements per row, the median is reported; default 3), ``BENCH_PROFILE=1``
(after the timed runs, one more 8-VF 64-byte run under cProfile: areas and top functions
in the JSON; the timed figures carry no profiler overhead).
"""

from __future__ import annotations

import cProfile
import gc
import json
import os
import statistics
import struct
import time

import cocotb
from cocotb.triggers import Timer, gather
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from datasheet import descriptors as d
from datasheet import device, regs
from datasheet import mailbox as mbx
from pcicore.irq import get_cached_msi_msg
from tb.bench import profile_areas, result_path
from tb.lib.system import build_system

OUT = result_path("datapath")
SIZES = (64, 1500)
ACTIVE = (1, 8, 64)
PROFILED = (64, 8)  # frame size, active VFs
RING_SIZE = 128
#: frames each active VF sends per measurement, at least: 3 frames each (240 over 64 VFs)
#: measured the first burst after idle, 2.6 times a stream's per-packet cost on the fast fabric
STEADY_PER_SENDER = 30


def row_packets(total: int, active: int) -> int:
    """Packets a measurement of ``active`` senders sends: ``total``, at least
    :data:`STEADY_PER_SENDER` each."""
    return max(total, active * STEADY_PER_SENDER)


def make_frame(src: bytes, dst: bytes, size: int) -> bytes:
    pkt = Ether(src=mbx.mac_str(src), dst=mbx.mac_str(dst)) / IP() / UDP()
    return bytes(pkt / bytes(size - len(pkt) - 4))


async def full_path(vfs, active: int, size: int, total: int, profile: cProfile.Profile | None = None) -> float:
    """Wall seconds for ``total`` packets spread over ``active`` senders (VF i -> VF i+1),
    under ``profile`` if given (the packets only, not the garbage collection before them)."""
    per = max(total // active, 1)
    senders = vfs[:active]
    receivers = [vfs[(i + 1) % len(vfs)] for i in range(active)]
    frames = [make_frame(s.mac, r.mac, size) for s, r in zip(senders, receivers)]
    expected = {id(r): 0 for r in receivers}
    for r in receivers:
        expected[id(r)] += per

    async def send(vf, frame):
        for _ in range(per):
            while not await vf.start_xmit(frame):
                await Timer(1, "us")

    async def drain(vf, n):
        for _ in range(n):
            await vf.netdev.recv()

    gc.collect()
    if profile is not None:
        profile.enable()
    t0 = time.perf_counter()
    tasks = [cocotb.start_soon(send(v, f)) for v, f in zip(senders, frames)]
    tasks += [cocotb.start_soon(drain(r, expected[id(r)])) for r in {id(r): r for r in receivers}.values()]
    await gather(*tasks)
    elapsed = time.perf_counter() - t0
    if profile is not None:
        profile.disable()
    return elapsed / (per * active)


async def bare_ops(system, vfs, size: int, count: int) -> float:
    """Wall seconds per packet for the bare DMA/MMIO operations a packet needs, on scratch
    rings and buffers of the same two VFs' domains (the rings the drivers use stay untouched:
    zeroing a live descriptor would lose a frame of a later row).  Descriptors are fetched
    and written back in batches as the engines do (``DESC_FETCH_BATCH``, ``WB_BATCH``)."""
    tx_vf, rx_vf = system.nic.vfs[0], system.nic.vfs[1]
    tx_dma, rx_dma = vfs[0].netdev.dma, vfs[1].netdev.dma
    fetch, wb = device.DESC_FETCH_BATCH * d.DESC_SIZE, device.WB_BATCH * d.DESC_SIZE
    ring = max(fetch, wb)  # a ring's worth of descriptors, then one buffer
    (tx_buf, tx_iova), (rx_buf, rx_iova) = (dma.dma_alloc_coherent(ring + size) for dma in (tx_dma, rx_dma))
    bar0 = vfs[0].pdev.bar_window[0]
    scratch = regs.SCRATCH.offset  # same TLP as a doorbell, no engine behind it
    data, wb_data = bytes(size), bytes(wb)
    msi_addr, msi_data = get_cached_msi_msg(vfs[1].pdev, -1)  # a vector no handler listens to
    faults_before = system.iommu_driver.iommu.faults.total
    gc.collect()
    t0 = time.perf_counter()
    for i in range(count):
        await bar0.write_dword(scratch, 1)
        if i % device.DESC_FETCH_BATCH == 0:
            await tx_vf.mem_read(tx_iova, fetch)
        await tx_vf.mem_read(tx_iova + ring, size)
        if i % device.WB_BATCH == 0:
            await tx_vf.mem_write(tx_iova, wb_data)
        if i % device.DESC_FETCH_BATCH == 0:
            await rx_vf.mem_read(rx_iova, fetch)
        await rx_vf.mem_write(rx_iova + ring, data)
        if i % device.WB_BATCH == 0:
            await rx_vf.mem_write(rx_iova, wb_data)
        await bar0.write_dword(scratch, 2)
        await rx_vf.mem_write(msi_addr, struct.pack("<L", msi_data))
    await rx_vf.mem_read(rx_iova, 4)  # flush posted writes
    elapsed = time.perf_counter() - t0
    tx_dma.dma_free_coherent(tx_buf, tx_iova)
    rx_dma.dma_free_coherent(rx_buf, rx_iova)
    faults = system.iommu_driver.iommu.faults.total - faults_before
    assert not faults, f"the bare operations faulted {faults} times: the baseline would measure fault handling"
    return elapsed / count


@cocotb.test()
async def datapath_throughput(dut):
    total = int(os.environ.get("BENCH_OPS", "240"))
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    profile = cProfile.Profile() if os.environ.get("BENCH_PROFILE") == "1" else None
    system = await build_system(dut, total_vfs=64, iommu=True)
    vfs = await system.enable_vfs(64)
    for vf in vfs:
        system.attach_vf_domain(vf)
        await vf.open(ring_size=RING_SIZE, num_queues=1)
    # steady state: every VF sends a ring's worth, so every buffer of every ring has been used
    # once and its IOTLB entry filled (each ring's first pass walks a page table per 4 KiB page)
    await full_path(vfs, len(vfs), SIZES[0], RING_SIZE * len(vfs))
    iotlb = system.iommu_driver.iommu.iotlb
    hits, misses = iotlb.hits, iotlb.misses
    rows, per_packet = [], {}
    for size in SIZES:
        bare_s = await bare_ops(system, vfs, size, total // 2)
        for active in ACTIVE:
            await full_path(vfs, active, size, 16)  # warm-up (the engines, NAPI)
            count = row_packets(total, active)
            cost = statistics.median([await full_path(vfs, active, size, count) for _ in range(rounds)])
            per_packet[(size, active)] = cost
            rows.append(
                [f"{size} B", active, round(1 / cost), round(1 / bare_s), round(cost / bare_s, 2), round(cost * 1e6, 1)]
            )
    flat = {size: round(per_packet[(size, 64)] / per_packet[(size, 1)], 2) for size in SIZES}
    hits, misses = iotlb.hits - hits, iotlb.misses - misses
    result = {
        "title": f"VF-to-VF datapath on the {system.fabric} fabric: full path vs bare PCIe operations per packet",
        "columns": ["frame", "active VFs", "full pkts/s", "bare pkts/s", "full/bare cost", "us/pkt"],
        "rows": rows,
        "summary": {
            "per-packet cost 64 VFs / 1 VF": flat,
            "IOTLB hit rate": round(hits / max(hits + misses, 1), 4),
            "IOMMU faults": system.iommu_driver.iommu.faults.total,
        },
    }
    if profile:
        size, active = PROFILED
        await full_path(vfs, active, size, row_packets(total, active), profile)
        result["profile"] = prof = profile_areas(profile, OUT.with_suffix(".prof"))
        prof["row"] = [f"{size} B", active]  # the table row the profiled run repeats
        result["summary"][f"profile ({active} VFs, {size} B) own time"] = prof["own_time_share"]
        result["summary"]["model + IOMMU + drivers, builtins charged to callers"] = prof["payload_share"]
    result["fabric"] = system.fabric
    OUT.write_text(json.dumps(result, indent=2))

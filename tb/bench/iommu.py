"""Benchmark: wall-clock cost of device DMA with the IOMMU translating vs not.

VFs of the NIC issue the same DMA (mem_write / mem_read of 64 B and 4 KiB) to
the same host buffer under one IommuRootComplex in three modes:

- ``translated``: VF 0, its context points at its own domain, the address is an
  IOVA (second-level translation, IOTLB warm: steady state);
- ``pass-through``: VF 1, its context has TT=10b, the address is physical;
- ``off``: VF 0 with translation disabled (GCMD.TE=0), the address is physical:
  the stock root-complex path.  No context is rewritten between runs, so no
  invalidation ever cools the IOTLB.

The ratio ``translated / off`` is the cost of translation itself.  Rounds
interleave the modes, in an order rotated each round, so that drift in the
machine's speed and order effects hit all alike; each measurement starts after a
full garbage collection; each figure is the median over rounds.  The time spent
inside the root complex's memory-write handler (where translation happens) is
also clocked per TLP, apart from the link model around it.  Results go to
``sim_build/bench_iommu-tlp.json`` (read and printed by ``python -m tb.bench``; the
benchmark measures the root complex's TLP handler, so it runs on the TLP fabric).
Nothing here asserts on time.

Environment: ``BENCH_OPS`` (4 KiB operations per measurement, default 100;
64 B ones do ten times as many),
``BENCH_ROUNDS`` (default 5), ``BENCH_PROFILE=1`` (cProfile the translated
runs, stats to ``sim_build/bench_iommu.prof``, own time by area and the top
functions in the JSON; the translated figures then carry profiler overhead).
"""

from __future__ import annotations

import cProfile
import gc
import json
import logging
import os
import statistics
import time
from contextlib import nullcontext

import cocotb
from cocotbext.pcie.core.tlp import TlpType

from tb.bench import profile_areas, result_path
from tb.lib.system import build_system

OUT = result_path("iommu")
PROFILE_OUT = OUT.with_suffix(".prof")
SIZES = (64, 4096)
KINDS = ("write", "read")
MODES = ("translated", "pass-through", "off")
TIMEOUT = dict(timeout=100, timeout_unit="us")


class WriteHandlerClock:
    """Wall time spent in ``rc``'s memory-write handler (translation included).
    The stock handler completes without yielding, so this is its own cost."""

    def __init__(self, rc):
        self.seconds, self.calls = 0.0, 0
        inner = rc.handle_mem_write_tlp

        async def timed(tlp):
            t0 = time.perf_counter()
            await inner(tlp)
            self.seconds += time.perf_counter() - t0
            self.calls += 1

        for fmt_type in (TlpType.MEM_WRITE, TlpType.MEM_WRITE_64):
            rc.register_rx_tlp_handler(fmt_type, timed)


async def run_ops(vf, kind: str, addr: int, data: bytes, n: int) -> float:
    """Wall seconds for ``n`` DMA operations; writes end with a read that flushes them."""
    t0 = time.perf_counter()
    if kind == "write":
        for _ in range(n):
            await vf.mem_write(addr, data)
        await vf.mem_read(addr, 4, **TIMEOUT)  # posted writes reach memory before this completes
    else:
        for _ in range(n):
            await vf.mem_read(addr, len(data), **TIMEOUT)
    return time.perf_counter() - t0


#: where profiled own-time is booked: the first of these path pieces in a function's file
def profile_summary(profile: cProfile.Profile, count: int = 25) -> dict:
    summary = profile_areas(profile, PROFILE_OUT, count)
    summary["note"] = "cProfile of the translated runs only: their timings above include profiler overhead"
    return summary


async def measure(system, setups, payload, ops, rounds, profile) -> tuple[dict, dict]:
    """Wall seconds per (kind, size, mode) over ``rounds`` (after a discarded warm-up
    round), the IOTLB counters accumulated over the measured translated runs, and
    per mode the (seconds, TLPs) spent in the RC's write handler in measured rounds."""
    iommu = system.rc.iommu
    samples: dict[tuple[str, int, str], list[float]] = {}
    iotlb = {"hits": 0, "misses": 0, "walks": 0}
    clock = WriteHandlerClock(system.rc)
    handler = {mode: [0.0, 0] for mode in MODES}
    for rnd in range(rounds + 1):
        for kind in KINDS:
            for size in SIZES:
                for mode in MODES[rnd % len(MODES) :] + MODES[: rnd % len(MODES)]:
                    function, addr, translated = setups[mode]
                    iommu.set_translation(translated)
                    measured = bool(rnd) and mode == "translated"
                    before = [getattr(iommu.iotlb, key) for key in iotlb]
                    clock_before = (clock.seconds, clock.calls)
                    gc.collect()
                    with profile if measured and profile else nullcontext():
                        seconds = await run_ops(function, kind, addr, payload[size], ops[size])
                    iommu.set_translation(True)
                    if measured:
                        for key, b in zip(iotlb, before):
                            iotlb[key] += getattr(iommu.iotlb, key) - b
                    if rnd:
                        samples.setdefault((kind, size, mode), []).append(seconds)
                        handler[mode][0] += clock.seconds - clock_before[0]
                        handler[mode][1] += clock.calls - clock_before[1]
    return samples, iotlb, handler


def report(samples: dict, iotlb: dict, handler: dict, ops: dict, rounds: int) -> dict:
    """The table (ops/s from the median round; cost ratios) and summary for tb.bench."""

    def rate(kind, size, mode, pick=statistics.median):
        return ops[size] / pick(samples[(kind, size, mode)])

    rows = []
    for kind in KINDS:
        for size in SIZES:
            r = {mode: rate(kind, size, mode) for mode in MODES}
            rows.append(
                [
                    f"{kind} {size} B",
                    *(round(r[m]) for m in MODES),
                    round(r["off"] / r["translated"], 3),
                    round(r["pass-through"] / r["translated"], 3),
                ]
            )
    lookups = iotlb["hits"] + iotlb["misses"]
    best = ", ".join(
        f"{kind} {size} B {rate(kind, size, 'off', min) / rate(kind, size, 'translated', min):.3f}"
        for kind in KINDS
        for size in SIZES
    )
    return {
        "bench": "iommu",
        "title": (
            f"VF DMA through the IOMMU: ops/s, median of {rounds} rounds "
            f"({' / '.join(f'{n} x {size} B' for size, n in ops.items())} ops each)"
        ),
        "columns": ["op", "translated", "pass-through", "off", "cost x vs off", "cost x vs PT"],
        "rows": rows,
        "summary": {
            "IOTLB hit rate (translated, steady state)": f"{iotlb['hits'] / lookups:.4f}" if lookups else "n/a",
            "IOTLB lookups / page walks (translated)": f"{lookups} / {iotlb['walks']}",
            "worst translated/off cost ratio": max(row[4] for row in rows),
            "translated/off cost ratio, fastest round of each": best,
            "RC write-handler time per TLP (us)": ", ".join(
                f"{mode} {secs / calls * 1e6:.2f}" for mode, (secs, calls) in handler.items() if calls
            ),
        },
        "params": {"ops": {str(size): n for size, n in ops.items()}, "rounds": rounds},
        "samples_s": {f"{kind} {size} {mode}": vals for (kind, size, mode), vals in samples.items()},
    }


@cocotb.test()
async def iommu_dma_cost(dut):
    ops4k = int(os.environ.get("BENCH_OPS", "100"))
    ops = {size: ops4k * (10 if size < 1024 else 1) for size in SIZES}
    rounds = int(os.environ.get("BENCH_ROUNDS", "5"))
    profile = cProfile.Profile() if os.environ.get("BENCH_PROFILE") == "1" else None
    system = await build_system(dut, total_vfs=4, iommu=True)
    await system.enable_vfs(2)
    dev = system.attach_vf_domain(0)
    system.iommu_driver.attach_passthrough(int(system.vfs[1].pdev.pcie_id))  # bench only: a trusted VF
    buf, iova = dev.dma_alloc_coherent(max(SIZES))
    # mode -> (function issuing the DMA, address it uses, GCMD.TE)
    setups = {
        "translated": (system.nic.vfs[0], iova, True),
        "pass-through": (system.nic.vfs[1], buf.phys, True),
        "off": (system.nic.vfs[0], buf.phys, False),
    }
    payload = {size: bytes((k * 13 + size) & 0xFF for k in range(size)) for size in SIZES}

    samples, iotlb, handler = await measure(system, setups, payload, ops, rounds, profile)
    # the bytes really went through: the buffer holds the last payload, nothing faulted
    assert buf.read(0, max(SIZES)) == payload[max(SIZES)]
    assert system.rc.iommu.faults.total == 0, system.rc.iommu.faults.records

    result = report(samples, iotlb, handler, ops, rounds)
    result["params"].update(
        max_payload_size=128 << system.nic.vfs[0].pcie_cap.max_payload_size,
        max_read_request_size=128 << system.nic.vfs[0].pcie_cap.max_read_request_size,
    )
    if profile:
        result["profile"] = prof = profile_summary(profile)
        result["summary"]["profile (own time by area)"] = ", ".join(
            f"{area} {share:.1%}" for area, share in prof["own_time_share"].items()
        )
        result["summary"]["profile note"] = prof["note"]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    logging.getLogger("cocotb.bench").info("bench results in %s", OUT)

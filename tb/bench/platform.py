"""Benchmark: what bringing up and keeping a platform costs in wall time, on the run's fabric.

* building the system (root complex, NIC with TotalVFs 256, enumeration, PF driver probe);
* ``sriov_configure(256)`` and probing a VF driver on each of the 256 VFs (every VF's
  config space walked, MSI-X set up, the mailbox handshake with the PF): the median of
  ``BENCH_ROUNDS`` enables (default 3; the VFs are disabled between two), each reported;
* 100 ms of idle simulated time: with no VFs, then with the 256 VFs probed (the PF driver's
  mailbox watchdog is all that runs; on the TLP fabric each link sleeps while idle);
* a VF handed to a new guest (``System.rebind_vf``: unbind, ``pci_reset_function`` with its
  FLR and the spec's 100 ms wait, bind and probe).

Results go to ``sim_build/bench_platform-<fabric>.json``; nothing asserts on time.
"""

from __future__ import annotations

import json
import os
import statistics
import time

import cocotb
from cocotb.triggers import Timer

from tb.bench import result_path
from tb.lib.system import build_system

OUT = result_path("platform")
TOTAL_VFS = 256
IDLE_MS = 100


async def timed(coro) -> float:
    t0 = time.perf_counter()
    await coro
    return time.perf_counter() - t0


@cocotb.test()
async def platform_costs(dut):
    t0 = time.perf_counter()
    system = await build_system(dut, total_vfs=TOTAL_VFS)
    build_s = time.perf_counter() - t0
    idle_empty = await timed(Timer(IDLE_MS, "ms"))
    enables = []
    for n in range(int(os.environ.get("BENCH_ROUNDS", "3"))):
        if n:
            await system.disable_vfs()
        enables.append(await timed(system.enable_vfs(TOTAL_VFS)))
        assert len(system.vfs) == TOTAL_VFS and all(vf.ready for vf in system.vfs)
    enable_s = statistics.median(enables)
    idle_full = await timed(Timer(IDLE_MS, "ms"))
    index = TOTAL_VFS // 2
    rebind_s = await timed(system.rebind_vf(index))
    assert system.vfs[index].ready
    rows = [
        ["build system (TotalVFs 256, PF probed)", round(build_s, 3)],
        ["enable + probe 256 VFs", round(enable_s, 3)],
        [f"{IDLE_MS} ms idle, no VFs", round(idle_empty, 4)],
        [f"{IDLE_MS} ms idle, 256 VFs probed", round(idle_full, 4)],
        ["rebind one VF (FLR, 100 ms wait, probe)", round(rebind_s, 3)],
    ]
    result = {
        "title": f"Platform wall time (s) on the {system.fabric} fabric",
        "columns": ["", "wall s"],
        "rows": rows,
        "summary": {
            "enable + probe 256 VFs, each round (s)": [round(t, 3) for t in enables],
            "PF mailbox service rounds": system.pf.mailbox.rounds,
        },
        "fabric": system.fabric,
    }
    OUT.write_text(json.dumps(result, indent=2))

"""The hostile-VF campaign as a cocotb test (docs/security.md, ``tb/fuzz``).

``make test`` runs a short campaign with a fixed seed; ``make fuzz SEEDS=N`` (``python -m
tb.fuzz``) runs N seeds of longer ones. Environment: ``NIC_FUZZ_SEED``,
``NIC_FUZZ_EPISODES``, ``NIC_FUZZ_RESULTS`` (JSON lines, one record per episode),
``NIC_FUZZ_COVERAGE`` (the coverage file's name, default ``fuzz-<seed>``: ``make regress``
runs the campaign after the pyuvm tests of the seed in their process, and names their file,
which then holds the coverage of both).
"""

import os
from pathlib import Path

import cocotb

from tb.fuzz import campaign
from tb.uvm import coverage

SEED = int(os.environ.get("NIC_FUZZ_SEED", "1"))
EPISODES = int(os.environ.get("NIC_FUZZ_EPISODES", "3"))
RESULTS = os.environ.get("NIC_FUZZ_RESULTS")
COVERAGE_NAME = os.environ.get("NIC_FUZZ_COVERAGE") or f"fuzz-{SEED}"


@cocotb.test()
async def hostile_vf_campaign(dut):
    """Every episode: nothing escapes, no victim frame is lost unexplained or corrupted, the
    attacker reaches nothing outside its own domain and raises no other function's interrupt,
    every hostile act is seen, time stays bounded."""
    try:
        episodes = await campaign.run(dut, SEED, EPISODES, Path(RESULTS) if RESULTS else None)
    finally:
        coverage.export(COVERAGE_NAME)
    dirty = [e for e in episodes if not e.clean]
    for e in episodes:
        cocotb.log.info(
            "seed %d episode %d %-15s acts %2d (hostile %2d), victim frames %3d (lost %d, unexplained %d), "
            "%.0f us sim, %.1f s wall%s",
            e.seed,
            e.index,
            e.scenario,
            e.acts,
            e.hostile,
            e.victim_frames,
            e.lost,
            e.unexplained_losses,
            e.sim_ns / 1000,
            e.wall_s,
            "" if e.clean else f"  FAILED {e}",
        )
    assert not dirty, f"{len(dirty)} episode(s) broke an invariant; first: {dirty[0]}"

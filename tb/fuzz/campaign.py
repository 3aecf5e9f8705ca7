"""Episodes of the hostile-VF campaign and the invariants checked after each.

:func:`run` builds the world, then for each episode: starts the victims' traffic, lets
the attacker play one scenario kind, stops and drains the traffic, checks every
invariant, records the episode, and gives the attacker's VF to a fresh guest. Records
are appended to a JSON-lines file as they happen (the runner reads it even if the
simulation died in the middle of an episode: the last ``started`` record names it).
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cocotb.utils import get_sim_time

from iommu.events import MsiRequest, Translation
from model import events as ev
from tb.fuzz import coverage
from tb.fuzz.acts import PF_ONLY, SCENARIOS, Attacker
from tb.fuzz.victims import VictimTraffic
from tb.fuzz.world import NUM_VFS, RING_SIZE, World, build_world

#: an episode must end within this much simulated time and wall time (generous: the
#: point is that a hostile VF cannot make the model spin or wait without bound; the host's
#: own spec waits, 100 ms after VF Enable or an FLR, are in it)
EPISODE_SIM_NS = 250_000_000
EPISODE_WALL_S = 300
#: decimals of an episode's simulated time in ns (the harness's precision: 1 ps)
SIM_NS_DIGITS = 3


@dataclass
class Episode:
    seed: int
    index: int
    scenario: str
    acts: int = 0
    hostile: int = 0
    silent: list = field(default_factory=list)  # descriptions of hostile acts nobody saw
    escaped: list = field(default_factory=list)  # exceptions that got out (messages)
    contained: list = field(default_factory=list)  # faults the model's guard caught (model bugs)
    victim_frames: int = 0
    lost: int = 0
    unexplained_losses: int = 0
    corrupted: int = 0
    isolation: list = field(default_factory=list)  # DMA or interrupts outside the attacker's own
    canary_changed: bool = False
    sim_ns: float = 0.0
    wall_s: float = 0.0
    over_time: bool = False

    @property
    def clean(self) -> bool:
        return not (
            self.silent
            or self.escaped
            or self.contained
            or self.unexplained_losses
            or self.corrupted
            or self.isolation
            or self.canary_changed
            or self.over_time
        )


class IsolationWatch:
    """Checks every translation and interrupt request as it happens: each DMA of a VF reaches
    exactly what a software walk of the domain the host attached it to says, and no function
    raises a vector allocated to another."""

    def __init__(self, world: World):
        self.w = world
        self.violations: list[str] = []
        iommu = world.system.rc.iommu
        iommu.events.subscribe(Translation, self._translation)
        iommu.events.subscribe(MsiRequest, self._msi)

    def _translation(self, t: Translation) -> None:
        if not t.chunks:
            return
        drv = self.w.system.iommu_driver
        domain = drv.domain_of(t.source_id)
        if domain is None or domain.passthrough:
            return
        addr = t.iova
        for phys, length in t.chunks:
            if drv.iova_to_phys(domain, addr) != phys:
                self.violations.append(
                    f"{'write' if t.is_write else 'read'} from RID {t.source_id:#06x} at IOVA "
                    f"{addr:#x} reached {phys:#x}, not what its domain maps"
                )
            addr += length

    def _msi(self, m: MsiRequest) -> None:
        if not m.delivered:
            return
        owner = next((pdev for pdev in self._functions() if any(v.data == m.vector for v in pdev.msi_vectors)), None)
        if owner is not None and int(owner.pcie_id) != m.source_id:
            self.violations.append(f"RID {m.source_id:#06x} raised host vector {m.vector} of {owner.pcie_id}")

    def _functions(self):
        system = self.w.system
        return [system.pf_dev, *system.pf.virtfns]

    def take(self) -> list[str]:
        out, self.violations = self.violations, []
        return out


def scenario_for(seed: int, index: int, episodes: int) -> str:
    """Episodes walk the scenario kinds in order across seeds, so a campaign covers them all."""
    return SCENARIOS[(seed * episodes + index) % len(SCENARIOS)]


async def run(dut, seed: int, episodes: int, results: Path | None = None) -> list[Episode]:
    rng = random.Random(seed)
    world = await build_world(dut, rng)
    watch = IsolationWatch(world)
    errors = []
    world.system.nic.events.subscribe(ev.FunctionError, errors.append)
    done = []
    for index in range(episodes):
        episode = Episode(seed, index, scenario_for(seed, index, episodes))
        _record(results, {"started": asdict(episode)})
        await play(world, episode, rng, watch, errors)
        coverage.sample(episode)
        _record(results, {"episode": asdict(episode), "clean": episode.clean})
        done.append(episode)
        await world.heal()
    return done


async def play(world: World, episode: Episode, rng: random.Random, watch: IsolationWatch, errors: list) -> None:
    t0, wall0 = get_sim_time("ns"), time.monotonic()
    escaped_before = len(world.escaped.records)
    errors.clear()
    victims = VictimTraffic(world, rng, pf_only=episode.scenario in PF_ONLY)
    await victims.start()
    acts = await getattr(Attacker(world, rng), episode.scenario)()
    await victims.stop()
    for act in acts:
        coverage.sample_act(act)
    episode.acts = len(acts)
    episode.hostile = sum(a.hostile for a in acts)
    episode.silent = [f"{a.kind}: {a.detail}" for a in acts if a.hostile and not a.visible]
    episode.escaped = [r.getMessage() for r in world.escaped.records[escaped_before:]]
    episode.contained = [f"fn {e.fn} {e.detail}" for e in errors]
    episode.victim_frames = victims.sent()
    episode.lost = victims.missing()
    episode.unexplained_losses = victims.unexplained()
    episode.corrupted = victims.foreign_tagged
    episode.isolation = watch.take()
    episode.canary_changed = not world.canary_intact()
    # to the simulator's precision (1 ps): the difference of two float times carries the
    # rounding of where the episode started, which depends on what ran before it
    episode.sim_ns = round(get_sim_time("ns") - t0, SIM_NS_DIGITS)
    episode.wall_s = time.monotonic() - wall0
    episode.over_time = episode.sim_ns > EPISODE_SIM_NS or episode.wall_s > EPISODE_WALL_S


def _record(path: Path | None, item: dict) -> None:
    if path is not None:
        with open(path, "a") as out:
            out.write(json.dumps(item) + "\n")


__all__ = ["Episode", "NUM_VFS", "RING_SIZE", "run", "scenario_for"]

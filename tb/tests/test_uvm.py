"""pyuvm tests of the NIC: seeded constrained-random scenarios checked by the scoreboard
and sampled into functional coverage, plus tests that inject faults the scoreboard must
catch.

Every test logs its seed.  cocotb seeds ``random`` per test from COCOTB_RANDOM_SEED and
the test's name, so one test reproduces alone::

    NIC_UVM_LEVEL=regress python -m tb.tools.runner tb.tests.test_uvm --seed 7 --testcase RandomResets

``NIC_UVM_LEVEL``: ``smoke`` (default: the short smoke test and the fault-injection tests,
what ``make test`` runs) or ``regress`` (also the long random tests; ``make regress``).
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path

import cocotb
from cocotb.triggers import Timer
from pyuvm import ConfigDB, uvm_test

from datasheet.descriptors import OffloadError, RssType
from datasheet.device import vf_port
from datasheet.mailbox import Opcode
from model.inject import Injection
from netdev import TxOffload
from tb.uvm import coverage, inject
from tb.uvm.env import MAX_AGENTS, EnvConfig, NicEnv
from tb.uvm.offload_sequences import (
    BadOffloadSeq,
    OffloadConfigSeq,
    PfOffloadSeq,
    RssCoverSeq,
    RxChecksumSeq,
    TsoSeq,
    TxChecksumSeq,
    VlanSeq,
    tso_frame,
)
from tb.uvm.reporting import release_component_loggers
from tb.uvm.sequences import (
    PARTNER_MAC,
    BadDescriptorSeq,
    FrameFactory,
    HostileMailboxSeq,
    IdleVfChatterSeq,
    IommuSeq,
    LinkFlapSeq,
    MailboxConfigSeq,
    ModerationSeq,
    NicSequence,
    ResetSeq,
    SlowGuestSeq,
    TrafficPhaseSeq,
    build_frame,
)
from tb.uvm.testcase import pyuvm_test

LEVEL = os.environ.get("NIC_UVM_LEVEL", "smoke")
REGRESS_ONLY = LEVEL != "regress"
#: in the normal suite the tests run with this fixed seed (CI stays deterministic); the
#: regression (NIC_UVM_LEVEL=regress) uses cocotb's per-test seed from COCOTB_RANDOM_SEED
SMOKE_SEED = int(os.environ.get("NIC_UVM_SMOKE_SEED", "1"))
#: the run's seed as given (cocotb.RANDOM_SEED becomes a per-test seed once a test starts)
REGRESSION_SEED = getattr(cocotb, "RANDOM_SEED", None)
#: coverage of this run goes to sim_build/coverage/<COVERAGE_NAME>.xml
COVERAGE_NAME = REGRESSION_SEED if LEVEL == "regress" else "smoke"
#: where each test writes what its scoreboard saw (tb/uvm/record.py), to compare fabrics
RECORD_DIR = os.environ.get("NIC_RECORD_DIR")
#: a quiet system: longer than any port's transition settles (tb/uvm/agents.py)
QUIET_NS = 100_000
log = logging.getLogger("cocotb.uvm")


def pick_num_vfs(rng: random.Random, buckets=("1", "2-7", "8", "9-63", "64+"), weights=None) -> int:
    bucket = rng.choices(list(buckets), weights or [1] * len(buckets))[0]
    return {"1": 1, "2-7": rng.randint(2, 7), "8": 8, "9-63": rng.randint(9, 24), "64+": rng.randint(64, 72)}[bucket]


class NicTest(uvm_test):
    """Base: pick the configuration from the test's seed, build the env, bring the system up,
    run ``scenario``, drain, then check the scoreboard (and the injected error, if any)."""

    #: scoreboard error kinds this test provokes on purpose; the test passes only if every
    #: one of them is reported (and fails if the scoreboard stays silent)
    expect_errors: frozenset = frozenset()
    #: the scenario's outcome does not depend on how long a DMA takes, so both fabrics must
    #: record the same scoreboard events (``make regress FABRIC=both`` compares these): the
    #: quiesced tests, and OffloadSmoke, whose offload changes (RSS, checksums, TSO, VLAN) are
    #: made while frames flow without racing them.  The others race resets, IOMMU detaches
    #: and full RX rings against frames in flight on purpose, or send from one port from two
    #: sequences at once: whether a frame beats a reset or a detach, finds a free RX buffer,
    #: or enters the switch before another sequence's frame depends on how long a DMA takes,
    #: which is what the two fabrics model differently (docs/verification.md)
    fabric_equivalent: bool = False

    def configure(self, rng: random.Random) -> EnvConfig:
        return EnvConfig(seed=rng.getrandbits(32), total_vfs=8, num_vfs=4, open_vfs=3, ring_size=16)

    def build_phase(self):
        self.seed = cocotb.RANDOM_SEED if LEVEL == "regress" else SMOKE_SEED
        self.rng = random.Random(self.seed)
        self.cfg = self.configure(self.rng)
        ConfigDB().set(None, "*", "cfg", self.cfg)
        self.env = NicEnv("env", self)
        self.injected_after = None

    async def run_phase(self):
        self.raise_objection()
        name = type(self).__name__
        log.info(
            "%s: level %s, regression seed %s, test seed %s, config %s",
            name,
            LEVEL,
            REGRESSION_SEED,
            self.seed,
            self.cfg,
        )
        if LEVEL == "regress":
            log.info(
                "reproduce: NIC_UVM_LEVEL=regress python -m tb.tools.runner tb.tests.test_uvm --seed %s --testcase %s",
                REGRESSION_SEED,
                name,
            )
        else:
            log.info(
                "reproduce: NIC_UVM_SMOKE_SEED=%s python -m tb.tools.runner tb.tests.test_uvm --testcase %s",
                SMOKE_SEED,
                name,
            )
        try:
            await self.env.bring_up(cocotb.top)
            await self.scenario()
            sb = self.env.scoreboard
            await sb.drain()
            await self.env.account_late_drops()
            for port in sorted(p for p, f in sb.rx_pending.items() if len(f) > sb.truncated[p] + sb.late_drops[p]):
                log.warning("RX still outstanding: %s", await self.env.rx_diagnostics(port))
            await self.env.record_final_state()
        except BaseException:
            coverage.export(COVERAGE_NAME)
            raise
        finally:
            self.drop_objection()

    async def scenario(self):
        raise NotImplementedError

    def check_phase(self):
        env = self.env
        env.scoreboard.final_check(env.system.rc.iommu)
        env.check_host_memory()
        sb = env.scoreboard
        log.info("scoreboard: %s", sb.summary())
        kinds = sb.error_kinds()
        if self.expect_errors:
            early = [e for e in sb.errors[: self.injected_after or 0]]
            assert not early, f"errors before the fault was injected: {early}"
            missed = self.expect_errors - kinds
            assert not missed, (
                f"the scoreboard did not report the injected {sorted(missed)} (it reported {sorted(kinds)})"
            )
            log.info("injected fault detected: %s", sorted(self.expect_errors & kinds))
        else:
            assert not sb.errors, f"{len(sb.errors)} scoreboard error(s), first: {sb.errors[0]}"

    def report_phase(self):
        if RECORD_DIR:
            path = self.env.record.dump(
                Path(RECORD_DIR) / f"{type(self).__name__}-{self.seed}-{self.env.system.fabric}.json",
                test=type(self).__name__,
                seed=self.seed,
                regression_seed=REGRESSION_SEED,
                fabric=self.env.system.fabric,
                fabric_equivalent=self.fabric_equivalent,
            )
            log.info("scoreboard events recorded in %s", path)
        path = coverage.export(COVERAGE_NAME)
        covered, size = coverage.totals()
        log.info(
            "functional coverage so far in this run: %d/%d bins (%.1f%%), written to %s",
            covered,
            size,
            100 * covered / max(size, 1),
            path,
        )

    def final_phase(self):
        """The test is over: its components' loggers leave the logging manager (:mod:`tb.uvm.reporting`)."""
        release_component_loggers()

    def mark_injection(self):
        self.injected_after = len(self.env.scoreboard.errors)
        assert self.injected_after == 0, f"scoreboard errors before injection: {self.env.scoreboard.errors}"


# -- the short test of the normal suite ---------------------------------------------------------
@pyuvm_test(timeout_time=2, timeout_unit="sec")
class UvmSmoke(NicTest):
    """A few VFs with small rings (they wrap), mailbox filters, moderation, traffic from every
    side with a VF software reset in the middle."""

    def configure(self, rng):
        n = rng.randint(2, 5)
        return EnvConfig(seed=rng.getrandbits(32), total_vfs=8, num_vfs=n, open_vfs=min(n, 3), ring_size=16)

    async def scenario(self):
        env = self.env
        for k in range(len(env.slots)):
            await MailboxConfigSeq(f"cfg{k}", env, slot=k, count=2).start()
        await ModerationSeq("mod", env).start()
        slot = env.rng.randrange(len(env.slots))
        await TrafficPhaseSeq(
            "traffic", env, frames=14, disruptions=[lambda: ResetSeq("reset", env, kind="vf_soft", slot=slot)]
        ).start()


#: every feature on (ethtool -K names with _)
ALL_FEATURES = dict(rx_checksum=True, tx_checksum=True, tso=True, rxhash=True, rxvlan=True, txvlan=True)


@pyuvm_test(timeout_time=2, timeout_unit="sec")
class OffloadSmoke(NicTest):
    """Offloads under the scoreboard: a VF with every feature and RSS over its queues gets flows of
    every hash type and checksum class; TX checksum, one TSO frame, VLAN insert/strip with a port
    VLAN, one refused request."""

    fabric_equivalent = True

    def configure(self, rng):
        return EnvConfig(seed=rng.getrandbits(32), total_vfs=8, num_vfs=3, open_vfs=3, ring_size=32)

    async def scenario(self):
        env = self.env
        for k in range(3):
            await OffloadConfigSeq(f"cfg{k}", env, slot=k, features=ALL_FEATURES).start()
        await RssCoverSeq("rss", env, slot=0).start()
        await RxChecksumSeq("rxcsum", env, slot=1).start()
        await TxChecksumSeq("txcsum", env, slot=0, to=1).start()
        tso = NicSequence("tso", env)
        await tso.do(
            env.vf_agents[0].seqr,
            "xmit",
            frame=tso_frame(env.vf(0).mac, PARTNER_MAC, tso.next_serial(), False, 6000, env.rng),
            offload=TxOffload(gso_size=1448),
        )
        await VlanSeq("vlan", env, tagger=0, receiver=1, pvlan=2).start()
        ops = NicSequence("bad", env)
        frame = tso_frame(env.vf(0).mac, PARTNER_MAC, ops.next_serial(), False, 300, env.rng)
        verdict = await ops.do(env.vf_agents[0].seqr, "bad_offload", reason=int(OffloadError.MSS), queue=1, frame=frame)
        assert verdict is not None


# -- fault injection: the scoreboard must catch each -----------------------------------------------
async def _unicast_between_vfs(env, count=6):
    """VF agent 0 sends ``count`` frames to VF agent 1."""
    src, dst = env.vf(0), env.vf(1)
    ops = NicSequence("direct", env)
    for n in range(count):
        frame = build_frame(src.mac, dst.mac, 100 + n, serial=ops.next_serial())
        await ops.do(env.vf_agents[0].seqr, "xmit", frame=frame)


class InjectionTest(NicTest):
    """Clean VF-to-VF traffic (the scoreboard must stay silent), then ``inject`` one fault into
    the running system and more traffic: the test passes only if the scoreboard reports it."""

    def inject(self):
        """Arm the fault; returns something with ``fired`` (an :class:`model.inject.Injection`)."""
        raise NotImplementedError

    async def scenario(self):
        env = self.env
        await _unicast_between_vfs(env, 3)
        await env.scoreboard.drain()
        self.mark_injection()
        done = self.inject()
        await _unicast_between_vfs(env, 3)
        await env.scoreboard.drain()
        assert done.fired, "injection did not trigger"


@pyuvm_test(timeout_time=2, timeout_unit="sec")
class InjectMisroute(InjectionTest):
    """The switch delivers one VF-to-VF frame to a third VF: reported as a misroute."""

    expect_errors = frozenset({"misroute"})

    def inject(self):
        env = self.env
        return env.system.nic.inject.misroute_next({vf_port(env.vf(k).vf_index) for k in range(len(env.slots))})


@pyuvm_test(timeout_time=2, timeout_unit="sec")
class InjectCorruption(InjectionTest):
    """One byte of a frame flips between the switch and the VF's host memory: reported as corrupt."""

    expect_errors = frozenset({"corrupt"})

    def inject(self):
        return self.env.system.nic.inject.corrupt_next_rx(vf_port(self.env.vf(1).vf_index))


@pyuvm_test(timeout_time=2, timeout_unit="sec")
class InjectMisqueue(InjectionTest):
    """RSS steers one frame for a VF with rxhash on to the wrong queue: reported as rx_offload
    (the queue the reference's own Toeplitz and indirection table name differs)."""

    expect_errors = frozenset({"rx_offload"})

    async def scenario(self):
        await OffloadConfigSeq("cfg", self.env, slot=1, features={"rxhash": True}).start()
        await super().scenario()

    def inject(self):
        return self.env.system.nic.inject.misqueue_next(vf_port(self.env.vf(1).vf_index))


@pyuvm_test(timeout_time=2, timeout_unit="sec")
class InjectIsolationBreak(InjectionTest):
    """VF 0's requester ID is attached to VF 1's domain behind the platform's back: its next
    DMA lands in VF 1's memory, which the scoreboard reports as an isolation break.  (The
    frames VF 0 then sends are queued in rings the device no longer reads correctly; the
    other errors that follow are expected too.)"""

    expect_errors = frozenset({"isolation"})

    def inject(self):
        inject.share_domain(self.env.system, self.env.vf(0), self.env.vf(1))
        return Injection("share_domain", fired=True)


# -- seeded constrained-random regressions (make regress) ------------------------------------------
@pyuvm_test(timeout_time=20, timeout_unit="sec", skip=REGRESS_ONLY)
class RandomTraffic(NicTest):
    """Random NumVFs, ring sizes and filters (multicast, VLANs, MAC, promiscuous with trust),
    interrupt moderation, then traffic of every kind from VFs, PF and uplink with a link flap."""

    def configure(self, rng):
        n = pick_num_vfs(rng, weights=[2, 4, 2, 2, 0])
        return EnvConfig(
            seed=rng.getrandbits(32),
            total_vfs=max(n, rng.choice([8, 16, 32])),
            num_vfs=n,
            open_vfs=min(n, rng.randint(2, MAX_AGENTS)),
            ring_size=rng.choice([8, 16, 32, 64]),
            ari=rng.random() < 0.8,
        )

    async def scenario(self):
        env, rng = self.env, self.env.rng
        for k in range(len(env.slots)):
            await MailboxConfigSeq(f"cfg{k}", env, slot=k, count=rng.randint(1, 4)).start()
        await ModerationSeq("mod", env).start()
        if len(env.system.vfs) > len(env.slots):
            await IdleVfChatterSeq("idle", env, vfs=2).start()
        disruptions = [lambda: LinkFlapSeq("flap", env)] if rng.random() < 0.6 else []
        disruptions += [lambda: SlowGuestSeq("slow", env, slot=rng.randrange(len(env.slots)))]
        rng.shuffle(disruptions)
        await TrafficPhaseSeq("traffic", env, frames=rng.randint(15, 30), disruptions=disruptions).start()


class QuiescedTest(NicTest):
    """Base of the fabrics' equivalence tests: random filters and moderation, then phases of
    traffic of every kind from every side; between two phases, on a quiet system, one
    disruption each, drawn from a VF FLR with requests before the handshake, a VF software
    reset, a PF reset, IOMMU scenarios, bad descriptors, hostile mailbox traffic, a link
    flap.  Nothing races a DMA in flight, so the scoreboard must see the same events on both
    fabrics."""

    fabric_equivalent = True
    #: (fewest, most) disruptions, frames per agent per traffic phase
    steps, frames = (3, 5), (6, 12)

    async def quiesce(self):
        """Nothing in flight: every frame delivered, every port's transition over."""
        await self.env.scoreboard.drain()
        await Timer(QUIET_NS, "ns")

    async def scenario(self):
        env, rng = self.env, self.env.rng

        def slot():
            return rng.randrange(len(env.slots))

        for k in range(len(env.slots)):
            await MailboxConfigSeq(f"cfg{k}", env, slot=k, count=rng.randint(1, 3)).start()
        await ModerationSeq("mod", env).start()
        if len(env.system.vfs) > len(env.slots):
            await IdleVfChatterSeq("idle", env, vfs=2).start()
        steps = [
            lambda: ResetSeq("flr", env, kind="vf_flr", slot=slot(), hostile=True),
            lambda: ResetSeq("soft", env, kind="vf_soft", slot=slot()),
            lambda: ResetSeq("pf", env, kind="pf_reset", slot=0),
            lambda: IommuSeq("iommu", env, slot=slot()),
            lambda: BadDescriptorSeq("baddesc", env, slot=slot()),
            lambda: HostileMailboxSeq("hostile", env, slot=slot(), count=rng.randint(2, 5)),
            lambda: LinkFlapSeq("flap", env),
        ]
        for make in rng.sample(steps, rng.randint(*self.steps)):
            await TrafficPhaseSeq("traffic", env, frames=rng.randint(*self.frames)).start()
            await self.quiesce()
            await make().start()
            await self.quiesce()
        await TrafficPhaseSeq("after", env, frames=rng.randint(*self.frames)).start()


@pyuvm_test(timeout_time=10, timeout_unit="sec")
class QuiescedSmoke(QuiescedTest):
    """A short :class:`QuiescedTest` (two disruptions, a few frames): the equivalence check of
    ``make test`` (``tests/test_equivalence.py`` runs it on both fabrics)."""

    steps, frames = (2, 2), (3, 5)

    def configure(self, rng):
        n = rng.randint(2, 5)
        return EnvConfig(seed=rng.getrandbits(32), total_vfs=8, num_vfs=n, open_vfs=min(n, 3), ring_size=32)


def up_to_63_vfs(rng: random.Random, ring_sizes: list[int]) -> EnvConfig:
    """A random platform of 2 to 63 VFs (TotalVFs at least 16), 2 to 5 of them open, one of
    ``ring_sizes``, ARI four times in five."""
    n = pick_num_vfs(rng, buckets=("2-7", "8", "9-63"), weights=[3, 2, 1])
    return EnvConfig(
        seed=rng.getrandbits(32),
        total_vfs=max(n, 16),
        num_vfs=n,
        open_vfs=min(n, rng.randint(2, 5)),
        ring_size=rng.choice(ring_sizes),
        ari=rng.random() < 0.8,
    )


@pyuvm_test(timeout_time=30, timeout_unit="sec", skip=REGRESS_ONLY)
class RandomQuiesced(QuiescedTest):
    """:class:`QuiescedTest` over random NumVFs (up to 24), rings and ARI: the equivalence
    check of ``make regress FABRIC=both``."""

    def configure(self, rng):
        return up_to_63_vfs(rng, ring_sizes=[32, 64])


@pyuvm_test(timeout_time=30, timeout_unit="sec", skip=REGRESS_ONLY)
class RandomResets(NicTest):
    """Traffic from everyone while a random series of VF FLRs (with requests before the
    handshake), VF software resets and a PF reset happens."""

    def configure(self, rng):
        return up_to_63_vfs(rng, ring_sizes=[16, 32, 64])

    async def scenario(self):
        env, rng = self.env, self.env.rng
        kinds = rng.sample(["vf_flr", "vf_soft", "pf_reset", "vf_soft"], rng.randint(2, 3))
        slots = [rng.randrange(len(env.slots)) for _ in kinds]
        disruptions = [
            lambda kind=kind, slot=slot: ResetSeq(
                f"reset_{kind}", env, kind=kind, slot=slot, hostile=rng.random() < 0.7
            )
            for kind, slot in zip(kinds, slots)
        ]
        await TrafficPhaseSeq("traffic", env, frames=rng.randint(20, 35), disruptions=disruptions).start()
        await env.scoreboard.drain()
        await Timer(50, "us")  # a reset with nothing in flight
        await ResetSeq(
            "idle_reset", env, kind=rng.choice(["vf_soft", "pf_reset", "vf_soft"]), slot=rng.randrange(len(env.slots))
        ).start()
        await TrafficPhaseSeq("after", env, frames=5).start()


@pyuvm_test(timeout_time=30, timeout_unit="sec", skip=REGRESS_ONLY)
class RandomIommu(NicTest):
    """IOMMU scenarios on random VFs while traffic runs: 2 MiB / 1 GiB pages, map/unmap,
    read-only rings, write-only buffers, detach; bad descriptors; the PF's DMA blocked."""

    def configure(self, rng):
        n = pick_num_vfs(rng, buckets=("2-7", "8"))
        return EnvConfig(
            seed=rng.getrandbits(32),
            total_vfs=16,
            num_vfs=n,
            open_vfs=min(n, rng.randint(2, 4)),
            ring_size=rng.choice([16, 32, 64]),
            ari=rng.random() < 0.5,
            blocked_dma=True,
        )

    async def scenario(self):
        env, rng = self.env, self.env.rng
        victims = rng.sample(range(len(env.slots)), min(2, len(env.slots)))
        disruptions = [lambda s=s: IommuSeq(f"iommu{s}", env, slot=s) for s in victims]
        disruptions.append(lambda: BadDescriptorSeq("baddesc", env, slot=victims[0]))
        await TrafficPhaseSeq("traffic", env, frames=rng.randint(15, 25), disruptions=disruptions).start()
        frame = FrameFactory(env, rng).from_port(0, "to_uplink")
        await NicSequence("pf", env).do(env.pf_agent.seqr, "pf_dma_blocked", frame=frame)
        await TrafficPhaseSeq("after", env, frames=4).start()


@pyuvm_test(timeout_time=60, timeout_unit="sec", skip=REGRESS_ONLY)
class RandomOffloads(NicTest):
    """Every offload under the scoreboard while random traffic runs: VFs with random features
    (one with all of them and RSS over every hash type), flows steered at every (hash type,
    queue), every checksum class good and bad both ways, TSO of every size at every MSS over
    IPv4 and IPv6, VLAN insert/strip under a port VLAN, every refused request, the PF's own RSS;
    then random traffic again after the features change."""

    def configure(self, rng):
        n = rng.randint(4, 8)
        return EnvConfig(
            seed=rng.getrandbits(32),
            total_vfs=max(n, 8),
            num_vfs=n,
            open_vfs=min(n, rng.randint(4, 5)),
            ring_size=rng.choice([32, 64]),
            ari=rng.random() < 0.8,
        )

    async def scenario(self):
        env, rng = self.env, self.env.rng
        slots = list(range(len(env.slots)))
        rng.shuffle(slots)
        full, csum, vlan_rx, pvlan = slots[:4]
        await OffloadConfigSeq("cfg_full", env, slot=full, features=ALL_FEATURES).start()
        for slot in slots[1:]:
            features = {name: rng.random() < 0.6 for name in ALL_FEATURES}
            features.update(rx_checksum=slot == csum or features["rx_checksum"], rxvlan=True, txvlan=True)
            features.update(tx_checksum=slot == csum or features["tx_checksum"])
            types = rng.sample(sorted(set(RssType) - {RssType.NONE}), rng.randint(1, 6))
            await OffloadConfigSeq(f"cfg{slot}", env, slot=slot, features=features, hash_types=types).start()
        disruptions = [
            lambda: RssCoverSeq("rss", env, slot=full, per=rng.randint(1, 2), extra=10),
            lambda: RxChecksumSeq("rxcsum_full", env, slot=full),
            lambda: RxChecksumSeq("rxcsum", env, slot=csum),
            lambda: TxChecksumSeq("txcsum", env, slot=csum, to=full),
            lambda: TsoSeq("tso", env, slot=full, to=csum),
            lambda: VlanSeq("vlan", env, tagger=full, receiver=vlan_rx, pvlan=pvlan),
            lambda: BadOffloadSeq("bad", env, slot=full),
            lambda: PfOffloadSeq("pf", env),
        ]
        rng.shuffle(disruptions)
        await TrafficPhaseSeq("traffic", env, frames=rng.randint(10, 20), disruptions=disruptions).start()
        await env.scoreboard.drain()
        await OffloadConfigSeq("cfg_off", env, slot=full, features={name: False for name in ALL_FEATURES}).start()
        await TrafficPhaseSeq("after", env, frames=6).start()


@pyuvm_test(timeout_time=40, timeout_unit="sec", skip=REGRESS_ONLY)
class RandomMailbox(NicTest):
    """Random NumVFs (all buckets, 64+ included) and a re-enable with another; malformed
    messages, policy refusals, a flood; requests in every VF state; traffic after each."""

    #: the re-enable opens up to this many VFs
    REOPEN_VFS = 3

    def configure(self, rng):
        n = pick_num_vfs(rng, weights=[2, 2, 1, 1, 2])
        return EnvConfig(
            seed=rng.getrandbits(32),
            total_vfs=max(n, 80 if n >= 64 else 16),
            num_vfs=n,
            open_vfs=min(n, rng.randint(1, 4)),
            ring_size=rng.choice([16, 64]),
            ari=True,
            max_open_vfs=self.REOPEN_VFS,
        )

    async def scenario(self):
        env, rng = self.env, self.env.rng
        for k in range(len(env.slots)):
            await HostileMailboxSeq(
                f"hostile{k}", env, slot=k, count=None if k == 0 else rng.randint(3, 8), flood=k == 0
            ).start()
            await MailboxConfigSeq(f"cfg{k}", env, slot=k, count=2).start()
        if len(env.system.vfs) > len(env.slots):
            await IdleVfChatterSeq("idle", env, vfs=3).start()
        await TrafficPhaseSeq("traffic", env, frames=8).start()
        n = pick_num_vfs(rng, buckets=("1", "2-7", "8", "9-63"))
        n = min(n, env.cfg.total_vfs)
        await NicSequence("sriov", env).do(
            env.pf_agent.seqr, "enable", num_vfs=n, open_vfs=min(n, rng.randint(1, self.REOPEN_VFS))
        )
        for k in range(len(env.slots)):
            await MailboxConfigSeq(f"cfg2_{k}", env, slot=k, count=2).start()
        await TrafficPhaseSeq("traffic2", env, frames=8).start()
        # requests in the not-reset state: right after an FLR, before the handshake
        await ResetSeq("flr", env, kind="vf_flr", slot=0, hostile=True).start()
        reply = await env.vf(0).request(Opcode.GET_QUEUES)
        assert reply.ack

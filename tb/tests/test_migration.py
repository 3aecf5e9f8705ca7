"""Live migration of a VF from one host's NIC to another's with traffic running
(``tb.lib.migration``, ``docs/migration.md``).

Two hosts in one simulation, each with its root complex, IOMMU, NIC and PF driver; their
uplinks meet in a learning bridge with a host station behind it. The guest drives VF 0 of the
source; VF 1 there is its peer. Four flows run throughout: guest -> peer (VF to VF on the
source), peer -> guest, station -> guest (uplink to VF), guest -> station (VF to uplink).
"""

from __future__ import annotations

import cocotb
from cocotb.queue import Queue
from cocotb.triggers import Event, Timer

from datasheet import device, regs
from model import events as ev
from pf_driver.migration import VfioMigState
from tb.lib.bridge import LearningBridge
from tb.lib.migration import MigrationAborted, MigrationReport, migrate
from tb.lib.system import System, build_system

S = VfioMigState
STATION = bytes.fromhex("02aa00000001")
ETH_TEST = 0x88B5  # IEEE 802 local experimental ethertype
ETH_RARP = 0x8035
GUEST_TO_PEER, PEER_TO_GUEST, STATION_TO_GUEST, GUEST_TO_STATION = 1, 2, 3, 4
PERIOD_NS = 4_000


def test_frame(src: bytes, dst: bytes, flow: int, seq: int) -> bytes:
    return dst + src + ETH_TEST.to_bytes(2, "big") + bytes([flow]) + seq.to_bytes(4, "big") + bytes(45)


def rarp(mac: bytes) -> bytes:
    """A RARP request announcing ``mac`` (what QEMU's announce-self sends)."""
    body = bytes.fromhex("0001080006040003") + mac + bytes(4) + mac + bytes(4)
    return b"\xff" * 6 + mac + ETH_RARP.to_bytes(2, "big") + body + bytes(60 - 14 - len(body))


def flow_of(frame: bytes) -> tuple[int, int] | None:
    if frame[12:14] != ETH_TEST.to_bytes(2, "big"):
        return None
    return frame[14], int.from_bytes(frame[15:19], "big")


class Traffic:
    """The four flows: who sent what (posted), who received what, and the guest's pause."""

    def __init__(self, guest, peer, bridge: LearningBridge):
        self.guest, self.peer, self.bridge = guest, peer, bridge
        self.sent: dict[int, list[int]] = {f: [] for f in (1, 2, 3, 4)}
        self.received: dict[int, list[int]] = {f: [] for f in (1, 2, 3, 4)}
        self.guest_other = 0  # frames the guest got that are not the test's (the RARP)
        self.paused = False
        self.running = True
        self.guest_idle = Event()
        self.resumed = Event()
        self.tasks = [
            cocotb.start_soon(self._guest_tx()),
            cocotb.start_soon(self._sender(PEER_TO_GUEST)),
            cocotb.start_soon(self._sender(STATION_TO_GUEST)),
            cocotb.start_soon(self._receiver(guest.netdev.received, guest=True)),
            cocotb.start_soon(self._receiver(peer.netdev.received)),
            cocotb.start_soon(self._station_rx()),
        ]

    async def _guest_tx(self) -> None:
        seq = 0
        while self.running:
            if self.paused:
                self.guest_idle.set()
                await self.resumed.wait()
                continue
            for flow, dst in ((GUEST_TO_PEER, self.peer.mac), (GUEST_TO_STATION, STATION)):
                if await self.guest.start_xmit(test_frame(self.guest.mac, dst, flow, seq)):
                    self.sent[flow].append(seq)
            seq += 1
            await Timer(PERIOD_NS, "ns")

    async def _sender(self, flow: int) -> None:
        seq = 0
        while self.running:
            if flow == PEER_TO_GUEST:
                if await self.peer.start_xmit(test_frame(self.peer.mac, self.guest.mac, flow, seq)):
                    self.sent[flow].append(seq)
            else:
                self.sent[flow].append(seq)
                await self.bridge.host_send(test_frame(STATION, self.guest.mac, flow, seq))
            seq += 1
            await Timer(PERIOD_NS, "ns")

    async def _receiver(self, queue: Queue, guest: bool = False) -> None:
        while True:
            _q, frame = await queue.get()
            tag = flow_of(frame)
            if tag is None:
                self.guest_other += guest
            else:
                self.received[tag[0]].append(tag[1])

    async def _station_rx(self) -> None:
        while True:
            tag = flow_of(await self.bridge.host_rx.get())
            if tag is not None:
                self.received[tag[0]].append(tag[1])

    async def pause_guest(self) -> None:
        """The guest's vCPUs stop: no more frames posted, and its NAPI polls have run out."""
        self.resumed.clear()
        self.guest_idle.clear()
        self.paused = True
        await self.guest_idle.wait()
        quiet = 0
        while quiet < 5:
            await Timer(1, "us")
            quiet = 0 if any(self.guest.netdev.napi_scheduled) else quiet + 1

    async def resume_guest(self) -> None:
        self.paused = False
        self.resumed.set()

    async def stop(self) -> None:
        self.running = False
        self.resumed.set()
        await Timer(200, "us")  # what is in flight arrives
        for task in self.tasks:
            task.cancel()


async def two_hosts(dut) -> tuple[System, System, LearningBridge]:
    src = await build_system(dut, total_vfs=4, iommu=True)
    dst = await build_system(dut, total_vfs=4, iommu=True, harness=False, fabric=src.fabric)
    for vf in await src.enable_vfs(2):
        src.attach_vf_domain(vf)
        await vf.open(64, num_queues=1)
    await dst.enable_vfs(2, probe=False)  # held by the destination VMM for the incoming guest
    await dst.pf.open(64)  # the destination host's own netdev announces the migrated MAC
    bridge = LearningBridge({"src": src.nic.uplink, "dst": dst.nic.uplink}, {STATION})
    return src, dst, bridge


def announce_from(dst: System):
    async def announce(mac: bytes) -> None:
        assert await dst.pf.netdev.start_xmit(rarp(mac))

    return announce


async def vf_stat(system: System, index: int, name: str) -> int:
    per_vf = len(regs.STATS)
    return await system.pf.read_reg(regs.PF_VF_STATS, index * per_vf + [r.name for r in regs.STATS].index(name))


def report_line(report: MigrationReport) -> str:
    return (
        f"downtime {report.downtime_ns / 1000:.1f} us, {report.precopy_rounds} pre-copy rounds "
        f"(pages per round {report.pages_per_round}), {report.final_pages} pages while stopped, "
        f"blob {report.blob_bytes} bytes, {report.pages_compared} pages compared"
    )


async def migrate_guest(src, dst, guest, traffic, **kwargs):
    """Migrate ``guest`` (VF 0 of ``src``) to VF 0 of ``dst`` as the VMM does: its traffic
    paused for the stop and resumed after, the move announced from ``dst``."""
    return await migrate(
        src,
        dst,
        guest,
        0,
        pause_guest=traffic.pause_guest,
        resume_guest=traffic.resume_guest,
        announce=announce_from(dst),
        **kwargs,
    )


@cocotb.test()
async def a_vf_migrates_with_four_flows_running(dut):
    """Every frame the guest posted is sent once, every frame for it is received once or counted
    dropped, its memory is the same on the destination, its counters continue."""
    src, dst, bridge = await two_hosts(dut)
    guest, peer = src.vfs
    other_drops = []  # frames for the guest's VF dropped that are not the test's (the RARP flooded back)
    for system in (src, dst):
        system.nic.events.subscribe(
            ev.Delivery,
            lambda e: (
                other_drops.append(e) if e.fn == device.vf_port(0) and not e.accepted and not flow_of(e.frame) else None
            ),
        )
    traffic = Traffic(guest, peer, bridge)
    await Timer(100, "us")
    assert all(traffic.received[f] for f in (1, 2, 3, 4)), "every flow runs before the migration"
    report = await migrate_guest(src, dst, guest, traffic)
    cocotb.log.info("migration: %s", report_line(report))
    moved = {f: len(traffic.received[f]) for f in (1, 2, 3, 4)}
    await Timer(150, "us")
    await traffic.stop()
    assert all(len(traffic.received[f]) > moved[f] for f in (1, 2, 3, 4)), "every flow runs after it"

    # the guest now runs on the destination: its driver reaches the destination VF
    assert guest.pdev is dst.pf.virtfns[0] and guest.dma.driver is dst.iommu_driver
    assert report.pages_compared > 0 and report.pages_differing == 0
    assert report.downtime_ns > 0 and report.precopy_rounds >= 1

    for flow in (GUEST_TO_PEER, GUEST_TO_STATION):  # posted before, during and after: each once
        assert sorted(traffic.received[flow]) == traffic.sent[flow], flow
    dropped = await vf_stat(dst, 0, "STAT_RX_DROPS") + report.source_rx_drops_after_stop
    for flow in (PEER_TO_GUEST, STATION_TO_GUEST):
        got = traffic.received[flow]
        assert len(got) == len(set(got)), f"flow {flow}: a frame delivered twice"
        assert set(got) <= set(traffic.sent[flow])
    lost = sum(len(traffic.sent[f]) - len(traffic.received[f]) for f in (PEER_TO_GUEST, STATION_TO_GUEST))
    assert lost == dropped - len(other_drops), (lost, dropped, other_drops)
    cocotb.log.info(
        "RX frames for the guest dropped during the downtime: %d (source after the save: %d)",
        lost,
        report.source_rx_drops_after_stop,
    )
    # the counters continue: the destination's count everything since the guest's VF was opened
    sent = len(traffic.sent[GUEST_TO_PEER]) + len(traffic.sent[GUEST_TO_STATION])
    assert await guest.read_reg(regs.by_name("STAT_TX_PACKETS")) == sent
    received = sum(len(traffic.received[f]) for f in (PEER_TO_GUEST, STATION_TO_GUEST)) + traffic.guest_other
    assert await guest.read_reg(regs.by_name("STAT_RX_PACKETS")) == received
    assert src.pf.vf_migration(0).state is S.RUNNING  # reset after the migration
    assert dst.pf.vf_migration(0).state is S.RUNNING
    assert src.rc.iommu.faults.total == 0 and dst.rc.iommu.faults.total == 0
    bridge.stop()


async def migration_refused(src, dst, guest, traffic, why: str, **kwargs) -> None:
    """Migrate ``guest``, expecting the VMM to abort with ``why``."""
    try:
        await migrate_guest(src, dst, guest, traffic, **kwargs)
    except MigrationAborted as exc:
        assert why in str(exc)
    else:
        raise AssertionError(f"the migration completed; expected: {why}")


async def guest_stayed(src, dst, guest, traffic) -> None:
    """After a refused migration: the guest's four flows run on, on the source; both VFs are
    back in RUNNING."""
    mark = {f: len(traffic.received[f]) for f in (1, 2, 3, 4)}
    await Timer(100, "us")
    await traffic.stop()
    assert all(len(traffic.received[f]) > mark[f] for f in (1, 2, 3, 4)), "the guest runs on the source"
    assert guest.pdev is src.pf.virtfns[0]
    assert src.pf.vf_migration(0).state is S.RUNNING
    assert dst.pf.vf_migration(0).state is S.RUNNING


@cocotb.test()
async def a_guest_that_dirties_too_much_memory_stays_on_the_source(dut):
    """The guest rewrites 64 pages between every pre-copy round: the VMM gives up after its
    bounded number of rounds; the guest runs on, on the source."""
    src, dst, bridge = await two_hosts(dut)
    guest, peer = src.vfs
    traffic = Traffic(guest, peer, bridge)
    buf, _iova = guest.dma.dma_alloc_coherent(64 * 4096)  # guest memory the device may reach
    scribbling = True

    async def scribble() -> None:
        n = 0
        while scribbling:
            for page in range(64):
                buf.write(page * 4096, n.to_bytes(4, "little"))
            n += 1
            await Timer(5, "us")

    task = cocotb.start_soon(scribble())
    await migration_refused(src, dst, guest, traffic, "did not converge", max_rounds=4)
    scribbling = False
    task.kill()
    await guest_stayed(src, dst, guest, traffic)
    bridge.stop()


@cocotb.test()
async def a_blob_tampered_with_in_transit_is_refused_and_the_guest_stays(dut):
    """One byte of the blob flipped on the way: the destination refuses it (CRC), nothing of it
    is loaded, the source VF goes back to RUNNING and the guest's traffic resumes there."""
    src, dst, bridge = await two_hosts(dut)
    guest, peer = src.vfs
    traffic = Traffic(guest, peer, bridge)
    await Timer(50, "us")

    def tamper(blob: bytes) -> bytes:
        return blob[:100] + bytes([blob[100] ^ 0x40]) + blob[101:]

    before = await vf_stat(dst, 0, "STAT_TX_PACKETS")
    await migration_refused(src, dst, guest, traffic, "BAD_CRC", transfer=tamper)
    await guest_stayed(src, dst, guest, traffic)
    assert await vf_stat(dst, 0, "STAT_TX_PACKETS") == before == 0
    for flow in (GUEST_TO_PEER, GUEST_TO_STATION):
        assert sorted(traffic.received[flow]) == traffic.sent[flow], flow
    bridge.stop()

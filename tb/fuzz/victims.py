"""Tagged traffic between the functions the attacker must not disturb, and its accounting.

Flows: victim 0 -> victim 1 (inside the switch), victim 1 -> link partner, partner ->
victim 2, PF -> victim 0. Every frame carries ``MAGIC`` and a serial number; a frame the
attacker sends never does. At the end every expected frame must have arrived exactly
once and intact, or be covered by a drop counter that moved meanwhile.
"""

from __future__ import annotations

import collections

import cocotb
from cocotb.triggers import Timer

from datasheet import regs
from tb.uvm.sequences import ETH_ADDRS, IP_HEADER, UDP_HEADER, udp_frame

MAGIC = b"VICTIM-FRAME"
#: frames each flow sends at most per episode (it stops earlier when the episode ends)
FRAMES_PER_FLOW = 40
PARTNER = bytes.fromhex("00163e000001")
VICTIM_IP_SRC, VICTIM_IP_DST, VICTIM_PORTS = bytes([10, 1, 0, 1]), bytes([10, 1, 0, 2]), (7000, 7001)
#: Ethernet (addresses and EtherType), IPv4 and UDP headers
UDP_FRAME_HEADERS = ETH_ADDRS + 2 + IP_HEADER + UDP_HEADER
UPLINK = "uplink"
#: the counters a lost victim frame may show up in: the receiving queue had no buffer
#: (STAT_RX_DROPS of the function), or the link partner's queue overflowed or the link was down
RX_DROPS = regs.by_name("STAT_RX_DROPS")


def tagged(src: bytes, dst: bytes, serial: int, size: int) -> bytes:
    """A victim frame of ``size`` bytes (or just long enough for its tag): UDP/IPv4 from
    10.1.0.1:7000 to 10.1.0.2:7001, the serial in the IP ID and after ``MAGIC``."""
    body = MAGIC + serial.to_bytes(8, "big")
    pad = bytes(max(size - UDP_FRAME_HEADERS - len(body), 0))
    return udp_frame(src, dst, (VICTIM_IP_SRC, VICTIM_IP_DST, serial & 0xFFFF), VICTIM_PORTS, body + pad)


class VictimTraffic:
    """``pf_only``: the VFs may vanish (NumVFs changes), so only the PF and the partner talk."""

    def __init__(self, world, rng, pf_only: bool = False):
        self.world, self.rng, self.pf_only = world, rng, pf_only
        self.expected: dict = collections.defaultdict(collections.Counter)  # receiver -> frames
        self.received: dict = collections.defaultdict(collections.Counter)
        self.foreign_tagged = 0  # frames with MAGIC nobody sent: corrupted on the way
        self.serial = 0
        self._tasks = []
        self._stop = False

    # -- who talks to whom ------------------------------------------------------------------
    def _flows(self):
        w = self.world
        v = w.victims
        pf = w.system.pf
        if self.pf_only:
            return [(pf.netdev, pf.mac, PARTNER, UPLINK), (None, PARTNER, pf.mac, ("pf", 0))]
        return [
            (v[0].netdev, v[0].mac, v[1].mac, ("vf", v[1].vf_index)),
            (v[1].netdev, v[1].mac, PARTNER, UPLINK),
            (None, PARTNER, v[2].mac, ("vf", v[2].vf_index)),
            (pf.netdev, pf.mac, v[0].mac, ("vf", v[0].vf_index)),
        ]

    def _receivers(self):
        w = self.world
        out = {} if self.pf_only else {("vf", vf.vf_index): vf.netdev for vf in w.victims}
        out[("pf", 0)] = w.system.pf.netdev
        return out

    # -- running ------------------------------------------------------------------------------
    async def start(self) -> None:
        self.before = await self.drop_counters()
        for key, netdev in self._receivers().items():
            self._tasks.append(cocotb.start_soon(self._collect(key, netdev)))
        self._tasks.append(cocotb.start_soon(self._collect_uplink()))
        self._senders = [cocotb.start_soon(self._send(*flow)) for flow in self._flows()]

    async def _send(self, netdev, src, dst, receiver) -> None:
        uplink = self.world.system.nic.uplink
        for _ in range(FRAMES_PER_FLOW):
            if self._stop:
                return
            self.serial += 1
            frame = tagged(src, dst, self.serial, self.rng.choice([64, 200, 1000, 1514]))
            if netdev is None:
                self.expected[receiver][frame] += 1
                if not await uplink.send(frame):
                    self.expected[receiver][frame] -= 1  # link down: never on the wire
            elif await netdev.start_xmit(frame):
                self.expected[receiver][frame] += 1
            await Timer(self.rng.randint(2, 6), "us")

    def _arrived(self, key, frame: bytes) -> None:
        if MAGIC not in frame:
            return  # the attacker's
        if self.expected[key][frame] > self.received[key][frame]:
            self.received[key][frame] += 1
        else:
            self.foreign_tagged += 1

    async def _collect(self, key, netdev) -> None:
        while True:
            _queue, frame = await netdev.recv()
            self._arrived(key, frame)

    async def _collect_uplink(self) -> None:
        while True:
            self._arrived(UPLINK, await self.world.system.nic.uplink.recv())

    async def stop(self, drain_ns: int = 300_000) -> None:
        self._stop = True
        for task in self._senders:
            await task
        waited = 0
        while self.missing() and waited < drain_ns:
            await Timer(10, "us")
            waited += 10_000
        for task in self._tasks:
            task.cancel()
        self.after = await self.drop_counters()

    # -- accounting -----------------------------------------------------------------------------
    async def drop_counters(self) -> dict:
        """Every counter that may explain a lost victim frame."""
        w = self.world
        out = {} if self.pf_only else {("vf", vf.vf_index): await vf.read_reg(RX_DROPS) for vf in w.victims}
        out[("pf", 0)] = await w.system.pf.read_reg(RX_DROPS)
        counters = w.system.nic.uplink.counters
        out[(UPLINK, "tx_overflow")] = counters.tx_overflow
        out[(UPLINK, "link_down")] = counters.tx_link_down + counters.rx_link_down
        return out

    def sent(self) -> int:
        return sum(sum(c.values()) for c in self.expected.values())

    def missing(self) -> int:
        return sum(
            max(n - self.received[key][frame], 0)
            for key, counter in self.expected.items()
            for frame, n in counter.items()
        )

    def explained(self) -> int:
        return sum(max(self.after[k] - self.before.get(k, 0), 0) for k in self.after)

    def unexplained(self) -> int:
        return max(self.missing() - self.explained(), 0)

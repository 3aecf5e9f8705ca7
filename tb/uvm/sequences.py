"""Sequences of driver-level operations, directed and constrained-random.

Every random choice comes from a :class:`random.Random` the sequence derives from the
environment's seeded generator when it is created, so a run reproduces from its seed
whatever the interleaving of concurrent sequences.  Frames are the bytes scapy builds with
every field given (no scapy randomness), put together with :mod:`tb.uvm.frames`: Ether /
optional 802.1Q / IPv4 / UDP, padded to the chosen length (without FCS), carrying a serial
number so no two are alike.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator

from cocotb.triggers import Timer, gather
from pyuvm import uvm_sequence

from datasheet import descriptors as d
from datasheet import device
from datasheet import mailbox as mbx
from datasheet.mailbox import Opcode
from tb.uvm import frames
from tb.uvm import reference as ref
from tb.uvm.items import NicOp

PARTNER_MAC = bytes.fromhex("00163e000001")  # the link partner's station
UNKNOWN_MAC = bytes.fromhex("00163e0000ee")  # nobody owns it
GROUPS = [bytes.fromhex("01005e000001"), bytes.fromhex("01005e0000fb"), bytes.fromhex("333300000001")]
MIN_LEN, MAX_LEN = 60, 1514
ETH_ADDRS = 12  # destination and source MACs (the EtherType follows)
ETH_P_IP, ETH_P_8021Q, IPPROTO_UDP, VXLAN_PORT = frames.ETH_P_IP, frames.ETH_P_8021Q, frames.IPPROTO_UDP, 4789
IP_HEADER, UDP_HEADER, SERIAL_BYTES = frames.IPV4_HEADER, frames.UDP_HEADER, 8
IP_SRC, IP_DST = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])


def build_frame(src: bytes, dst: bytes, length: int, vid: int | None = None, serial: int = 0) -> bytes:
    """A UDP/IPv4 frame of exactly ``length`` bytes (without FCS, at least 54), all fields
    fixed; ``serial`` (in the IP ID, the UDP source port and the payload) tells frames apart.

    The bytes scapy builds for ``Ether / [Dot1Q] / IP / UDP / payload`` with these fields
    (``tests/test_frames.py`` holds them equal), put together directly: the regressions
    build thousands of frames, and scapy takes milliseconds for each."""
    tag = struct.pack("!HHH", ETH_P_8021Q, vid, ETH_P_IP) if vid is not None else struct.pack("!H", ETH_P_IP)
    pad = max(length - (ETH_ADDRS + len(tag) + IP_HEADER + UDP_HEADER + SERIAL_BYTES), 0)
    payload = serial.to_bytes(SERIAL_BYTES, "big") + frames.pattern(serial, pad)
    return udp_frame(src, dst, (IP_SRC, IP_DST, serial & 0xFFFF), (1024 + serial % 50000, VXLAN_PORT), payload, tag)


def udp_frame(
    src: bytes,
    dst: bytes,
    ip: tuple[bytes, bytes, int],
    ports: tuple[int, int],
    payload: bytes,
    tag: bytes = struct.pack("!H", ETH_P_IP),
) -> bytes:
    """``Ether / [Dot1Q] / IP / UDP / payload`` as scapy builds it: ``ip`` is (source,
    destination, ID), ``ports`` (source, destination), both checksums filled
    (:mod:`tb.uvm.frames`); ``tag`` is what follows the MAC addresses up to the IP header
    (the EtherType, or an 802.1Q tag and the EtherType)."""
    ip_src, ip_dst, ip_id = ip
    udp = frames.udp_datagram(ports, payload, (ip_src, ip_dst))
    return dst + src + tag + frames.ipv4_header(ip_src, ip_dst, ip_id, IPPROTO_UDP, len(udp)) + udp


def random_length(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.15:
        return MIN_LEN
    if r < 0.30:
        return MAX_LEN
    return rng.randint(MIN_LEN + 1, MAX_LEN - 1)


class NicSequence(uvm_sequence):
    """Base: an ``env`` and a private random generator; ``do`` runs one operation."""

    def __init__(self, name: str, env, **kw):
        super().__init__(name)
        self.env = env
        self.rng = random.Random(env.rng.getrandbits(64))
        self.serials = env.serial_space()  # its frames' serial numbers
        self.kw = kw

    def next_serial(self) -> int:
        """Serial number for this sequence's next frame (fixed by the seed, whatever the timing)."""
        return next(self.serials)

    async def do(self, seqr, op: str, allow_error: bool = False, **args):
        """Run operation ``op`` on the agent behind ``seqr`` (start_item / finish_item) and
        return its result; its exception is re-raised unless ``allow_error``.  Safe to use
        from concurrent coroutines of one sequence (the sequencer is passed, not stored)."""
        item = NicOp(op, **args)
        item.parent_sequence_id = self.sequence_id
        await seqr.start_item(item)
        await seqr.finish_item(item)
        if item.error is not None and not allow_error:
            raise item.error
        return item.result

    # -- handy --
    @property
    def pf(self):
        return self.env.pf_agent.seqr

    @property
    def uplink(self):
        return self.env.uplink_agent.seqr

    def vf(self, slot: int):
        return self.env.vf_agents[slot].seqr


class FrameFactory:
    """Random frames of the kinds the testplan asks for, addressed from the env's current view."""

    KINDS = (
        "vf_to_vf",
        "to_pf",
        "to_uplink",
        "broadcast",
        "multicast",
        "spoofed",
        "unknown_vf",
        "tagged",
        "jumbo",
        "runt",
        "malformed",
        "to_self",
    )

    def __init__(self, env, rng: random.Random, weights: dict | None = None, serials: Iterator[int] | None = None):
        self.env, self.rng = env, rng
        self.serials = serials if serials is not None else env.serial_space()
        self.weights = weights or {
            "vf_to_vf": 30,
            "to_pf": 8,
            "to_uplink": 15,
            "broadcast": 8,
            "multicast": 10,
            "spoofed": 6,
            "unknown_vf": 5,
            "tagged": 6,
            "jumbo": 2,
            "runt": 2,
            "malformed": 1,
            "to_self": 1,
        }

    def kind(self) -> str:
        kinds = list(self.weights)
        return self.rng.choices(kinds, [self.weights[k] for k in kinds])[0]

    def from_port(self, port: int, kind: str | None = None) -> bytes:
        env, rng = self.env, self.rng
        macs = env.platform.macs()
        own = macs[port]
        others = [p for p in macs if p not in (port, 0)]
        kind = kind or self.kind()
        src, vid = own, None
        length = random_length(self.rng)
        if kind == "malformed":  # shorter than an Ethernet header
            return own[:4] + bytes(rng.randint(2, 9))
        if kind in ("jumbo", "runt"):
            length = rng.randint(MAX_LEN + 1, 9000) if kind == "jumbo" else rng.randint(50, MIN_LEN - 1)
            kind = rng.choice(["vf_to_vf", "to_uplink", "broadcast"])
        if kind == "to_self":
            dst = own
        elif kind == "vf_to_vf" and others:
            opened = [1 + env.vf(s).vf_index for s in range(len(env.slots))]
            pool = [p for p in opened if p != port] or others
            dst = macs[rng.choice(pool)]
        elif kind == "unknown_vf" and others:
            dst = macs[rng.choice(others)]  # may be a VF with no open rings
        elif kind == "to_pf" and port != 0:
            dst = macs[0]
        elif kind == "broadcast":
            dst = ref.BROADCAST
        elif kind == "multicast":
            dst = rng.choice(GROUPS)
        elif kind == "spoofed" and others:
            dst, src = PARTNER_MAC, macs[rng.choice(others)]
        elif kind == "tagged":
            vid = rng.choice([10, 20, 30, 4000])
            dst = macs[rng.choice(others)] if others and rng.random() < 0.6 else ref.BROADCAST
        else:
            dst = PARTNER_MAC if rng.random() < 0.7 else UNKNOWN_MAC
        if vid is not None:
            length = min(length + 4, MAX_LEN + 4)
        return build_frame(src, dst, length, vid, next(self.serials))

    def from_uplink(self) -> bytes:
        env, rng = self.env, self.rng
        macs = env.platform.macs()
        r = rng.random()
        vid = None
        if r < 0.02:
            return rng.choice([bytes(rng.randint(1, 13)), bytes(9030)])  # malformed: runt / giant
        if r < 0.55 and len(macs) > 1:
            dst = macs[rng.choice(list(macs))]
        elif r < 0.65:
            dst = ref.BROADCAST
        elif r < 0.75:
            dst = rng.choice(GROUPS)
        elif r < 0.85:
            dst, vid = macs[rng.choice(list(macs))], rng.choice([10, 20])
        else:
            dst = UNKNOWN_MAC
        length = random_length(rng) + (4 if vid is not None else 0)
        return build_frame(PARTNER_MAC, dst, length, vid, next(self.serials))


# -- leaf sequences ------------------------------------------------------------------------------
class VfTrafficSeq(NicSequence):
    """``count`` random frames from the VF of agent ``slot``, with random gaps."""

    async def body(self):
        slot, count = self.kw["slot"], self.kw["count"]
        frames = FrameFactory(self.env, self.rng, self.kw.get("weights"), self.serials)
        for _ in range(count):
            vf = self.env.vf(slot)
            await self.do(self.vf(slot), "xmit", frame=frames.from_port(device.vf_port(vf.vf_index)))
            if self.rng.random() < 0.3:
                await Timer(self.rng.randint(1, 20), "us")


class PfTrafficSeq(NicSequence):
    async def body(self):
        frames = FrameFactory(
            self.env,
            self.rng,
            {
                "vf_to_vf": 40,
                "to_uplink": 20,
                "broadcast": 15,
                "multicast": 15,
                "unknown_vf": 10,
                "tagged": 10,
                "to_self": 3,
                "malformed": 2,
                "jumbo": 2,
            },
            self.serials,
        )
        for _ in range(self.kw["count"]):
            await self.do(self.pf, "pf_xmit", frame=frames.from_port(0))
            await Timer(self.rng.randint(1, 10), "us")


class UplinkTrafficSeq(NicSequence):
    async def body(self):
        frames = FrameFactory(self.env, self.rng, serials=self.serials)
        for _ in range(self.kw["count"]):
            await self.do(self.uplink, "send", frame=frames.from_uplink())
            if self.rng.random() < 0.3:
                await Timer(self.rng.randint(1, 10), "us")


class MailboxConfigSeq(NicSequence):
    """Random valid filter requests from one VF: multicast list, VLANs, MAC, promiscuous."""

    async def body(self):
        slot = self.kw["slot"]
        rng, seqr, env = self.rng, self.vf(self.kw["slot"]), self.env
        vf = env.vf(slot)
        for _ in range(self.kw.get("count", 3)):
            r = rng.random()
            if r < 0.35:
                groups = rng.sample(GROUPS, rng.randint(0, len(GROUPS)))
                words = [len(groups)] + [w for g in groups for w in mbx.mac_to_words(g)]
                await self.do(seqr, "request", opcode=Opcode.SET_MULTICAST, payload=words)
            elif r < 0.6:
                vid = rng.choice([10, 20, 30])
                await self.do(
                    seqr, "request", opcode=Opcode.SET_VLAN, payload=[mbx.VLAN_ADD.put(vid, rng.random() < 0.8)]
                )
            elif r < 0.75:
                mac = bytes([0x02, 0xAA, rng.randrange(256), rng.randrange(256), 0x10, vf.vf_index & 0xFF])
                await self.do(seqr, "request", opcode=Opcode.SET_MAC, payload=mbx.mac_to_words(mac))
            elif r < 0.9:
                trusted = rng.random() < 0.5
                await self.do(self.pf, "admin", what="trust", vf=vf.vf_index, value=trusted)
                mode = rng.choice([0, mbx.PROMISC_MULTICAST.mask, mbx.PROMISC_UNICAST.mask])
                await self.do(seqr, "request", opcode=Opcode.SET_PROMISC, payload=[mode])
            elif r < 0.95:
                await self.do(seqr, "request", opcode=Opcode.GET_QUEUES)
                await self.do(seqr, "request", opcode=Opcode.GET_OFFLOADS)
                await self.do(seqr, "request", opcode=Opcode.API_NEGOTIATE, payload=[1 << 16 | 2])
            else:  # a VF restarting its conversation
                await self.do(seqr, "request", opcode=Opcode.RESET)


#: malformed / hostile requests: (opcode, payload) -> the PF must NACK and change nothing
def hostile_requests(rng: random.Random, n: int | None = None) -> list:
    """``n`` random picks (None: every one, shuffled)."""
    pool = [
        (0x0077, []),
        (Opcode.LINK_STATUS, [1, 1000]),
        (Opcode.SET_MAC, [1]),
        (Opcode.RESET, [1, 2, 3]),
        (Opcode.SET_MULTICAST, [3, 1, 2]),
        (Opcode.SET_MULTICAST, [8] + [0] * 14),
        (Opcode.SET_MULTICAST, [1, 0x0100AA02, 0x0201]),
        (Opcode.SET_MAC, [0, 0]),
        (Opcode.SET_MAC, mbx.mac_to_words(GROUPS[0])),
        (Opcode.SET_VLAN, [4095 | 1 << 31]),
        (Opcode.SET_VLAN, [5 | 1 << 20]),
        (Opcode.CONFIG_QUEUES, [device.VF_QUEUE_PAIRS, 0x1000, 0, 256, 0]),
        (Opcode.CONFIG_QUEUES, [0, 0x1040, 0, 256, 0]),
        (Opcode.CONFIG_QUEUES, [0, 0x1000, 0, 100, 0]),
        (Opcode.CONFIG_QUEUES, [1 << 31, 0x1000, 0, 256, 64]),
        (Opcode.API_NEGOTIATE, [2 << 16]),
        (Opcode.GET_QUEUES, [0] * 15),
        (Opcode.SET_PROMISC, [0xF0]),
        (Opcode.GET_OFFLOADS, [1]),
        (Opcode.SET_OFFLOADS, [1 << 7]),
        (Opcode.CONFIG_RSS_KEY, [0] * (mbx.RSS_KEY_DWORDS - 1)),
        (Opcode.CONFIG_RSS_LUT, [0xFFFFFFFF] * mbx.RSS_LUT_DWORDS),
        (Opcode.SET_RSS_HENA, [1 << 6]),
    ]
    if n is None:
        rng.shuffle(pool)
        return pool
    return [rng.choice(pool) for _ in range(n)]


def every_request() -> list:
    """One well-formed request of every VF->PF opcode (to send in a state that refuses them)."""
    return [
        (Opcode.SET_MAC, mbx.mac_to_words(bytes.fromhex("02aabbcc0001"))),
        (Opcode.SET_MULTICAST, [1] + mbx.mac_to_words(GROUPS[0])),
        (Opcode.SET_VLAN, [mbx.VLAN_ADD.put(10, 1)]),
        (Opcode.SET_PROMISC, [0]),
        (Opcode.GET_QUEUES, []),
        (Opcode.CONFIG_QUEUES, [0, 0x10_0000, 0, 256, 0]),
        (Opcode.API_NEGOTIATE, [1 << 16 | 2]),
        *OFFLOAD_REQUESTS,
        (0x0077, []),
        (Opcode.RESET, [1]),
    ]


#: one well-formed request of every offload opcode (API 1.2): nothing turned on
OFFLOAD_REQUESTS = [
    (Opcode.GET_OFFLOADS, []),
    (Opcode.SET_OFFLOADS, [0]),
    (Opcode.CONFIG_RSS_KEY, [0] * mbx.RSS_KEY_DWORDS),
    (Opcode.CONFIG_RSS_LUT, [0] * mbx.RSS_LUT_DWORDS),
    (Opcode.SET_RSS_HENA, [0]),
]


class HostileMailboxSeq(NicSequence):
    """Malformed messages, policy violations and a short flood from one VF."""

    async def body(self):
        slot, rng = self.kw["slot"], self.rng
        seqr = self.vf(slot)
        vf = self.env.vf(slot)
        for opcode, payload in hostile_requests(rng, self.kw.get("count")):
            await Timer(mbx.MBX_RATE_REFILL_NS, "ns")
            reply = await self.do(
                seqr, "request", opcode=opcode, payload=payload, raw=True, vf_index=self.kw.get("vf_index")
            )
            assert reply.nack, f"VF {vf.vf_index}: hostile request {opcode:#x} {payload} was accepted"
        if self.kw.get("policy", True):
            await self.do(self.pf, "admin", what="trust", vf=vf.vf_index, value=False)
            reply = await self.do(seqr, "request", opcode=Opcode.SET_PROMISC, payload=[mbx.PROMISC_UNICAST.mask])
            assert reply.nack and reply.payload[0] == mbx.MbxError.POLICY
        if self.kw.get("flood", False):
            replies = [await self.do(seqr, "request", opcode=Opcode.GET_QUEUES) for _ in range(mbx.MBX_RATE_BURST + 6)]
            assert any(r.nack and r.payload[0] == mbx.MbxError.RATE_LIMITED for r in replies), "flood not limited"
            await Timer(mbx.MBX_RATE_BURST * mbx.MBX_RATE_REFILL_NS, "ns")


class BadDescriptorSeq(NicSequence):
    """Zero-length and oversized descriptors (ERR_LEN, queue keeps running), then a buffer
    the domain does not map and one beyond the address width (queue stops, DMA fault)."""

    async def body(self):
        slot, env = self.kw["slot"], self.env
        seqr = self.vf(slot)
        q = env.platform.hostile_queue(slot)
        if q is None:  # every spare queue already stopped by a scenario
            return
        ring = env.vf(slot).netdev.tx[q]
        await self.do(
            seqr,
            "raw_tx",
            descs=[d.tx_desc(ring.data_iova, 0), d.tx_desc(ring.data_iova, device.MAX_FRAME + 1)],
            queue=q,
        )
        target = self.rng.choice(["canary", "beyond_aw"])
        addr = env.platform.canary.phys if target == "canary" else 1 << 48
        ctl = await self.do(seqr, "raw_tx", descs=[d.tx_desc(addr, 64)], queue=q)
        assert not ctl & 1, "the queue kept running after a faulting buffer read"


class IommuSeq(NicSequence):
    """Random IOMMU scenarios on one VF: large pages, map/unmap, read-only ring,
    write-only buffer, detach.  A scenario that stops a TX queue gets one of the VF's spare
    queues (1..3) to itself; when none is left it is skipped."""

    async def body(self):
        slot, rng, env = self.kw["slot"], self.rng, self.env
        seqr, vf = self.vf(slot), env.vf(slot)
        port = device.vf_port(vf.vf_index)
        frames = FrameFactory(env, rng, serials=self.serials)
        scenarios = self.kw.get("scenarios") or rng.sample(
            ["2M", "1G", "map_unmap", "ro_ring", "wo_buffer"], rng.randint(2, 4)
        )
        for scenario in scenarios:
            frame = frames.from_port(port, "to_uplink")
            q = env.platform.hostile_queue(slot, consume=scenario not in ("2M", "1G"))
            if q is None:
                continue
            if scenario in ("2M", "1G"):
                await self.do(self.pf, "map_large", slot=slot, page=scenario, frame=frame, queue=q)
            else:
                op = {"map_unmap": "map_unmap_tx", "ro_ring": "ro_ring_tx", "wo_buffer": "wo_buffer_tx"}[scenario]
                await self.do(seqr, op, frame=frame, queue=q)
        if self.kw.get("detach", rng.random() < 0.5):
            await self.do(seqr, "detached_dma", queue=env.platform.hostile_queue(slot, consume=False) or 0)


class ResetSeq(NicSequence):
    """One reset of the given kind (vf_flr / vf_soft / pf_reset)."""

    async def body(self):
        kind = self.kw["kind"]
        if kind == "pf_reset":
            await self.do(self.pf, "pf_reset")
            return
        seqr = self.vf(self.kw["slot"])
        if kind == "vf_flr":
            hostile = every_request() if self.kw.get("hostile", False) else ()
            replies = await self.do(seqr, "flr", hostile_requests=hostile)
            for reply in replies:
                assert reply.nack, f"request before RESET accepted: {reply}"
        else:
            await self.do(seqr, "soft_reset")


# -- virtual sequences -------------------------------------------------------------------------------
class TrafficPhaseSeq(NicSequence):
    """Traffic on every agent at once (VFs, PF, uplink), with ``disruptions`` (sequence
    factories) started one after the other while it runs."""

    async def body(self):
        env, rng, kw = self.env, self.rng, self.kw
        per = kw.get("frames", 20)
        tasks = [
            VfTrafficSeq(f"traffic{k}", env, slot=k, count=per, weights=kw.get("weights")).start()
            for k in range(len(env.slots))
        ]
        if kw.get("uplink", True):
            tasks.append(UplinkTrafficSeq("uplink", env, count=max(per // 2, 1)).start())
        if kw.get("pf", True) and env.cfg.open_pf:
            tasks.append(PfTrafficSeq("pf", env, count=max(per // 2, 1)).start())

        # made now, in order: their random draws and frame serials must not depend on when
        # they start, which follows the fabric's timing
        disruptions = [make() for make in kw.get("disruptions", ())]

        async def disrupt():
            for seq in disruptions:
                await Timer(rng.randint(5, 60), "us")
                await seq.start()

        tasks.append(disrupt())
        await gather(*tasks)


class ModerationSeq(NicSequence):
    """Interrupt moderation on or off (EITR) for the queue-0 vector of each open VF and the PF."""

    async def body(self):
        for k in range(len(self.env.slots)):
            await self.do(self.vf(k), "set_eitr", vector=1, usec=self.rng.choice([0, 0, 20, 100]))
        if self.env.cfg.open_pf:
            await self.do(self.pf, "set_eitr", vector=1, usec=self.rng.choice([0, 30]))


class IdleVfChatterSeq(NicSequence):
    """Requests from VFs that were probed but never opened (they sit in the cleared-to-send
    state): valid ones and malformed ones, through the agent of slot 0 acting as their guest."""

    async def body(self):
        env, rng = self.env, self.rng
        idle = [i for i in range(len(env.system.vfs)) if i not in env.slots]
        for n, index in enumerate(rng.sample(idle, min(len(idle), self.kw.get("vfs", 2)))):
            hostile = hostile_requests(rng) if n == 0 else hostile_requests(rng, 2)
            valid = [r for r in every_request() if r[0] in set(Opcode) and r[0] != Opcode.RESET]
            valid = rng.sample(valid, len(valid)) if n == 0 else rng.sample(valid, 4)  # all, in the CTS state
            for opcode, payload in valid + [(Opcode.RESET, [])] + hostile:
                await Timer(mbx.MBX_RATE_REFILL_NS, "ns")
                await self.do(self.vf(0), "request", opcode=opcode, payload=payload, raw=True, vf_index=index)


class SlowGuestSeq(NicSequence):
    """A guest stops polling its RX queue for a while (napi_disable): its ring fills, the
    device drops (no buffer) or truncates, then the guest catches up."""

    async def body(self):
        env, slot = self.env, self.kw["slot"]
        pause = self.do(self.vf(slot), "napi_pause", queue=0, ns=self.rng.randint(30_000, 120_000))
        mac = env.vf(slot).mac
        burst = [
            build_frame(PARTNER_MAC, mac, self.rng.randint(4000, 9000), None, self.next_serial())
            for _ in range(max(env.cfg.ring_size // 3, 3))
        ]

        async def flood():
            await Timer(2, "us")
            for frame in burst:  # jumbo frames into a ring nobody empties
                await self.do(self.uplink, "send", frame=frame)

        await gather(pause, flood())


class LinkFlapSeq(NicSequence):
    async def body(self):
        await self.do(self.uplink, "link", up=False, hold_ns=self.rng.randint(10_000, 50_000))
        await self.do(self.uplink, "link", up=True)

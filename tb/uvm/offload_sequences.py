"""Sequences for the offloads: configuration (``ethtool -K/-X`` on VFs and the PF), receive
traffic of every L3/L4 class with good and bad checksums, RSS flows steered at every queue of
every hash type, TX checksum, TSO of every size class at every MSS class, VLAN insertion and
stripping under port-VLAN policy, and every refused TX request.

Frames are the bytes scapy builds with every field given (put together with
:mod:`tb.uvm.frames`); a per-run serial number in the payload tells them apart. Where a bin
needs a particular outcome (a hash type on a given queue) the sequence searches random flows
with the testbench's reference (never the model) until it predicts that outcome, so one seed
covers the whole ``nic.offload`` group.
"""

from __future__ import annotations

import random
import socket
import struct

from cocotb.triggers import Timer

from datasheet import device
from datasheet import mailbox as mbx
from datasheet.descriptors import OffloadError, RssType
from datasheet.mailbox import Offload, Opcode
from netdev import RssConfig, TxOffload
from tb.uvm import frames
from tb.uvm import offload_reference as offref
from tb.uvm.sequences import PARTNER_MAC, NicSequence

ALL_TYPES = frozenset(RssType) - {RssType.NONE}
EXPERIMENTAL_ETHERTYPE = 0x88B5  # IEEE 802 local experimental: a non-IP frame
KINDS = offref.L3L4_CLASSES


def offload_frame(
    kind: str,
    src: bytes,
    dst: bytes,
    serial: int,
    rng: random.Random,
    size: int = 120,
    bad: str | None = None,
    vlan: int | None = None,
    udp_checksum: bool = True,
) -> bytes:
    """A frame of L3/L4 class ``kind`` (offload_reference.L3L4_CLASSES) of about ``size`` bytes,
    addresses and ports from ``rng``; ``bad`` "ip" or "l4" spoils that checksum.

    The bytes scapy builds for ``Ether / [Dot1Q] / IP or IPv6 / TCP, UDP or ICMP / payload``
    with these fields, drawing the same numbers from ``rng`` (``tests/test_frames.py``), put
    together with :mod:`tb.uvm.frames`."""
    body = serial.to_bytes(8, "big") + frames.pattern(serial, max(size - 70, 8))
    a, b = rng.getrandbits(16), rng.getrandbits(16)
    ports = (rng.randrange(1024, 65536), rng.choice([80, 443, 53, 4789, 5201]))
    tag = frames.vlan_tag(vlan) if vlan is not None else b""
    if kind == offref.NON_IP:
        return dst + src + tag + struct.pack("!H", EXPERIMENTAL_ETHERTYPE) + body
    v6 = not kind.startswith("ipv4")
    if v6:
        ip_src = socket.inet_pton(socket.AF_INET6, f"2001:db8::{a:x}:{serial & 0xFFFF:x}")
        ip_dst = socket.inet_pton(socket.AF_INET6, f"2001:db8:1::{b:x}")
    else:
        ip_src, ip_dst = bytes((10, a >> 8, a & 0xFF, serial % 250 + 1)), bytes((172, 16, b >> 8, b & 0xFF))
    addresses = (ip_src, ip_dst)
    frag = rng.choice([1, 100]) if kind == offref.IPV4_FRAG else 0
    if kind in (offref.IPV4_TCP, offref.IPV6_TCP):
        proto, l4 = frames.IPPROTO_TCP, frames.tcp_segment(ports, rng.getrandbits(32), body, addresses)
    elif kind in (offref.IPV4_UDP, offref.IPV6_UDP, offref.IPV4_FRAG):  # a fragment: whatever the payload
        checksum = udp_checksum or kind != offref.IPV4_UDP
        proto, l4 = frames.IPPROTO_UDP, frames.udp_datagram(ports, body, addresses, checksum)
    elif kind == offref.IPV6_OTHER:
        proto, l4 = frames.IPPROTO_ICMPV6, b"\x80\x00" + bytes(6) + body  # an echo request, checksum 0
    else:
        proto, l4 = frames.IPPROTO_ICMP, frames.icmp_echo(body)
    frame = bytearray(dst + src + tag + frames.ip_packet(addresses, serial & 0xFFFF, proto, l4, frag))
    l3_at = 14 + len(tag)
    if bad == "ip":
        frame[l3_at + 10] ^= 0xA5  # IPv4 header checksum
    elif bad == "l4":
        frame[-1] ^= 0x5A  # a payload byte: the transport checksum no longer holds
    return bytes(frame)


class OffloadSequence(NicSequence):
    """Helpers: the MAC of a VF agent's function, a frame serial, the uplink."""

    def mac(self, slot: int) -> bytes:
        return self.env.vf(slot).mac

    def port(self, slot: int) -> int:
        return device.vf_port(self.env.vf(slot).vf_index)

    def serial(self) -> int:
        return self.next_serial()

    async def from_uplink(self, frame: bytes) -> None:
        await self.do(self.uplink, "send", frame=frame)

    async def xmit(self, slot: int, frame: bytes, offload: TxOffload | None = None, queue: int = 0) -> None:
        await self.do(self.vf(slot), "xmit", frame=frame, offload=offload, queue=queue)


def random_rss(rng: random.Random, hash_types=ALL_TYPES) -> RssConfig:
    """A random key and an indirection table that names every one of a VF's queues."""
    table = [q % device.VF_QUEUE_PAIRS for q in range(device.RSS_RETA_SIZE)]
    rng.shuffle(table)
    return RssConfig(bytes(rng.getrandbits(8) for _ in range(device.RSS_KEY_SIZE)), tuple(table), frozenset(hash_types))


class OffloadConfigSeq(OffloadSequence):
    """``ethtool -X`` and ``-K`` on VF agent ``slot``: ``features`` (names with ``_``), and a
    random RSS configuration over ``hash_types`` if ``rxhash`` is among them."""

    async def body(self):
        slot, features = self.kw["slot"], self.kw["features"]
        reply = await self.do(self.vf(slot), "request", opcode=Opcode.GET_OFFLOADS)  # what may be turned on
        assert reply.ack, f"GET_OFFLOADS refused: {reply}"
        rss = random_rss(self.rng, self.kw.get("hash_types", ALL_TYPES)) if features.get("rxhash") else None
        shown = await self.do(self.vf(slot), "features", rss=rss, **features)
        for name, on in features.items():
            assert shown[name.replace("_", "-")] == on, f"ethtool -k after -K {features}: {shown}"


class RssCoverSeq(OffloadSequence):
    """Flows from the uplink steered at every (hash type, queue) the VF of ``slot`` can produce:
    random flows of every class are tried against the reference until each pair has ``per``
    frames; then ``extra`` random ones."""

    async def body(self):
        slot, rng = self.kw["slot"], self.rng
        view = self.env.platform.rx_view(self.port(slot))
        wanted = {(t, q) for t in view.hash_types for q in range(device.VF_QUEUE_PAIRS)}
        wanted.add((RssType.NONE, 0))
        have: dict = {}
        per = self.kw.get("per", 1)
        for _ in range(4000):
            if all(have.get(w, 0) >= per for w in wanted):
                break
            frame = offload_frame(rng.choice(KINDS), PARTNER_MAC, self.mac(slot), self.serial(), rng, 80)
            exp = offref.rx_predict(frame, view)
            key = (RssType(exp.rss_type), exp.queue)
            if key in wanted and have.get(key, 0) < per:
                have[key] = have.get(key, 0) + 1
                await self.from_uplink(frame)
        missing = [w for w in wanted if have.get(w, 0) < per]
        assert not missing, f"no flow found for {missing}"
        for _ in range(self.kw.get("extra", 0)):
            await self.from_uplink(offload_frame(rng.choice(KINDS), PARTNER_MAC, self.mac(slot), self.serial(), rng))
            await Timer(rng.randint(1, 5), "us")


class RxChecksumSeq(OffloadSequence):
    """Frames of every L3/L4 class from the uplink to the VF of ``slot``, with good checksums,
    a wrong transport checksum, a wrong IPv4 header checksum, and UDP/IPv4 without a checksum."""

    async def body(self):
        slot, rng = self.kw["slot"], self.rng
        dst = self.mac(slot)
        cases = [(kind, None) for kind in KINDS] + [
            (kind, "l4") for kind in (offref.IPV4_TCP, offref.IPV4_UDP, offref.IPV6_TCP, offref.IPV6_UDP)
        ]
        cases += [(offref.IPV4_TCP, "ip"), (offref.IPV4_FRAG, "ip")]
        rng.shuffle(cases)
        for kind, bad in cases:
            await self.from_uplink(offload_frame(kind, PARTNER_MAC, dst, self.serial(), rng, rng.randint(64, 600), bad))
        frame = offload_frame(offref.IPV4_UDP, PARTNER_MAC, dst, self.serial(), rng, udp_checksum=False)
        await self.from_uplink(frame)


class TxChecksumSeq(OffloadSequence):
    """The VF of ``slot`` leaves the checksums of IPv4/IPv6 x TCP/UDP frames to the device (their
    checksum fields hold garbage), to the VF of ``to`` (if given) and to the link partner."""

    async def body(self):
        slot, rng = self.kw["slot"], self.rng
        targets = [PARTNER_MAC] + ([self.mac(self.kw["to"])] if self.kw.get("to") is not None else [])
        for kind in (offref.IPV4_TCP, offref.IPV4_UDP, offref.IPV6_TCP, offref.IPV6_UDP):
            for dst in targets:
                frame = garbage_checksums(
                    offload_frame(kind, self.mac(slot), dst, self.serial(), rng, rng.randint(60, 1400))
                )
                await self.xmit(slot, frame, TxOffload(csum=True))


def garbage_checksums(frame: bytes) -> bytes:
    """The frame (untagged, IPv4 or IPv6 without options or extension headers, not a fragment)
    with its IPv4 header and TCP/UDP checksum fields overwritten: a stack that left them to the
    device."""
    out = bytearray(frame)
    l3 = frames.ETH_HEADER
    ipv6 = int.from_bytes(frame[l3 - 2 : l3], "big") == frames.ETH_P_IPV6
    if not ipv6:
        out[l3 + frames.IPV4_CHECKSUM_AT : l3 + frames.IPV4_CHECKSUM_AT + 2] = (0xDEAD).to_bytes(2, "big")
    proto = frame[l3 + 6] if ipv6 else frame[l3 + 9]  # Next Header, Protocol
    field = frames.L4_CHECKSUM_AT.get(proto)
    if field is not None:
        at = l3 + (frames.IPV6_HEADER if ipv6 else frames.IPV4_HEADER) + field
        out[at : at + 2] = (0xBEEF).to_bytes(2, "big")
    return bytes(out)


#: MSS of each TSO_MSS bin, payload of each TSO_PAYLOADS bin (the first relative to the MSS)
TSO_MSS_CHOICES = {"small": (256, 500), "typical": (536, 1448, 1460), "jumbo": (2000, 8000)}


def tso_payload(bin_name: str, mss: int, rng: random.Random) -> int:
    if bin_name == "one_segment":
        return rng.randint(1, mss)
    low, high = {"to_8k": (mss + 1, 8192), "to_32k": (8193, 32768), "to_64k": (32769, 65536 - 100)}[bin_name]
    return rng.randint(max(low, mss + 1), high)


class TsoSeq(OffloadSequence):
    """TCP frames the VF of ``slot`` hands to the device with a gso_size: every payload class at
    every MSS class over IPv4 and IPv6, to the link partner (and a small one to the VF of ``to``)."""

    async def body(self):
        slot, rng = self.kw["slot"], self.rng
        combos = [(p, m) for p in ("one_segment", "to_8k", "to_32k", "to_64k") for m in TSO_MSS_CHOICES]
        rng.shuffle(combos)
        for n, (payload_bin, mss_bin) in enumerate(combos):
            mss = rng.choice(TSO_MSS_CHOICES[mss_bin])
            v6 = n % 2 == 1
            frame = tso_frame(self.mac(slot), PARTNER_MAC, self.serial(), v6, tso_payload(payload_bin, mss, rng), rng)
            await self.xmit(slot, frame, TxOffload(gso_size=mss))
            await Timer(rng.randint(5, 30), "us")
        if self.kw.get("to") is not None:
            frame = tso_frame(self.mac(slot), self.mac(self.kw["to"]), self.serial(), False, 3000, rng)
            await self.xmit(slot, frame, TxOffload(gso_size=1000))


def tso_frame(src: bytes, dst: bytes, serial: int, v6: bool, payload: int, rng: random.Random) -> bytes:
    """A TCP frame of ``payload`` bytes for TSO: the bytes scapy builds for
    ``Ether / IP or IPv6 / TCP(flags="PA") / payload`` (``tests/test_frames.py``)."""
    if v6:
        ip_src, ip_dst = (socket.inet_pton(socket.AF_INET6, a) for a in ("2001:db8::5", "2001:db8:9::1"))
    else:
        ip_src, ip_dst = bytes((10, 9, 0, 5)), bytes((10, 9, 1, 1))
    seq = rng.getrandbits(32)
    data = (serial.to_bytes(8, "big") + frames.pattern(serial * 7, max(payload - 8, 0)))[:payload]
    tcp = frames.tcp_segment((30000 + serial % 30000, 5201), seq, data, (ip_src, ip_dst))
    return dst + src + frames.ip_packet((ip_src, ip_dst), serial & 0xFFFF, frames.IPPROTO_TCP, tcp)


class VlanSeq(OffloadSequence):
    """VLAN offloads under port-VLAN policy: the VF of ``tagger`` inserts a tag towards the VF of
    ``receiver`` (which filters that VID and strips it) and the link partner; the VF of ``pvlan``
    gets a port VLAN: its own request for a tag is overridden, and the partner's frames in the
    port VLAN reach it untagged."""

    async def body(self):
        kw, rng = self.kw, self.rng
        tagger, receiver, pvlan = kw["tagger"], kw["receiver"], kw["pvlan"]
        vid = rng.choice([100, 200, 300])
        await self.do(self.vf(receiver), "request", opcode=Opcode.SET_VLAN, payload=[mbx.VLAN_ADD.put(vid, 1)])
        for dst in (self.mac(receiver), PARTNER_MAC):
            frame = offload_frame(offref.IPV4_UDP, self.mac(tagger), dst, self.serial(), rng)
            await self.xmit(tagger, frame, TxOffload(vlan=rng.choice([0, 3]) << 13 | vid))
        await self.from_uplink(
            offload_frame(offref.IPV6_TCP, PARTNER_MAC, self.mac(receiver), self.serial(), rng, vlan=vid)
        )
        index, port_vid = self.env.vf(pvlan).vf_index, rng.choice([10, 20])
        await self.do(self.pf, "admin", what="vlan", vf=index, value=port_vid)
        frame = offload_frame(offref.IPV4_TCP, self.mac(pvlan), PARTNER_MAC, self.serial(), rng)
        await self.xmit(pvlan, frame, TxOffload(vlan=vid))
        await self.from_uplink(
            offload_frame(offref.IPV4_UDP, PARTNER_MAC, self.mac(pvlan), self.serial(), rng, vlan=port_vid)
        )
        await Timer(30, "us")  # received (and sampled) while the port VLAN is still set
        if kw.get("restore", True):
            await self.do(self.pf, "admin", what="vlan", vf=index, value=None)


class BadOffloadSeq(OffloadSequence):
    """Every TX request the device must refuse (each OffloadError), on a spare TX queue of the VF
    of ``slot``; NOT_PERMITTED while the administrator forbids it TSO."""

    async def body(self):
        slot, env = self.kw["slot"], self.env
        q = env.platform.hostile_queue(slot, consume=False) or 1
        reasons = list(OffloadError)
        self.rng.shuffle(reasons)
        index = env.vf(slot).vf_index
        for reason in reasons:
            frame = offload_frame(offref.IPV4_TCP, self.mac(slot), PARTNER_MAC, self.serial(), self.rng, 400)
            if reason == OffloadError.NOT_PERMITTED:
                await self.do(self.pf, "admin", what="offloads", vf=index, value=mbx.ALL_OFFLOADS & ~Offload.TSO)
            verdict = await self.do(self.vf(slot), "bad_offload", reason=int(reason), queue=q, frame=frame)
            assert verdict == offref.Refusal("ERR_OFFLOAD", reason), f"reference verdict {verdict} for {reason.name}"
            if reason == OffloadError.NOT_PERMITTED:
                await self.do(self.pf, "admin", what="offloads", vf=index, value=mbx.ALL_OFFLOADS)


class PfOffloadSeq(OffloadSequence):
    """The PF programs its own offloads (rxhash over its 8 queues, rx-checksum), then the partner
    sends it flows of every class."""

    async def body(self):
        env, rng = self.env, self.rng
        table = tuple(rng.randrange(device.PF_QUEUE_PAIRS) for _ in range(device.RSS_RETA_SIZE))
        rss = RssConfig(bytes(rng.getrandbits(8) for _ in range(device.RSS_KEY_SIZE)), table, ALL_TYPES)
        await self.do(self.pf, "pf_features", rss=rss, rxhash=True, rx_checksum=True, tx_checksum=True)
        pf_mac = env.system.pf.mac
        for _ in range(self.kw.get("count", 12)):
            await self.from_uplink(offload_frame(rng.choice(KINDS), PARTNER_MAC, pf_mac, self.serial(), rng))
        frame = garbage_checksums(offload_frame(offref.IPV4_TCP, pf_mac, PARTNER_MAC, self.serial(), rng))
        await self.do(self.pf, "pf_xmit", frame=frame, offload=TxOffload(csum=True))

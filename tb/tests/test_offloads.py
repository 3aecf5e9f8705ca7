"""Offloads end to end with the IOMMU on: RSS over a VF's queues, checksum offload both ways, TSO,
VLAN insert/strip under port-VLAN policy, every refused request, and the negotiation through
the mailbox. Expected values come from the testbench's own reference
(tb/uvm/offload_reference.py) and from scapy, never from the model."""

import random
from collections import Counter

import cocotb
from cocotb.triggers import Timer
from scapy.layers.inet import IP, TCP, UDP, in4_chksum
from scapy.layers.inet6 import IPv6, in6_chksum
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw
from scapy.utils import checksum as inet_checksum

import pcicore
from datasheet import descriptors as d
from datasheet import device, regs
from datasheet import mailbox as mbx
from datasheet.descriptors import L4Type, OffloadError, RssType, TxContext
from datasheet.mailbox import MbxError, Offload, Opcode
from model import events as ev
from netdev import FeatureError, RssConfig, TxOffload
from tb.lib.system import build_system
from tb.uvm import offload_reference as ref
from vf_driver import VfDriver
from vf_driver.driver import VfError

PARTNER = bytes.fromhex("00163e000001")
ALL_TYPES = frozenset(RssType) - {RssType.NONE}


def mac(b: bytes) -> str:
    return mbx.mac_str(b)


async def up(dut, num_vfs=2, ring_size=256):
    sys_ = await build_system(dut, total_vfs=max(num_vfs, 4), iommu=True)
    vfs = await sys_.enable_vfs(num_vfs)
    for vf in vfs:
        sys_.attach_vf_domain(vf)
        await vf.open(ring_size)
    return sys_, vfs


class Tap:
    """Every (queue, frame, RxInfo) a net device handed to the stack."""

    def __init__(self, netdev):
        self.got: list = []
        netdev.add_tap(lambda q, frame, info: self.got.append((q, frame, info)))

    async def wait(self, n: int, timeout_us: int = 2000) -> list:
        for _ in range(timeout_us):
            if len(self.got) >= n:
                break
            await Timer(1, "us")
        return self.got


async def uplink_frames(sys_, n: int, timeout_ns: int = 500_000) -> list[bytes]:
    out = []
    for _ in range(n):
        frame = await sys_.nic.uplink.recv(timeout_ns=timeout_ns)
        if frame is None:
            break
        out.append(frame)
    return out


def flow(rng: random.Random, dst_mac: bytes, n: int) -> bytes:
    """One frame of flow ``n``: IPv4 or IPv6, TCP or UDP, addresses and ports from ``rng``."""
    v6, tcp = rng.random() < 0.4, rng.random() < 0.5
    if v6:
        ip = IPv6(src=f"2001:db8::{rng.getrandbits(16):x}:{n:x}", dst="2001:db8:1::1")
    else:
        ip = IP(src=f"10.{rng.randrange(256)}.{rng.randrange(256)}.{n % 250 + 1}", dst="192.168.0.1")
    l4 = (TCP if tcp else UDP)(sport=rng.randrange(1024, 65536), dport=rng.choice([80, 443, 4789, 53]))
    return bytes(Ether(src=mac(PARTNER), dst=mac(dst_mac)) / ip / l4 / Raw(n.to_bytes(4, "big") + bytes(20)))


@cocotb.test()
async def rss_spreads_1000_flows_over_a_vf_queues(dut):
    """1,000 flows from the uplink to a VF with rxhash on, a random key and an uneven indirection
    table: every frame lands on the queue the reference's own Toeplitz predicts and carries its
    hash and type; the queues' shares follow the table; each queue is polled by its own NAPI."""
    rng = random.Random(13)
    sys_, vfs = await up(dut)
    vf = vfs[0]
    key = bytes(rng.getrandbits(8) for _ in range(device.RSS_KEY_SIZE))
    table = tuple([0] * 32 + [1] * 16 + [2] * 8 + [3] * 8)
    table = tuple(rng.sample(table, len(table)))
    rss = RssConfig(key, table, ALL_TYPES)
    await vf.netdev.set_rxfh(rss)
    await vf.netdev.set_features(rxhash=True)
    view = ref.RxView(ALL_TYPES, key, table)
    tap = Tap(vf.netdev)
    frames = [flow(rng, vf.mac, n) for n in range(1000)]
    for frame in frames:
        await sys_.nic.uplink.send(frame)
    got = await tap.wait(len(frames), 20_000)
    assert len(got) == len(frames), f"{len(got)} of {len(frames)} frames received"
    by_frame = {frame: (q, info) for q, frame, info in got}
    predicted = Counter()
    for frame in frames:
        exp = ref.rx_predict(frame, view)
        q, info = by_frame[frame]
        assert (q, info.rss_hash, info.rss_type) == (exp.queue, exp.rss_hash, exp.rss_type), (
            f"queue {q} hash {info.rss_hash:#x} type {info.rss_type}, reference {exp}"
        )
        assert exp.rss_type != RssType.NONE
        predicted[q] += 1
    share = {q: table.count(q) / len(table) for q in range(4)}
    for q in range(4):  # binomial: within 5 standard deviations of the table's share
        mean = share[q] * len(frames)
        assert abs(predicted[q] - mean) <= 5 * (len(frames) * share[q] * (1 - share[q])) ** 0.5, (predicted, share)
        assert vf.netdev.polls[q] > 0
    cocotb.log.info("queues: %s for table shares %s", dict(sorted(predicted.items())), share)
    await vf.netdev.set_features(rxhash=False)  # rxhash off: no hash, the default queue
    tap.got.clear()
    await sys_.nic.uplink.send(frames[0])
    (q, frame, info), *_ = await tap.wait(1)
    assert (q, info.rss_type, info.rss_hash) == (0, RssType.NONE, 0)


@cocotb.test()
async def pf_programs_its_own_rss_directly(dut):
    """The PF's net device spreads over its 8 queues with no mailbox in between."""
    sys_ = await build_system(dut, total_vfs=4, iommu=True)
    pf = sys_.pf
    await pf.open(64)
    await pf.netdev.set_features(rxhash=True, rx_checksum=True)
    assert pf.netdev.get_features()["rxhash"] and pf.netdev.get_features()["rx-checksum"]
    assert await pf.read_reg(regs.FN_OFFLOAD, 0) & regs.FN_OFFLOAD.field("RXCSUM").mask
    tap = Tap(pf.netdev)
    rng = random.Random(5)
    frames = [flow(rng, pf.mac, n) for n in range(120)]
    for frame in frames:
        await sys_.nic.uplink.send(frame)
    got = await tap.wait(len(frames))
    view = ref.RxView(ALL_TYPES, pf.netdev.rss.key, pf.netdev.rss.table, rxcsum=True, num_queues=8)
    queues = set()
    for q, frame, info in got:
        exp = ref.rx_predict(frame, view)
        assert (q, info.rss_hash, info.l4_checksum) == (exp.queue, exp.rss_hash, "good")
        queues.add(q)
    assert len(got) == len(frames) and len(queues) == 8


def csum_frame(src_mac: bytes, dst_mac: bytes, v6: bool, l4, n: int, size: int = 300) -> bytes:
    """A frame whose checksums are garbage (the stack leaves them to the device)."""
    ip = IPv6(src="2001:db8::2", dst="2001:db8::1") if v6 else IP(src="10.0.0.2", dst="10.0.0.1", chksum=0x1234)
    pkt = Ether(src=mac(src_mac), dst=mac(dst_mac)) / ip / l4(sport=1000 + n, dport=2000, chksum=0xBAD)
    return bytes(pkt / Raw(bytes((n + k) & 0xFF for k in range(size))))


def valid_per_scapy(frame: bytes) -> bool:
    """scapy's own verdict: the IPv4 header sums to 0 and so does the transport checksum."""
    pkt = Ether(frame)
    l3 = pkt[IPv6] if pkt.haslayer(IPv6) else pkt[IP]
    l4 = pkt[TCP] if pkt.haslayer(TCP) else pkt[UDP]
    proto = 6 if pkt.haslayer(TCP) else 17
    ok = (in6_chksum if pkt.haslayer(IPv6) else in4_chksum)(proto, l3, bytes(l4)) == 0
    if pkt.haslayer(IP):
        ok &= inet_checksum(bytes(pkt[IP])[: pkt[IP].ihl * 4]) == 0
    return ok


@cocotb.test()
async def checksum_offload_round_trips_and_bad_checksums_are_flagged_not_dropped(dut):
    """IPv4/IPv6 x TCP/UDP: VF0 leaves the checksums to the device; the link partner gets frames
    scapy finds valid (and equal to the reference's), VF1 gets them flagged good. Frames with wrong
    checksums from the link arrive flagged bad; fragments and other protocols are not checked."""
    sys_, vfs = await up(dut)
    sender, receiver = vfs
    await sender.netdev.set_features(tx_checksum=True)
    await receiver.netdev.set_features(rx_checksum=True)
    tap = Tap(receiver.netdev)
    n = 0
    for v6 in (False, True):
        for l4 in (TCP, UDP):
            n += 1
            out = csum_frame(sender.mac, PARTNER, v6, l4, n)
            assert not valid_per_scapy(out)
            assert await sender.start_xmit(out, offload=TxOffload(csum=True))
            (wire,) = await uplink_frames(sys_, 1)
            assert valid_per_scapy(wire) and wire == ref.tx_predict(out, ref.TxRequest(csum=True))[0]
            inside = csum_frame(sender.mac, receiver.mac, v6, l4, n)
            assert await sender.start_xmit(inside, offload=TxOffload(csum=True))
            (_, got, info), *_ = await tap.wait(1)
            tap.got.clear()
            assert valid_per_scapy(got)
            assert (info.ip_checksum, info.l4_checksum) == (None if v6 else "good", "good")
    # wrong checksums from the link partner: delivered, flagged
    good = ref.tx_predict(csum_frame(PARTNER, receiver.mac, False, TCP, 9), ref.TxRequest(csum=True))[0]
    bad_l4, bad_ip = bytearray(good), bytearray(good)
    bad_l4[-1] ^= 0x55
    bad_ip[14 + 8] ^= 0x01  # TTL: the header checksum no longer holds
    bad6 = bytearray(ref.tx_predict(csum_frame(PARTNER, receiver.mac, True, UDP, 10), ref.TxRequest(csum=True))[0])
    bad6[-3] ^= 0x10
    frag = bytes(
        Ether(src=mac(PARTNER), dst=mac(receiver.mac)) / IP(src="10.0.0.9", dst="10.0.0.1", frag=20) / Raw(bytes(64))
    )
    icmp6 = bytes(Ether(src=mac(PARTNER), dst=mac(receiver.mac)) / IPv6(src="::9", dst="::1", nh=58) / Raw(bytes(32)))
    expected = [("good", "bad"), ("bad", "good"), (None, "bad"), ("good", None), (None, None)]
    for frame in (bad_l4, bad_ip, bad6, frag, icmp6):
        await sys_.nic.uplink.send(bytes(frame))
    got = await tap.wait(len(expected))
    assert [(info.ip_checksum, info.l4_checksum) for _, _, info in got] == expected
    assert [f for _, f, _ in got] == [bytes(x) for x in (bad_l4, bad_ip, bad6, frag, icmp6)]
    for (_, frame, _info), exp in zip(got, expected):
        predicted = ref.rx_predict(frame, ref.RxView(rxcsum=True))
        assert (predicted.ip_checksum, predicted.l4_checksum) == exp
    assert sum(s.csum_errors for (q, kind), s in receiver.netdev.queue_stats.items() if kind == "rx") == 3


def tso_frame(src_mac: bytes, dst_mac: bytes, v6: bool, total: int = 65536) -> bytes:
    ip = IPv6(src="2001:db8::2", dst="2001:db8::1") if v6 else IP(src="10.0.0.2", dst="10.0.0.1", id=0xFFFE)
    headers = (
        Ether(src=mac(src_mac), dst=mac(dst_mac))
        / ip
        / TCP(
            sport=33000,
            dport=5201,
            seq=0xFFFF0000,
            ack=7,
            flags="FPA",
            options=[("NOP", None), ("NOP", None), ("Timestamp", (1, 2))],
        )
    )
    rng = random.Random(total)
    return bytes(headers / Raw(bytes(rng.getrandbits(8) for _ in range(total - len(headers)))))


@cocotb.test()
async def tso_of_a_64k_frame_at_mss_1448_yields_46_valid_segments(dut):
    """A 64 KiB TCP frame (IPv4, then IPv6) with gso_size 1448: the partner gets 46 segments,
    each equal to scapy's own segmentation of the frame; together a contiguous stream with the
    whole payload, IPv4 IDs counting up, FIN/PSH on the last only, every checksum valid."""
    sys_, vfs = await up(dut)
    vf = vfs[0]
    await vf.netdev.set_features(tso=True)
    for v6 in (False, True):
        frame = tso_frame(vf.mac, PARTNER, v6)
        assert len(frame) == 65536
        before = await vf.read_reg(regs.by_name("STAT_TX_PACKETS"))
        assert await vf.start_xmit(frame, offload=TxOffload(gso_size=1448))
        wire = await uplink_frames(sys_, 46)
        assert len(wire) == 46 and await sys_.nic.uplink.recv(timeout_ns=50_000) is None
        assert wire == ref.tx_segments(frame, 1448)
        first = Ether(frame)
        seq, payload = first[TCP].seq, b""
        for k, raw in enumerate(wire):
            seg = Ether(raw)
            assert valid_per_scapy(raw) and len(raw) <= 14 + (40 if v6 else 20) + 32 + 1448
            assert seg[TCP].seq == seq % (1 << 32)
            last = k == len(wire) - 1
            assert bool(seg[TCP].flags.F) == last and bool(seg[TCP].flags.P) == last
            if not v6:
                assert seg[IP].id == (0xFFFE + k) & 0xFFFF
            payload += bytes(seg[TCP].payload)
            seq += len(seg[TCP].payload)
        assert payload == bytes(first[TCP].payload)
        assert await vf.read_reg(regs.by_name("STAT_TX_PACKETS")) - before == 46
    await Timer(20, "us")
    vf.netdev.tx[0].clean(256)
    assert not vf.netdev.tx[0].mapped  # the frames' own mappings are gone with their descriptors


@cocotb.test()
async def vlan_insert_strip_and_port_vlan_precedence(dut):
    """txvlan inserts the stack's tag; rxvlan strips and reports it. A port VLAN takes precedence:
    the VF's requested tag is ignored (the frame leaves with the port's VID only), a frame it tags
    itself is dropped, and its receive side sees the port's frames untagged with nothing stripped."""
    sys_, vfs = await up(dut, num_vfs=3)
    a, b, c = vfs
    for vf in vfs:
        await vf.netdev.set_features(txvlan=True, rxvlan=True)
    assert (await b.request(Opcode.SET_VLAN, [mbx.VLAN_ADD.put(100, 1)])).ack
    tap_b, tap_c = Tap(b.netdev), Tap(c.netdev)
    plain = csum_frame(a.mac, b.mac, False, UDP, 1, 64)
    assert await a.start_xmit(plain, offload=TxOffload(vlan=0x2064))  # PCP 1, VID 100
    (_, got, info), *_ = await tap_b.wait(1)
    assert got == plain and info.vlan == 0x2064
    out = csum_frame(a.mac, PARTNER, False, UDP, 2, 64)
    assert await a.start_xmit(out, offload=TxOffload(vlan=100))
    (wire,) = await uplink_frames(sys_, 1)
    assert wire == ref.tx_predict(out, ref.TxRequest(vlan=100))[0] and Ether(wire)[Dot1Q].vlan == 100
    # port VLAN 10 on VF c: its request for VID 300 is overridden by the port's tag
    await sys_.pf.set_vf_vlan(c.vf_index, 10)
    out = csum_frame(c.mac, PARTNER, False, UDP, 3, 64)
    assert await c.start_xmit(out, offload=TxOffload(vlan=300))
    (wire,) = await uplink_frames(sys_, 1)
    assert Ether(wire)[Dot1Q].vlan == 10 and not Ether(wire)[Dot1Q].payload.haslayer(Dot1Q)
    assert wire[:12] + wire[16:] == out
    drops = await sys_.pf.read_reg(regs.by_name("SW_DROP_VLAN"))
    assert await c.start_xmit(bytes(Ether(src=mac(c.mac), dst=mac(PARTNER)) / Dot1Q(vlan=300) / Raw(bytes(50))))
    assert await uplink_frames(sys_, 1, 50_000) == []
    assert await sys_.pf.read_reg(regs.by_name("SW_DROP_VLAN")) == drops + 1
    inbound = bytes(Ether(src=mac(PARTNER), dst=mac(c.mac)) / Dot1Q(vlan=10) / IP() / UDP() / Raw(bytes(40)))
    await sys_.nic.uplink.send(inbound)
    (_, got, info), *_ = await tap_c.wait(1)
    assert got == inbound[:12] + inbound[16:] and info.vlan is None


async def dma_chain(vf, frame: bytes, split: int | tuple | None = None) -> list[tuple[int, int]]:
    """``frame`` in the VF's own DMA memory, as (IOVA, length) buffers: of ``split`` bytes each, or
    of the sizes a tuple gives (the last taking the rest)."""
    buf, iova = vf.dma.dma_alloc_coherent(len(frame) + 4096)
    buf.write(0, frame)
    if isinstance(split, tuple):
        cuts = [0, *[sum(split[: k + 1]) for k in range(len(split))], len(frame)]
        return [(iova + a, b - a) for a, b in zip(cuts, cuts[1:])]
    size = split or len(frame)
    return [(iova + off, len(frame[off : off + size])) for off in range(0, len(frame), size)]


def writebacks(sys_, vf, queue: int) -> list:
    """Every TX write-back of ``vf``'s queue ``queue``, as the device publishes them."""
    out = []
    fn = device.vf_port(vf.vf_index)
    sys_.nic.events.subscribe(
        ev.Writeback, lambda e: out.append(e) if (e.fn, e.queue, e.rx) == (fn, queue, False) else None
    )
    return out


def raw_chain(buffers, ctx: TxContext | None, offloads: int, ctx_at: int = 0) -> list[bytes]:
    descs = [
        d.tx_desc(addr, length, eop=k == len(buffers) - 1, offloads=offloads if k == 0 else 0)
        for k, (addr, length) in enumerate(buffers)
    ]
    if ctx is not None:
        descs.insert(ctx_at, ctx.encode())
    return descs


@cocotb.test()
async def bad_offload_requests_are_refused_and_nothing_is_sent(dut):
    """Each bad request completes every descriptor of its frame with ERR_OFFLOAD, sends nothing,
    counts in QERR_COUNT and STAT_TX_ERRORS, and leaves the queue running; the reference predicts
    the refusal from the descriptors alone."""
    sys_, vfs = await up(dut)
    vf = vfs[0]
    await vf.netdev.set_features(tso=True, tx_checksum=True)
    decisions = []
    sys_.nic.events.subscribe(ev.SwitchDecision, decisions.append)
    refused = []
    sys_.nic.events.subscribe(ev.TxOffload, lambda e: refused.append(e.error) if e.error else None)
    wbs = writebacks(sys_, vf, 1)
    ring = vf.netdev.tx[1]
    frame = tso_frame(vf.mac, PARTNER, False, total=4000)
    hdr = 14 + 20 + 32
    ok_ctx = TxContext(14, 20, 32, False, L4Type.TCP, 1000)
    huge = tso_frame(vf.mac, PARTNER, False, total=65536) + bytes(hdr + 1)  # payload over the limit
    cases = {
        "mss_zero": (frame, None, TxContext(14, 20, 32, False, L4Type.TCP, 0), d.TX_CMD_TSE.mask, OffloadError.MSS),
        "headers_beyond_first_buffer": (frame, (40,), ok_ctx, d.TX_CMD_TSE.mask, OffloadError.HEADER_SPLIT),
        "total_over_limit": (huge, 16384, ok_ctx, d.TX_CMD_TSE.mask, OffloadError.TSO_LENGTH),
        "offsets_outside_the_frame": (
            frame[:80],
            None,
            TxContext(14, 70, 0, False, L4Type.TCP),
            d.TX_CMD_TXSM.mask,
            OffloadError.OFFSETS,
        ),
        "checksum_without_context": (frame[:200], None, None, d.TX_CMD_TXSM.mask, OffloadError.NO_CONTEXT),
    }
    stats = regs.by_name("STAT_TX_ERRORS")
    for name, (data, split, ctx, offloads, reason) in cases.items():
        buffers = await dma_chain(vf, data, split)
        descs = raw_chain(buffers, ctx, offloads)
        chain = [ref.ChainDesc(context=ctx)] * (ctx is not None) + [
            ref.ChainDesc(length, k == len(buffers) - 1, offloads if k == 0 else 0)
            for k, (_, length) in enumerate(buffers)
        ]
        assert ref.tx_refusal(chain, ref.Permits(True, True, True)) == ref.Refusal("ERR_OFFLOAD", reason), name
        seen, qerr, errors = len(decisions), await vf.read_reg(regs.QERR_COUNT, 1), await vf.read_reg(stats)
        wbs.clear()
        await ring.post_raw(descs)
        await Timer(30, "us")
        statuses = [wb.status for wb in wbs]
        assert statuses == [d.STATUS_DD.mask | d.STATUS_ERR_OFFLOAD.mask] * len(descs), (name, statuses)
        assert len(decisions) == seen and await sys_.nic.uplink.recv(timeout_ns=1000) is None, name
        assert await vf.read_reg(regs.QERR_COUNT, 1) == qerr + 1 and await vf.read_reg(stats) == errors + 1
        assert refused[-1] == reason
        assert regs.TXDCTL.field("ENABLE").get(await vf.read_reg(regs.TXDCTL, 1)), "queue stopped"
    # the queue still sends: a good TSO frame after the refused ones
    buffers = await dma_chain(vf, frame, 2048)
    await ring.post_raw(raw_chain(buffers, ok_ctx, d.TX_CMD_TSE.mask))
    wire = await uplink_frames(sys_, 4)
    assert wire == ref.tx_segments(frame, 1000)


@cocotb.test()
async def offloads_are_negotiated_through_the_mailbox_and_policed_by_the_pf(dut):
    """GET_OFFLOADS says what the PF allows; what it forbids cannot be turned on (NACK POLICY)
    and a VF that uses it anyway is refused by the device; bad RSS parameters are NACKed;
    a VF speaking the old API works without offloads and is NACKed UNSUPPORTED_API."""
    sys_, vfs = await up(dut, num_vfs=3)
    a, b, c = vfs
    assert a.api_version == mbx.API_VERSION and a.offload_caps == mbx.ALL_OFFLOADS
    assert set(a.netdev.get_features().values()) == {False}
    await a.netdev.set_features(tso=True, rxhash=True)
    assert a.netdev.get_features()["tso"]
    info = sys_.pf.vf_info(a.vf_index)
    assert info.offloads == Offload.TSO | Offload.RSS
    fn = device.vf_port(a.vf_index)
    assert regs.FN_OFFLOAD.field("TSO").get(await sys_.pf.read_reg(regs.FN_OFFLOAD, fn))
    # the administrator forbids TSO: turned off at once; asking again is refused
    await sys_.pf.set_vf_offloads(a.vf_index, mbx.ALL_OFFLOADS & ~Offload.TSO)
    assert not regs.FN_OFFLOAD.field("TSO").get(await sys_.pf.read_reg(regs.FN_OFFLOAD, fn))
    # a full rate-limit bucket, so that the NACK below is the policy's (on the fast fabric
    # the exchanges above took next to no simulated time)
    await Timer(mbx.MBX_RATE_BURST * mbx.MBX_RATE_REFILL_NS, "ns")
    reply = await a.request(Opcode.SET_OFFLOADS, [int(Offload.TSO)])
    assert reply.nack and reply.payload == [MbxError.POLICY]
    try:
        await a.netdev.set_features(rx_checksum=True)  # still thinks TSO is on: the PF refuses
        raise AssertionError("the PF accepted TSO")
    except VfError:
        pass
    reply = await a.request(Opcode.GET_OFFLOADS)
    assert reply.ack and Offload(reply.payload[0]) == mbx.ALL_OFFLOADS & ~Offload.TSO
    assert reply.payload[1:] == [device.RSS_KEY_SIZE, device.RSS_RETA_SIZE]
    # ... and a TSE descriptor sent anyway is the device's to refuse
    frame = tso_frame(a.mac, PARTNER, False, total=3000)
    buffers = await dma_chain(a, frame)
    wbs = writebacks(sys_, a, 1)
    await a.netdev.tx[1].post_raw(raw_chain(buffers, TxContext(14, 20, 32, False, L4Type.TCP, 1000), d.TX_CMD_TSE.mask))
    await Timer(20, "us")
    assert [wb.status for wb in wbs] == [d.STATUS_DD.mask | d.STATUS_ERR_OFFLOAD.mask] * 2
    assert await sys_.nic.uplink.recv(timeout_ns=1000) is None
    # parameters out of range
    for opcode, payload, error in (
        (Opcode.CONFIG_RSS_LUT, regs.reta_words([device.VF_QUEUE_PAIRS] * device.RSS_RETA_SIZE), MbxError.INVALID),
        (Opcode.CONFIG_RSS_KEY, [0] * (mbx.RSS_KEY_DWORDS - 1), MbxError.BAD_LENGTH),
        (Opcode.SET_RSS_HENA, [1 << 6], MbxError.INVALID),
        (Opcode.SET_OFFLOADS, [1 << 7], MbxError.INVALID),
    ):
        await Timer(mbx.MBX_RATE_REFILL_NS, "ns")
        reply = await b.request(opcode, payload)
        assert reply.nack and reply.payload == [error], (opcode, reply)
    # RSS forbidden: its messages are refused
    await sys_.pf.set_vf_offloads(b.vf_index, Offload.RXCSUM)
    reply = await b.request(Opcode.CONFIG_RSS_KEY, [0] * mbx.RSS_KEY_DWORDS)
    assert reply.nack and reply.payload == [MbxError.POLICY]
    # an old-API guest on VF c: no offloads offered, plain traffic works
    await c.remove()
    await pcicore.pci_reset_function(c.pdev)  # as System.rebind_vf, with an old guest driver
    old = VfDriver(c.pdev, api_version=(1, 1))
    await old.probe()
    await old.open(64)
    assert old.api_version == (1, 1) and old.offload_caps == Offload(0)
    try:
        await old.netdev.set_features(tso=True)
        raise AssertionError("an old-API VF turned TSO on")
    except FeatureError:
        pass
    reply = await old.request(Opcode.GET_OFFLOADS)
    assert reply.nack and reply.payload == [MbxError.UNSUPPORTED_API]
    tap = Tap(old.netdev)
    pkt = csum_frame(a.mac, old.mac, False, UDP, 5, 100)
    pkt = ref.tx_predict(pkt, ref.TxRequest(csum=True))[0]
    assert await a.start_xmit(pkt)
    (_, got, info), *_ = await tap.wait(1)
    assert got == pkt and info.l4_checksum is None and info.rss_type == RssType.NONE

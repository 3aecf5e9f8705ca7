"""The device's offloads (model/core/offload) and the testbench's reference of them
(tb/uvm/offload_reference.py), without a simulator: the published Toeplitz vectors, checksums
and segments against scapy's own computation, every documented refusal, and random input
(hostile field values, truncated frames) that must never raise."""

import random

import pytest
from nic_fakes import CoreRig, bus_write, program
from scapy.layers.inet import IP, TCP, UDP, in4_chksum
from scapy.layers.inet6 import IPv6, in6_chksum
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Padding, Raw
from scapy.utils import checksum as inet_checksum

from datasheet import descriptors as d
from datasheet import device, regs
from datasheet.descriptors import L4Type, OffloadError, RssType, TxContext, hena_of
from datasheet.mailbox import ALL_OFFLOADS, Offload
from model import events as ev
from model.core.offload import packet, rss, rx, tx
from model.core.offload.config import FnOffloads
from model.core.switch import PORT_UPLINK
from netdev.offload import FeatureError, RssConfig, TxOffload, tx_request
from tb.uvm import offload_reference as ref
from tb.uvm.offload_sequences import offload_frame

#: "Verifying the RSS Hash Calculation" (Microsoft network driver documentation)
MS_KEY = bytes.fromhex("6d5a56da255b0ec24167253d43a38fb0d0ca2bcbae7b30b477cb2da38030f20c6a42b73bbeac01fa")
#: (destination, destination port, source, source port, address-only hash, with-TCP hash)
IPV4_VECTORS = [
    ("161.142.100.80", 1766, "66.9.149.187", 2794, 0x323E8FC2, 0x51CCC178),
    ("65.69.140.83", 4739, "199.92.111.2", 14230, 0xD718262A, 0xC626B0EA),
    ("12.22.207.184", 38024, "24.19.198.95", 12898, 0xD2D0A5DE, 0x5C2B394A),
    ("209.142.163.6", 2217, "38.27.205.30", 48228, 0x82989176, 0xAFC7327F),
    ("202.188.127.2", 1303, "153.39.163.191", 44251, 0x5D1809C5, 0x10E828A2),
]
IPV6_VECTORS = [
    ("3ffe:2501:200:3::1", 1766, "3ffe:2501:200:1fff::7", 2794, 0x2CC18CD5, 0x40207D3D),
    ("ff02::1", 4739, "3ffe:501:8::260:97ff:fe40:efab", 14230, 0x0F0C461C, 0xDDE51BBF),
    ("fe80::200:f8ff:fe21:67cf", 38024, "3ffe:1900:4545:3:200:f8ff:fe21:67cf", 44251, 0x4B61E985, 0x02D1FEEF),
]
ALL_TYPES = frozenset(RssType) - {RssType.NONE}
MAC_A, MAC_B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"


def config(**kw) -> FnOffloads:
    base = dict(
        hash_types=frozenset(),
        key=MS_KEY,
        table=tuple(q % 4 for q in range(device.RSS_RETA_SIZE)),
        rxcsum=False,
        rxvlan=False,
        txcsum=True,
        tso=True,
        txvlan=True,
    )
    base.update(kw)
    return FnOffloads(**base)


def view(**kw) -> ref.RxView:
    base = dict(key=MS_KEY, table=tuple(q % 4 for q in range(device.RSS_RETA_SIZE)))
    base.update(kw)
    return ref.RxView(**base)


def tcp_frame(dst, dport, src, sport, v6=False, payload=b"x" * 20, l4=TCP, vlan=None) -> bytes:
    ip = IPv6(src=src, dst=dst) if v6 else IP(src=src, dst=dst)
    eth = Ether(src=MAC_A, dst=MAC_B)
    if vlan is not None:
        eth = eth / Dot1Q(vlan=vlan)
    return bytes(eth / ip / l4(sport=sport, dport=dport) / Raw(payload))


# -- RSS -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("vector", IPV4_VECTORS + IPV6_VECTORS)
def test_toeplitz_verification_vectors(vector):
    """The model's and the reference's Toeplitz give Microsoft's published hashes, over the input
    the documents define (source address, destination address, source port, destination port),
    and so does the whole receive path on a frame carrying that flow."""
    dst, dport, src, sport, address_only, with_tcp = vector
    frame = tcp_frame(dst, dport, src, sport, v6=":" in dst)
    ip = packet.parse(frame)
    tcp_type = RssType.IPV6_TCP if ip.ipv6 else RssType.IPV4_TCP
    for kind, want in ((RssType.IPV6 if ip.ipv6 else RssType.IPV4, address_only), (tcp_type, with_tcp)):
        data = rss.hash_input(frame, ip, kind)
        assert rss.toeplitz(MS_KEY, data) == want
        assert ref.toeplitz(MS_KEY, data) == want
    got = rx.receive(frame, config(hash_types=ALL_TYPES))
    assert (got.rss_hash, got.rss_type) == (with_tcp, tcp_type)
    assert ref.rss_of(frame, view(hash_types=ALL_TYPES)) == (got.rss_type, with_tcp)
    only = rx.receive(frame, config(hash_types=frozenset({RssType.IPV4, RssType.IPV6})))
    assert only.rss_hash == address_only


def test_rss_queue_is_the_indirection_tables_entry_and_non_ip_goes_to_the_default_queue():
    table = tuple(random.Random(1).randrange(4) for _ in range(device.RSS_RETA_SIZE))
    cfg = config(hash_types=ALL_TYPES, table=table)
    for n in range(200):
        frame = tcp_frame("10.0.0.1", 80, f"10.1.{n // 250}.{n % 250}", 1000 + n, l4=UDP)
        got = rx.receive(frame, cfg)
        assert got.queue == table[got.rss_hash % 64] and got.rss_type is RssType.IPV4_UDP
    arp = bytes(Ether(src=MAC_A, dst="ff:ff:ff:ff:ff:ff", type=0x0806) / Raw(bytes(28)))
    got = rx.receive(arp, cfg)
    assert (got.queue, got.rss_type, got.rss_hash) == (None, RssType.NONE, 0)


def test_hash_type_falls_back_to_addresses_then_none():
    frame = tcp_frame("10.0.0.1", 80, "10.0.0.2", 1234)
    assert rx.receive(frame, config(hash_types=frozenset({RssType.IPV4}))).rss_type is RssType.IPV4
    assert rx.receive(frame, config(hash_types=frozenset({RssType.IPV6_TCP}))).rss_type is RssType.NONE
    frag = bytes(Ether() / IP(src="10.0.0.2", dst="10.0.0.1", flags="MF") / UDP() / Raw(b"z" * 30))
    assert rx.receive(frag, config(hash_types=ALL_TYPES)).rss_type is RssType.IPV4


# -- RX checksums ------------------------------------------------------------------------------------
@pytest.mark.parametrize("v6", [False, True])
@pytest.mark.parametrize("l4", [TCP, UDP])
def test_rx_checksums_good_and_bad_are_flagged_not_dropped(v6, l4):
    good = tcp_frame("2001:db8::1" if v6 else "10.0.0.1", 80, "2001:db8::2" if v6 else "10.0.0.2", 5000, v6, l4=l4)
    cfg = config(rxcsum=True)
    res = rx.receive(good, cfg)
    want_ip = 0 if v6 else d.STATUS_IPCS.mask
    assert res.status == want_ip | d.STATUS_L4CS.mask and res.frame == good
    bad_l4 = bytearray(good)
    bad_l4[-1] ^= 0xFF  # payload byte: the transport checksum no longer matches
    res = rx.receive(bytes(bad_l4), cfg)
    assert res.status == want_ip | d.STATUS_L4CS.mask | d.STATUS_L4E.mask
    exp = ref.rx_predict(bytes(bad_l4), view(rxcsum=True))
    assert (exp.ip_checksum, exp.l4_checksum) == (None if v6 else "good", "bad")
    if not v6:
        bad_ip = bytearray(good)
        bad_ip[14 + 8] ^= 1  # TTL
        res = rx.receive(bytes(bad_ip), cfg)
        assert res.status & d.STATUS_IPE.mask and res.status & d.STATUS_IPCS.mask
        assert ref.rx_predict(bytes(bad_ip), view(rxcsum=True)).ip_checksum == "bad"


def test_not_checked_fragments_unknown_l4_udp_without_checksum_non_ip():
    cfg, v = config(rxcsum=True), view(rxcsum=True)
    frag = bytes(Ether() / IP(src="10.0.0.2", dst="10.0.0.1", frag=10) / Raw(b"q" * 40))
    icmp6 = bytes(Ether() / IPv6(src="::1", dst="::2", nh=58) / Raw(b"q" * 40))
    udp0 = bytearray(tcp_frame("10.0.0.1", 53, "10.0.0.2", 5353, l4=UDP))
    udp0[14 + 20 + 6 : 14 + 20 + 8] = b"\0\0"
    arp = bytes(Ether(type=0x0806) / Raw(bytes(28)))
    for frame, status in (
        (frag, d.STATUS_IPCS.mask),
        (icmp6, 0),
        (bytes(udp0), d.STATUS_IPCS.mask),
        (arp, 0),
    ):
        assert rx.receive(frame, cfg).status == status
        exp = ref.rx_predict(frame, v)
        assert exp.l4_checksum is None


def test_rx_vlan_strip_reports_the_tag_then_parses_the_inner_frame():
    tagged = tcp_frame("10.0.0.1", 80, "10.0.0.2", 4000, vlan=100)
    res = rx.receive(tagged, config(rxvlan=True, rxcsum=True))
    assert res.status & d.STATUS_VP.mask and res.vlan == 100 and len(res.frame) == len(tagged) - 4
    assert res.status & d.STATUS_L4CS.mask and not res.status & d.STATUS_L4E.mask
    assert ref.rx_predict(tagged, view(strip=True)).frame == res.frame
    kept = rx.receive(tagged, config(rxcsum=True))  # strip off: the tagged frame is still parsed
    assert kept.frame == tagged and kept.status & d.STATUS_L4CS.mask and not kept.status & d.STATUS_VP.mask


def scapy_l4_verdict(frame: bytes) -> str | None:
    """The transport checksum verdict as scapy dissects and verifies the frame (None: not a
    TCP/UDP segment it checks: fragments, other protocols, a UDP/IPv4 datagram sent without one)."""
    pkt = Ether(frame)
    ip = pkt[IP] if IP in pkt else pkt[IPv6] if IPv6 in pkt else None
    if ip is None or (IP in pkt and (ip.frag or ip.flags.MF)):
        return None
    l4 = pkt[TCP] if TCP in pkt else pkt[UDP] if UDP in pkt else None
    if l4 is None or (UDP in pkt and IP in pkt and l4.chksum == 0):
        return None
    segment = bytes(l4)  # with the Ethernet padding after it, which the checksum does not cover
    if Padding in pkt:
        segment = segment[: -len(pkt[Padding].load)]
    value = (in4_chksum if IP in pkt else in6_chksum)(6 if TCP in pkt else 17, ip, segment)
    return "good" if value == 0 else "bad"


def test_the_reference_reads_and_fills_frames_as_scapy_does():
    """The reference reads headers with ``struct``: its verdicts, classes and the checksums it fills
    (IPv4 header, TCP/UDP over the pseudo-header) and tags it inserts are scapy's, on the
    environment's frames of every L3/L4 class, tagged or not, with good and spoiled checksums,
    with Ethernet padding."""
    v = view(rxcsum=True, hash_types=ALL_TYPES)
    for case in range(600):
        rng = random.Random(case)
        kind = rng.choice(ref.L3L4_CLASSES)
        vlan, bad = rng.choice([None, None, 100]), rng.choice([None, "ip", "l4"])
        frame = offload_frame(kind, bytes(6), bytes(range(6)), case, rng, rng.choice([60, 300, 1400]), bad, vlan)
        frame += bytes(rng.choice([0, 0, 7]))  # padding after the IP packet
        pkt = Ether(frame)
        exp = ref.rx_predict(frame, v)
        assert exp.l4_checksum == scapy_l4_verdict(frame), (kind, case)
        if IP in pkt:
            assert exp.ip_checksum == ("good" if inet_checksum(bytes(pkt[IP])[: pkt[IP].ihl * 4]) == 0 else "bad")
        filled = pkt.copy()
        if IP in filled:
            del filled[IP].chksum
        for layer in (TCP, UDP):
            if layer in filled:
                del filled[layer].chksum
        assert ref.tx_predict(frame, ref.TxRequest(csum=True)) == [bytes(filled)], (kind, case)
        eth = Ether(frame)
        tagged = Ether(dst=eth.dst, src=eth.src, type=0x8100) / Dot1Q(prio=5, dei=1, vlan=42, type=eth.type)
        assert ref.tx_predict(frame, ref.TxRequest(vlan=5 << 13 | 1 << 12 | 42)) == [bytes(tagged / eth.payload)]


# -- TX -----------------------------------------------------------------------------------------------
def tx_chain(frame: bytes, ctx: TxContext | None, offloads: int, vlan: int = 0, split: int | None = None) -> list:
    """parse_read tuples of a chain: an optional context descriptor, then the data in buffers of
    ``split`` bytes (one buffer if None)."""
    descs = [(int.from_bytes(ctx.encode()[:8], "little"), ctx.mss, d.TX_CMD_CTX.mask, 0)] if ctx else []
    size = split or len(frame)
    pieces = [frame[i : i + size] for i in range(0, len(frame), size)]
    for k, piece in enumerate(pieces):
        cmd = (offloads if k == 0 else 0) | (d.TX_CMD_EOP.mask if k == len(pieces) - 1 else 0)
        descs.append((0x1000 * (k + 1), len(piece), cmd, vlan if k == 0 else 0))
    return descs


def headers_of(frame: bytes) -> TxContext:
    pkt = Ether(frame)
    v6 = pkt.haslayer(IPv6)
    ip = pkt[IPv6] if v6 else pkt[IP]
    l4 = pkt[TCP] if pkt.haslayer(TCP) else pkt[UDP]
    iplen = 40 if v6 else ip.ihl * 4
    l4len = l4.dataofs * 4 if l4.name == "TCP" else 8
    return TxContext(14, iplen, l4len, v6, L4Type.TCP if l4.name == "TCP" else L4Type.UDP)


ALL_PERMITTED = tx.TxPermits(True, True, True, False)


@pytest.mark.parametrize("v6", [False, True])
@pytest.mark.parametrize("l4", [TCP, UDP])
def test_tx_checksum_insertion_matches_scapy(v6, l4):
    src, dst = ("2001:db8::2", "2001:db8::1") if v6 else ("10.0.0.2", "10.0.0.1")
    pkt = Ether(src=MAC_A, dst=MAC_B) / (IPv6(src=src, dst=dst) if v6 else IP(src=src, dst=dst, chksum=0xDEAD))
    frame = bytes(pkt / l4(sport=1, dport=2, chksum=0xBEEF) / Raw(b"payload" * 30))
    offloads = d.TX_CMD_TXSM.mask | (0 if v6 else d.TX_CMD_IXSM.mask)
    p = tx.plan(tx_chain(frame, headers_of(frame), offloads, split=100), ALL_PERMITTED)
    assert not p.error
    (out,) = tx.apply(p, frame)
    assert out == ref.tx_predict(frame, ref.TxRequest(csum=True))[0]
    sent = Ether(out)
    seg = bytes(sent[l4])
    assert (in6_chksum if v6 else in4_chksum)(6 if l4 is TCP else 17, sent[IPv6 if v6 else IP], seg) == 0
    if not v6:
        assert inet_checksum(bytes(sent[IP])[:20]) == 0


@pytest.mark.parametrize("v6", [False, True])
def test_tso_of_a_64k_frame_at_mss_1448_gives_46_segments_equal_to_scapys(v6):
    """A 64 KiB frame (headers included: its IP length still fits 16 bits) at MSS 1448."""
    src, dst = ("2001:db8::2", "2001:db8::1") if v6 else ("10.0.0.2", "10.0.0.1")
    ip = IPv6(src=src, dst=dst) if v6 else IP(src=src, dst=dst, id=0xFFF0)
    flags = "FPA" if v6 else "PAC"
    headers = (
        Ether(src=MAC_A, dst=MAC_B)
        / ip
        / TCP(sport=40000, dport=80, seq=0xFFFFF000, flags=flags, options=[("NOP", None)] * 4)
    )
    payload = bytes(random.Random(3).getrandbits(8) for _ in range(65536 - len(headers)))
    frame = bytes(headers / Raw(payload))
    ctx = headers_of(frame)
    ctx = TxContext(ctx.maclen, ctx.iplen, ctx.l4len, ctx.ipv6, ctx.l4t, 1448)
    p = tx.plan(tx_chain(frame, ctx, d.TX_CMD_TSE.mask, split=16384), ALL_PERMITTED)
    assert not p.error, p.reason
    segments = tx.apply(p, frame)
    assert len(segments) == 46
    assert segments == ref.tx_segments(frame, 1448)
    seq = 0xFFFFF000
    for k, raw in enumerate(segments):
        seg = Ether(raw)
        tcp = seg[TCP]
        assert tcp.seq == seq % (1 << 32)
        seq += len(tcp.payload)
        last = k == len(segments) - 1
        assert bool(tcp.flags.F) == (last and v6) and bool(tcp.flags.P) == last
        if not v6:
            assert seg[IP].id == (0xFFF0 + k) & 0xFFFF and seg[IP].len == len(raw) - 14
            assert inet_checksum(bytes(seg[IP])[:20]) == 0
        l3 = seg[IPv6] if v6 else seg[IP]
        assert (in6_chksum if v6 else in4_chksum)(6, l3, bytes(tcp)) == 0
    assert b"".join(bytes(Ether(s)[TCP].payload) for s in segments) == payload


def test_vlan_insert_and_port_vlan_precedence():
    frame = tcp_frame("10.0.0.1", 80, "10.0.0.2", 4000)
    p = tx.plan(tx_chain(frame, None, d.TX_CMD_VLE.mask, vlan=0x2064), ALL_PERMITTED)
    (out,) = tx.apply(p, frame)
    assert out[12:16] == b"\x81\x00\x20\x64" and out[:12] + out[16:] == frame
    assert out == ref.tx_predict(frame, ref.TxRequest(vlan=0x2064))[0]
    port_vlan = tx.TxPermits(True, True, False, pvlan=True)  # TXVLAN not even permitted
    p = tx.plan(tx_chain(frame, None, d.TX_CMD_VLE.mask, vlan=7), port_vlan)
    assert not p.error and p.vlan_overridden and tx.apply(p, frame) == [frame]
    assert ref.tx_predict(frame, ref.TxRequest(vlan=7), pvid=10) == [frame]


def good_tso_chain(**ctx_changes):
    frame = tcp_frame("10.0.0.1", 80, "10.0.0.2", 4000, payload=bytes(3000))
    ctx = headers_of(frame)
    fields = dict(maclen=ctx.maclen, iplen=ctx.iplen, l4len=ctx.l4len, ipv6=False, l4t=L4Type.TCP, mss=1000)
    fields.update(ctx_changes)
    return frame, TxContext(**fields)


@pytest.mark.parametrize(
    "case,expect",
    [
        ("mss_zero", OffloadError.MSS),
        ("mss_too_big", OffloadError.MSS),
        ("header_split", OffloadError.HEADER_SPLIT),
        ("offsets_beyond_frame", OffloadError.OFFSETS),
        ("udp_tso", OffloadError.OFFSETS),
        ("no_context", OffloadError.NO_CONTEXT),
        ("context_not_first", OffloadError.CONTEXT),
        ("not_permitted", OffloadError.NOT_PERMITTED),
        ("ixsm_on_ipv6", OffloadError.OFFSETS),
        ("tso_payload_over_limit", OffloadError.TSO_LENGTH),
    ],
)
def test_each_bad_request_is_refused_with_its_reason(case, expect):
    frame, ctx = good_tso_chain()
    permits, chain = ALL_PERMITTED, None
    if case == "mss_zero":
        chain = tx_chain(frame, good_tso_chain(mss=0)[1], d.TX_CMD_TSE.mask)
    elif case == "mss_too_big":
        chain = tx_chain(frame, good_tso_chain(mss=device.MAX_FRAME)[1], d.TX_CMD_TSE.mask)
    elif case == "header_split":
        chain = tx_chain(frame, ctx, d.TX_CMD_TSE.mask, split=40)
    elif case == "offsets_beyond_frame":
        chain = tx_chain(frame[:60], good_tso_chain(iplen=60)[1], d.TX_CMD_IXSM.mask)
    elif case == "udp_tso":
        chain = tx_chain(frame, good_tso_chain(l4t=L4Type.UDP)[1], d.TX_CMD_TSE.mask)
    elif case == "no_context":
        chain = tx_chain(frame, None, d.TX_CMD_TXSM.mask)
    elif case == "context_not_first":
        chain = tx_chain(frame, None, d.TX_CMD_TXSM.mask, split=1000)
        chain.insert(1, tx_chain(frame, ctx, 0)[0])
    elif case == "not_permitted":
        chain, permits = tx_chain(frame, ctx, d.TX_CMD_TSE.mask), tx.TxPermits(True, False, True)
    elif case == "ixsm_on_ipv6":
        chain = tx_chain(frame, good_tso_chain(ipv6=True, iplen=40)[1], d.TX_CMD_IXSM.mask)
    elif case == "tso_payload_over_limit":
        big = frame + bytes(device.TSO_MAX_PAYLOAD)
        chain = tx_chain(big, ctx, d.TX_CMD_TSE.mask, split=16384)
    p = tx.plan(chain, permits)
    assert p.error == d.STATUS_ERR_OFFLOAD.mask and p.offload_error is expect, p.reason
    assert ref.tx_refusal(as_reference(chain), ref.Permits(**vars(permits))) == ref.Refusal("ERR_OFFLOAD", expect)


def as_reference(chain) -> list:
    out = []
    for word, length, cmd, _vlan in chain:
        if d.TX_CMD_CTX.get(cmd):
            out.append(ref.ChainDesc(context=TxContext.decode(word, length)))
        else:
            out.append(ref.ChainDesc(length, bool(d.TX_CMD_EOP.get(cmd)), cmd & d.TX_OFFLOAD_CMDS))
    return out


def test_random_chains_are_judged_as_the_reference_says_and_never_raise():
    """Hostile field values: any context word, MSS, command and lengths. The device's verdict
    equals the reference's, and an accepted chain's data (random bytes) goes through apply()."""
    rng = random.Random(7)
    for _ in range(3000):
        chain = []
        for _ in range(rng.randint(1, 5)):
            if rng.random() < 0.25:
                word, mss = rng.getrandbits(64), rng.choice([0, 1, 63, 64, 536, 1448, 9000, rng.getrandbits(16)])
                if rng.random() < 0.6:  # plausible offsets
                    word = (word & ~0xFFFFFFFF) | rng.choice([14, 18, 0, 13]) | rng.choice([20, 40, 24, 0]) << 8
                    word = (word & ~(0xFF << 24)) | rng.choice([20, 32, 8, 0]) << 24
                chain.append((word, mss, d.TX_CMD_CTX.mask | rng.choice([0, 1]), 0))
            else:
                length = rng.choice([0, 1, 54, 60, 100, 1514, 9018, 9019, 16384, rng.getrandbits(16)])
                cmd = rng.getrandbits(5) & ~d.TX_CMD_EOP.mask
                chain.append((0x1000, length, cmd, rng.getrandbits(16)))
        last = chain[-1]
        chain[-1] = (last[0], last[1], last[2] | d.TX_CMD_EOP.mask, last[3])
        permits = tx.TxPermits(*(rng.random() < 0.7 for _ in range(4)))
        p = tx.plan(chain, permits)
        want = ref.tx_refusal(as_reference(chain), ref.Permits(**vars(permits)))
        got = (
            None
            if not p.error
            else ref.Refusal("ERR_LEN" if p.error == d.STATUS_ERR_LEN.mask else "ERR_OFFLOAD", p.offload_error)
        )
        assert got == want, (chain, permits, p.reason)
        if not p.error and p.length <= 80_000:
            frames = tx.apply(p, bytes(rng.getrandbits(8) for _ in range(p.length)))
            assert all(len(f) <= device.MAX_FRAME + 4 for f in frames)


def test_random_and_truncated_frames_never_raise_and_agree_with_the_reference():
    rng = random.Random(11)
    cfg = config(hash_types=ALL_TYPES, rxcsum=True, rxvlan=True)
    v = view(hash_types=ALL_TYPES, rxcsum=True, strip=True)
    templates = [
        tcp_frame("10.0.0.1", 80, "10.0.0.2", 4000),
        tcp_frame("10.0.0.1", 53, "10.0.0.2", 4000, l4=UDP, vlan=5),
        tcp_frame("2001:db8::1", 80, "2001:db8::2", 4000, v6=True),
        tcp_frame("2001:db8::1", 53, "2001:db8::2", 4000, v6=True, l4=UDP, vlan=6),
    ]
    for _ in range(1500):
        frame = bytearray(rng.choice(templates))
        for _ in range(rng.randint(0, 3)):
            frame[rng.randrange(len(frame))] = rng.getrandbits(8)
        frame = bytes(frame[: rng.randint(0, len(frame))] if rng.random() < 0.4 else frame)
        got = rx.receive(frame, cfg)
        exp = ref.rx_predict(frame, v)
        info = d.RxInfo(got.rss_hash, got.rss_type, got.vlan if got.status & d.STATUS_VP.mask else None, got.status)
        assert (got.frame, got.rss_hash, got.rss_type, info.vlan) == (exp.frame, exp.rss_hash, exp.rss_type, exp.vlan)
        assert (info.ip_checksum, info.l4_checksum) == (exp.ip_checksum, exp.l4_checksum), frame.hex()
        if got.queue is not None:
            assert got.queue == exp.queue


# -- the driver's side: what netdev turns a stack's request into ------------------------------------
def test_netdev_builds_the_context_the_device_needs_and_refuses_disabled_features():

    for v6 in (False, True):
        for l4 in (TCP, UDP):
            frame = tcp_frame(
                "2001:db8::1" if v6 else "10.0.0.1", 80, "2001:db8::2" if v6 else "10.0.0.2", 9, v6, l4=l4
            )
            raw, cmd, _vlan = tx_request(frame, TxOffload(csum=True), ALL_OFFLOADS)
            ctx = TxContext.decode(int.from_bytes(raw[:8], "little"), 0)
            assert ctx == headers_of(frame)
            assert cmd == d.TX_CMD_TXSM.mask | (0 if v6 else d.TX_CMD_IXSM.mask)
            p = tx.plan(tx_chain(frame, ctx, cmd), ALL_PERMITTED)
            assert tx.apply(p, frame) == ref.tx_predict(frame, ref.TxRequest(csum=True))
    tagged = tcp_frame("10.0.0.1", 80, "10.0.0.2", 9, vlan=7)
    raw, cmd, _ = tx_request(tagged, TxOffload(gso_size=1000), ALL_OFFLOADS)
    assert TxContext.decode(int.from_bytes(raw[:8], "little"), 1000).maclen == 18 and cmd == d.TX_CMD_TSE.mask
    for request, missing in ((TxOffload(gso_size=1000), Offload.TSO), (TxOffload(vlan=5), Offload.TXVLAN)):
        with pytest.raises(FeatureError):
            tx_request(tagged, request, ALL_OFFLOADS & ~missing)
    with pytest.raises(FeatureError):
        tx_request(tcp_frame("10.0.0.1", 53, "10.0.0.2", 9, l4=UDP), TxOffload(gso_size=1000), ALL_OFFLOADS)
    with pytest.raises(ValueError):
        RssConfig(key=bytes(39))
    assert RssConfig.spread(3).table[:4] == (0, 1, 2, 0)


# -- the device core: registers the PF writes steer the frames ------------------------------------------
def test_the_core_steers_by_the_registers_the_pf_wrote():
    """FN_OFFLOAD / RSS_KEY / RSS_RETA written on the bus (as the PF driver does) steer a VF's
    frames from the uplink; a rewrite takes effect on the next frame; TX permissions follow
    FN_OFFLOAD and SW_FN_CTRL.PVLAN_EN; a PF reset turns everything off."""
    rig = CoreRig(num_vfs=2)
    vf_mac = bytes.fromhex("025f00000001")
    program(rig, 1, vf_mac)
    deliveries = []
    rig.events.subscribe(ev.Delivery, deliveries.append)
    table = [random.Random(2).randrange(4) for _ in range(device.RSS_RETA_SIZE)]
    for k, word in enumerate(regs.rss_key_words(MS_KEY)):
        bus_write(rig, regs.RSS_KEY, 1 * 10 + k, word)
    for k, word in enumerate(regs.reta_words(table)):
        bus_write(rig, regs.RSS_RETA, 1 * 8 + k, word)
    fields = {f.name: f.mask for f in regs.FN_OFFLOAD.fields}
    bus_write(rig, regs.FN_OFFLOAD, 1, hena_of(ALL_TYPES) | fields["RXCSUM"] | fields["TSO"])
    view = ref.RxView(ALL_TYPES, MS_KEY, tuple(table), rxcsum=True)
    frames = [tcp_frame(f"10.0.{n}.1", 80, "10.9.9.9", 1000 + n, l4=UDP) for n in range(40)]
    frames = [bytes(Ether(dst=vf_mac.hex(":"), src=MAC_A) / Ether(f).payload) for f in frames]
    for frame in frames:
        rig.switch.forward(frame, PORT_UPLINK)
    assert len(deliveries) == len(frames)
    for e, frame in zip(deliveries, frames):
        exp = ref.rx_predict(frame, view)
        assert (e.fn, e.queue, e.rss_hash, e.rss_type) == (1, exp.queue, exp.rss_hash, exp.rss_type)
        assert e.status == d.STATUS_IPCS.mask | d.STATUS_L4CS.mask
    bus_write(rig, regs.RSS_RETA, 1 * 8, 0x33333333)  # entries 0-7 now queue 3
    deliveries.clear()
    rig.switch.forward(frames[0], PORT_UPLINK)
    want = 3 if deliveries[0].rss_hash % 64 < 8 else table[deliveries[0].rss_hash % 64]
    assert deliveries[0].queue == want
    vf = rig.function(1)
    assert vf.queues.tx_permits() == tx.TxPermits(txcsum=False, tso=True, txvlan=False, pvlan=False)
    program(rig, 1, vf_mac, pvid=10)
    assert vf.queues.tx_permits().pvlan
    rig.pf.software_reset()
    deliveries.clear()
    program(rig, 1, vf_mac)
    rig.switch.forward(frames[0], PORT_UPLINK)
    assert (deliveries[0].queue, deliveries[0].rss_type, deliveries[0].status) == (0, RssType.NONE, 0)


def test_tso_takes_a_payload_of_exactly_64k_and_no_more():
    """TSO_MAX_PAYLOAD bytes of payload plus headers (the input's own IP length cannot hold it:
    the device rewrites every segment's): 46 segments at MSS 1448; one byte more is refused."""
    headers = bytes(Ether(src=MAC_A, dst=MAC_B) / IP(src="10.0.0.2", dst="10.0.0.1") / TCP(seq=1, flags="A"))
    payload = bytes(random.Random(9).getrandbits(8) for _ in range(device.TSO_MAX_PAYLOAD))
    ctx = TxContext(14, 20, 20, False, L4Type.TCP, 1448)
    p = tx.plan(tx_chain(headers + payload, ctx, d.TX_CMD_TSE.mask, split=16384), ALL_PERMITTED)
    segments = tx.apply(p, headers + payload)
    assert len(segments) == 46 and b"".join(bytes(Ether(s)[TCP].payload) for s in segments) == payload
    assert all(inet_checksum(bytes(Ether(s)[IP])[:20]) == 0 for s in segments)
    p = tx.plan(tx_chain(headers + payload + b"!", ctx, d.TX_CMD_TSE.mask, split=16384), ALL_PERMITTED)
    assert p.offload_error is OffloadError.TSO_LENGTH

"""The testbench's frame builders (tb/uvm/sequences.py, tb/uvm/offload_sequences.py, the
campaign's victim frames in tb/fuzz/victims.py, all over tb/uvm/frames.py) write the bytes
scapy would build."""

import random

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw

from datasheet.mailbox import mac_str
from tb.fuzz.victims import MAGIC, tagged
from tb.uvm import offload_reference as offref
from tb.uvm.offload_sequences import EXPERIMENTAL_ETHERTYPE, garbage_checksums, offload_frame, tso_frame
from tb.uvm.sequences import GROUPS, PARTNER_MAC, build_frame


def scapy_frame(src: bytes, dst: bytes, length: int, vid: int | None, serial: int) -> bytes:
    pkt = Ether(src=mac_str(src), dst=mac_str(dst), type=0x8100 if vid is not None else 0x0800)
    if vid is not None:
        pkt = pkt / Dot1Q(vlan=vid, prio=0, dei=0, type=0x0800)
    pkt = (
        pkt
        / IP(src="10.0.0.1", dst="10.0.0.2", id=serial & 0xFFFF, ttl=64, flags=0, frag=0, tos=0)
        / UDP(sport=1024 + serial % 50000, dport=4789)
    )
    pad = max(length - len(bytes(pkt)) - 8, 0)
    return bytes(pkt / (serial.to_bytes(8, "big") + bytes((serial + k) & 0xFF for k in range(pad))))


def test_frames_match_scapy_byte_for_byte():
    rng = random.Random(7)
    for _ in range(400):
        src = bytes([0x02, *rng.randbytes(5)])
        dst = rng.choice([PARTNER_MAC, *GROUPS, b"\xff" * 6, bytes([0x02, *rng.randbytes(5)])])
        length = rng.choice([1, 50, 54, 58, 60, 61, 1514, 1518, 9000, rng.randint(40, 9018)])
        vid = rng.choice([None, None, 10, 20, 4000])
        serial = rng.randrange(1 << 20)
        assert build_frame(src, dst, length, vid, serial) == scapy_frame(src, dst, length, vid, serial)


def scapy_victim_frame(src: bytes, dst: bytes, serial: int, size: int) -> bytes:
    head = (
        Ether(src=mac_str(src), dst=mac_str(dst))
        / IP(src="10.1.0.1", dst="10.1.0.2", id=serial & 0xFFFF)
        / UDP(sport=7000, dport=7001)
    )
    body = MAGIC + serial.to_bytes(8, "big")
    return bytes(head / (body + bytes(max(size - len(head) - len(body), 0))))


def test_victim_frames_match_scapy_byte_for_byte():
    rng = random.Random(11)
    for _ in range(200):
        src, dst = bytes([0x02, *rng.randbytes(5)]), rng.choice([PARTNER_MAC, bytes([0x02, *rng.randbytes(5)])])
        size = rng.choice([1, 40, 62, 63, 64, 200, 1000, 1514, rng.randint(1, 9000)])
        serial = rng.randrange(1 << 20)
        assert tagged(src, dst, serial, size) == scapy_victim_frame(src, dst, serial, size)


# -- the offload sequences' frames: scapy's builds, as the sequences made them before ---------
def scapy_offload_frame(kind, src, dst, serial, rng, size=120, bad=None, vlan=None, udp_checksum=True) -> bytes:
    eth = Ether(src=mac_str(src), dst=mac_str(dst))
    if vlan is not None:
        eth = eth / Dot1Q(vlan=vlan & 0xFFF, prio=vlan >> 13)
    body = serial.to_bytes(8, "big") + bytes((serial + k) & 0xFF for k in range(max(size - 70, 8)))
    a, b = rng.getrandbits(16), rng.getrandbits(16)
    v4 = dict(src=f"10.{a >> 8}.{a & 0xFF}.{serial % 250 + 1}", dst=f"172.16.{b >> 8}.{b & 0xFF}", id=serial & 0xFFFF)
    v6 = dict(src=f"2001:db8::{a:x}:{serial & 0xFFFF:x}", dst=f"2001:db8:1::{b:x}")
    ports = dict(sport=rng.randrange(1024, 65536), dport=rng.choice([80, 443, 53, 4789, 5201]))
    if kind == offref.NON_IP:
        pkt = eth / Raw(body)
        (pkt[Dot1Q] if vlan is not None else pkt).type = EXPERIMENTAL_ETHERTYPE
        return bytes(pkt)
    l3 = (
        IP(**v4, frag=rng.choice([1, 100]) if kind == offref.IPV4_FRAG else 0)
        if kind.startswith("ipv4")
        else IPv6(**v6)
    )
    if kind in (offref.IPV4_TCP, offref.IPV6_TCP):
        l4 = TCP(**ports, seq=rng.getrandbits(32), flags="PA")
    elif kind in (offref.IPV4_UDP, offref.IPV6_UDP):
        l4 = UDP(**ports) if udp_checksum or kind == offref.IPV6_UDP else UDP(**ports, chksum=0)
    elif kind == offref.IPV6_OTHER:
        l3.nh = 58
        l4 = Raw(b"\x80\x00" + bytes(6))
    elif kind == offref.IPV4_OTHER:
        l4 = ICMP()
    else:
        l4 = UDP(**ports)
    frame = bytearray(bytes(eth / l3 / l4 / Raw(body)))
    l3_at = 14 + (4 if vlan is not None else 0)
    if bad == "ip":
        frame[l3_at + 10] ^= 0xA5
    elif bad == "l4":
        frame[-1] ^= 0x5A
    return bytes(frame)


def scapy_tso_frame(src, dst, serial, v6, payload, rng) -> bytes:
    ip = IPv6(src="2001:db8::5", dst="2001:db8:9::1") if v6 else IP(src="10.9.0.5", dst="10.9.1.1", id=serial & 0xFFFF)
    tcp = TCP(sport=30000 + serial % 30000, dport=5201, seq=rng.getrandbits(32), flags="PA")
    head = Ether(src=mac_str(src), dst=mac_str(dst)) / ip / tcp
    data = serial.to_bytes(8, "big") + bytes((serial * 7 + k) & 0xFF for k in range(max(payload - 8, 0)))
    return bytes(head / Raw(data[:payload]))


def test_offload_frames_match_scapy_byte_for_byte_and_draw_the_same_numbers():
    for case in range(1500):
        rng = random.Random(case)
        kind = rng.choice(offref.L3L4_CLASSES)
        src, dst = bytes([0x02, *rng.randbytes(5)]), bytes([0x02, *rng.randbytes(5)])
        serial, size = rng.randrange(1 << 24), rng.choice([60, 80, 120, rng.randint(1, 1500)])
        bad, vlan = rng.choice([None, None, "ip", "l4"]), rng.choice([None, None, rng.randrange(1 << 16)])
        udp_checksum = rng.random() < 0.8
        ours, theirs = random.Random(case * 7), random.Random(case * 7)
        want = scapy_offload_frame(kind, src, dst, serial, theirs, size, bad, vlan, udp_checksum)
        assert offload_frame(kind, src, dst, serial, ours, size, bad, vlan, udp_checksum) == want, (kind, case)
        assert ours.random() == theirs.random()  # the sequence's later draws are unchanged


def test_tso_frames_match_scapy_byte_for_byte():
    for case in range(150):
        rng = random.Random(case)
        v6, serial = rng.random() < 0.5, rng.randrange(1 << 24)
        payload = rng.choice([1, 5, 8, 9, 500, rng.randint(1, 65436)])
        ours, theirs = random.Random(case), random.Random(case)
        assert tso_frame(PARTNER_MAC, GROUPS[0], serial, v6, payload, ours) == scapy_tso_frame(
            PARTNER_MAC, GROUPS[0], serial, v6, payload, theirs
        )
        assert ours.random() == theirs.random()


def test_garbage_checksums_overwrite_the_fields_scapy_names():
    """What TxChecksumSeq hands the device: its frames with scapy's IP.chksum and TCP/UDP chksum set."""
    for case in range(200):
        rng = random.Random(case)
        kind = rng.choice([offref.IPV4_TCP, offref.IPV4_UDP, offref.IPV6_TCP, offref.IPV6_UDP])
        frame = offload_frame(kind, PARTNER_MAC, GROUPS[0], case, rng, rng.randint(60, 1400))
        pkt = Ether(frame)
        if IP in pkt:
            pkt[IP].chksum = 0xDEAD
        pkt[TCP if TCP in pkt else UDP].chksum = 0xBEEF
        assert garbage_checksums(frame) == bytes(pkt), (kind, case)

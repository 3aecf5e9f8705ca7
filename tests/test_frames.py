"""The testbench's frame builders (tb/uvm/sequences.py, the campaign's victim frames in
tb/fuzz/victims.py) write the bytes scapy would build."""

import random

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Dot1Q, Ether

from datasheet.mailbox import mac_str
from tb.fuzz.victims import MAGIC, tagged
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

"""The uplink port (link state, both directions, wire time) and the pcap writer (no simulator).

The uplink's clock is given to it: here a fake one whose sleep completes at once and records
the wait, so ``send`` runs with ``run_sync``.
"""

import struct

import pytest
from conftest import run_sync
from nic_fakes import CoreRig, counters, mac, program
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import rdpcap

from datasheet import device, regs
from model import events as ev
from model.core.pcap import SNAPLEN, PcapWriter
from model.core.switch import PORT_UPLINK
from model.core.uplink import UplinkPort

LINK_UP = regs.STATUS.field("LINK_UP")
VF_MAC = mac("02:00:00:00:01:01")
PARTNER = mac("02:aa:00:00:00:01")


def frame(dst: bytes, src: bytes, size: int = 60) -> bytes:
    """An Ethernet/IPv4/UDP frame of ``size`` >= 42 bytes."""
    return bytes(Ether(dst=dst.hex(":"), src=src.hex(":")) / IP() / UDP() / Raw(b"\x5a" * (size - 42)))


class InstantTimer:
    """A clock for the uplink: a sleep records the wait and advances the time at once."""

    waits: list[int] = []
    now_ps = 0

    @classmethod
    def now(cls) -> int:
        return cls.now_ps

    @classmethod
    async def sleep(cls, ps: int) -> None:
        cls.waits.append(ps)
        cls.now_ps += ps


@pytest.fixture
def nic():
    InstantTimer.waits, InstantTimer.now_ps = [], 0
    rig = CoreRig(num_vfs=2, now_ps=InstantTimer.now, sleep=InstantTimer.sleep)
    program(rig, 1, VF_MAC)
    return rig


def link_bits(nic) -> list[int]:
    return [LINK_UP.get(fn.regs.get(regs.STATUS)) for fn in (nic.pf, *nic.vfs)]


def test_link_starts_up_in_every_function_and_follows_set_link(nic):
    assert nic.uplink.link_up and link_bits(nic) == [1, 1, 1]
    seen = []
    nic.uplink.on_link_change(seen.append)
    nic.uplink.set_link(False)
    assert link_bits(nic) == [0, 0, 0] and seen == [False]
    assert regs.STATUS.field("RST_DONE").get(nic.pf.regs.get(regs.STATUS)) == 1
    nic.uplink.set_link(False)  # no change, no event
    assert seen == [False] and nic.interrupts == []
    nic.uplink.set_link(True)
    assert link_bits(nic) == [1, 1, 1] and seen == [False, True]


def test_link_change_raises_the_pf_misc_vector_only_when_lsc_enabled(nic):
    nic.uplink.set_link(False)
    assert nic.interrupts == []
    nic.pf.regs.write(regs.PF_IMR.offset, regs.PF_IMR.field("LSC").mask.to_bytes(4, "little"))
    nic.uplink.set_link(True)
    # the PF's vector is signalled (its MSI-X is not enabled in this rig, so the message is dropped)
    assert nic.interrupts == [ev.Interrupt(device.PF_PORT, device.PF_MBX_VECTOR, "dropped", "MSI-X disabled")]


def test_send_takes_the_wire_time_then_reaches_the_switch(nic):
    f = frame(VF_MAC, PARTNER, size=64)
    assert run_sync(nic.uplink.send(f)) is True
    assert nic.delivered == [(1, f)] and nic.uplink.pending == 0
    # 8 preamble + 64 + 4 FCS + 12 IFG = 88 bytes = 704 bits at 10 Gb/s = 70.4 ns
    assert InstantTimer.waits == [70_400]
    run_sync(nic.uplink.send(frame(VF_MAC, PARTNER, size=42)))  # padded to 60 bytes
    assert InstantTimer.waits[-1] == 8 * (60 + 24) * 100
    assert nic.uplink.counters.rx_frames == 2


def test_concurrent_sends_serialise_on_the_wire(nic):
    first, second = nic.uplink.send(frame(VF_MAC, PARTNER, 100)), nic.uplink.send(frame(VF_MAC, PARTNER, 100))
    run_sync(first)
    InstantTimer.now_ps = 0  # the second call started at the same instant
    run_sync(second)
    one = nic.uplink.wire_time_ps(100)
    assert InstantTimer.waits == [one, 2 * one]


def test_link_down_drops_both_directions(nic):
    nic.uplink.set_link(False)
    assert run_sync(nic.uplink.send(frame(VF_MAC, PARTNER))) is False
    assert nic.delivered == [] and InstantTimer.waits == []
    assert nic.switch.forward(frame(PARTNER, VF_MAC), 1) is True
    assert nic.uplink.pending == 0
    c = nic.uplink.counters
    assert (c.rx_link_down, c.tx_link_down, c.rx_frames, c.tx_frames) == (1, 1, 0, 0)
    assert counters(nic) == {"TO_UPLINK": 1}


def test_transmit_queues_for_the_partner_bounded(nic):
    f = frame(PARTNER, VF_MAC)
    assert nic.switch.forward(f, 1)
    assert nic.uplink.pending == 1
    assert run_sync(nic.uplink.recv()) == f
    assert nic.uplink.recv_nowait() is None
    small = UplinkPort(
        forward=lambda f: None, link_changed=lambda up: None, events=ev.EventBus(), log=nic.core.log, tx_depth=2
    )
    assert [small.transmit(f) for _ in range(3)] == [True, True, False]
    assert small.counters.tx_overflow == 1
    assert run_sync(small.recv(timeout_ns=5)) == f  # a frame is ready: no wait needed


def test_pcap_file_reads_back_with_times(tmp_path):
    path = tmp_path / "cap.pcap"
    frames = [frame(VF_MAC, PARTNER, n) for n in (42, 64, 1500)]
    writer = PcapWriter(path, clock=lambda: 2_500_123_456.0)
    writer.write(frames[0], time_ns=1_000)
    writer.write(frames[1], time_ns=3_000_004_999)
    writer.write(frames[2])
    assert path.read_bytes()[:24] == struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    packets = rdpcap(str(path))  # readable while still open
    assert [bytes(p) for p in packets] == frames
    assert [(int(p.time), round(float(p.time) % 1 * 1e6)) for p in packets] == [(0, 1), (3, 4), (2, 500123)]
    writer.close()
    assert writer.closed and writer.packets == 3
    with pytest.raises(ValueError):
        writer.write(frames[0], time_ns=0)


def test_pcap_nanosecond_variant(tmp_path):
    path = tmp_path / "ns.pcap"
    f = frame(VF_MAC, PARTNER)
    with PcapWriter(path, nanosecond=True, clock=lambda: 0) as writer:
        writer.write(f, time_ns=5_000_000_067)
    assert path.read_bytes()[:4] == struct.pack("<I", 0xA1B23C4D)
    (packet,) = rdpcap(str(path))
    assert bytes(packet) == f and (int(packet.time), round(float(packet.time) % 1 * 1e9)) == (5, 67)


def test_pcap_truncates_to_snaplen(tmp_path):
    path = tmp_path / "big.pcap"
    with PcapWriter(path, clock=lambda: 0) as writer:
        writer.write(bytes(SNAPLEN + 10))
    caplen, length = struct.unpack_from("<II", path.read_bytes(), 24 + 8)
    assert (caplen, length) == (SNAPLEN, SNAPLEN + 10)


def test_switch_captures_what_enters_it(nic, tmp_path):
    capture = PcapWriter(tmp_path / "sw.pcap", clock=lambda: InstantTimer.now_ps / 1000)
    nic.core.capture(capture)
    inbound, outbound = frame(VF_MAC, PARTNER), frame(PARTNER, VF_MAC)
    run_sync(nic.uplink.send(inbound))
    nic.switch.forward(outbound, 1)
    capture.close()
    assert [bytes(p) for p in rdpcap(str(tmp_path / "sw.pcap"))] == [inbound, outbound]
    assert run_sync(nic.uplink.recv()) == outbound
    assert nic.delivered == [(1, inbound)]
    assert PORT_UPLINK == -1

"""The embedded switch: forwarding, replication, anti-spoofing, VLANs, counters (no simulator)."""

import pytest
from conftest import run_sync
from nic_fakes import CoreRig, FakeShell, bus_write, counters, mac, program
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw

from datasheet import device, regs
from model.core.switch import PORT_UPLINK, filters_of
from pf_driver.filters import program_function

PF, VF0, VF1, VF2, VF3 = 0, 1, 2, 3, 4
PARTNER = mac("02:aa:00:00:00:01")
UNKNOWN = mac("02:bb:00:00:00:09")
BCAST = mac("ff:ff:ff:ff:ff:ff")
MCAST = mac("01:00:5e:00:00:fb")
TX_DROPS = regs.by_name("STAT_TX_DROPS")


def port_mac(fn: int) -> bytes:
    return mac(f"02:00:00:00:01:{fn:02x}")


def frame(dst: bytes, src: bytes, vlan: int | None = None, payload: bytes = b"payload!" * 4) -> bytes:
    eth = Ether(dst=dst.hex(":"), src=src.hex(":"))
    if vlan is not None:
        eth = eth / Dot1Q(vlan=vlan)
    return bytes(eth / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1000, dport=2000) / Raw(payload))


@pytest.fixture
def nic():
    rig = CoreRig(num_vfs=4)
    for fn in range(5):
        program(rig, fn, port_mac(fn))
    return rig


def test_vf_to_vf_unicast_is_byte_exact_and_stays_inside(nic):
    f = frame(port_mac(VF2), port_mac(VF0))
    assert nic.switch.forward(f, VF0) is True
    assert nic.take() == ([(VF2, f)], [])
    assert counters(nic) == {"UNICAST_INTERNAL": 1}


def test_unknown_unicast_from_a_function_goes_to_the_uplink(nic):
    f = frame(UNKNOWN, port_mac(VF1))
    assert nic.switch.forward(f, VF1)
    assert nic.take() == ([], [f])
    assert counters(nic) == {"TO_UPLINK": 1}


def test_uplink_unicast_reaches_the_owner_only(nic):
    f = frame(port_mac(VF3), PARTNER)
    nic.switch.forward(f, PORT_UPLINK)
    assert nic.take() == ([(VF3, f)], [])
    assert counters(nic) == {"UNICAST_INTERNAL": 1}


def test_uplink_unknown_unicast_is_dropped_and_counted(nic):
    assert nic.switch.forward(frame(UNKNOWN, PARTNER), PORT_UPLINK) is True
    assert nic.take() == ([], [])
    assert counters(nic) == {"DROP_NO_MATCH": 1}


def test_broadcast_replicates_to_bam_receivers_except_the_source(nic):
    program(nic, VF2, port_mac(VF2), bam=False)
    program(nic, VF3, port_mac(VF3), rx_en=False)
    f = frame(BCAST, port_mac(VF0))
    nic.switch.forward(f, VF0)
    assert nic.take() == ([(PF, f), (VF1, f)], [f])
    nic.switch.forward(f, PORT_UPLINK)
    assert nic.take() == ([(PF, f), (VF0, f), (VF1, f)], [])
    assert counters(nic) == {"BROADCAST": 2, "TO_UPLINK": 1}


def test_multicast_reaches_listed_and_mpe_functions_only(nic):
    other = mac("01:00:5e:00:00:01")
    program(nic, VF0, port_mac(VF0), multicast=[other, MCAST])
    program(nic, VF1, port_mac(VF1), multicast=[MCAST])
    program(nic, VF2, port_mac(VF2), mpe=True)
    program(nic, VF3, port_mac(VF3), multicast=[MCAST], rx_en=False)
    f = frame(MCAST, PARTNER)
    nic.switch.forward(f, PORT_UPLINK)
    assert nic.take() == ([(VF0, f), (VF1, f), (VF2, f)], [])
    nic.switch.forward(frame(MCAST, port_mac(VF1)), VF1)
    deliveries, out = nic.take()
    assert [port for port, _ in deliveries] == [VF0, VF2] and len(out) == 1
    nic.switch.forward(frame(mac("01:00:5e:00:00:77"), PARTNER), PORT_UPLINK)
    assert nic.take()[0] == [(VF2, frame(mac("01:00:5e:00:00:77"), PARTNER))]
    assert counters(nic) == {"MULTICAST": 3, "TO_UPLINK": 1}


def test_unicast_promiscuous_gets_a_copy_but_never_its_own_frames(nic):
    program(nic, PF, port_mac(PF), upe=True)
    f = frame(port_mac(VF1), port_mac(VF0))
    nic.switch.forward(f, VF0)
    assert nic.take() == ([(PF, f), (VF1, f)], [])
    g = frame(UNKNOWN, PARTNER)
    nic.switch.forward(g, PORT_UPLINK)  # no owner, but the promiscuous PF takes it
    assert nic.take() == ([(PF, g)], [])
    h = frame(UNKNOWN, port_mac(PF))
    nic.switch.forward(h, PF)
    assert nic.take() == ([], [h])
    assert counters(nic) == {"UNICAST_INTERNAL": 2, "TO_UPLINK": 1}


def test_spoofed_source_mac_dropped_only_with_spoofchk(nic):
    spoofed = frame(port_mac(VF1), mac("02:66:66:66:66:66"))
    assert nic.switch.forward(spoofed, VF0) is True
    assert nic.take() == ([(VF1, spoofed)], [])
    program(nic, VF0, port_mac(VF0), spoofchk=True)
    assert nic.switch.forward(spoofed, VF0) is False
    assert nic.take() == ([], [])
    assert nic.switch.forward(frame(port_mac(VF1), port_mac(VF0)), VF0) is True
    assert counters(nic) == {"UNICAST_INTERNAL": 2, "DROP_SPOOF": 1}
    assert nic.function(VF0).regs.get(TX_DROPS) == 1
    program(nic, VF0, None, spoofchk=True)  # no valid MAC: nothing passes
    assert nic.switch.forward(frame(port_mac(VF1), port_mac(VF0)), VF0) is False
    assert nic.function(VF0).regs.get(TX_DROPS) == 2


def test_port_vlan_tags_on_tx_and_drops_tagged_tx(nic):
    program(nic, VF0, port_mac(VF0), pvid=100)
    f = frame(UNKNOWN, port_mac(VF0))
    nic.switch.forward(f, VF0)
    assert nic.take() == ([], [frame(UNKNOWN, port_mac(VF0), vlan=100)])
    assert nic.switch.forward(frame(UNKNOWN, port_mac(VF0), vlan=100), VF0) is False
    assert nic.take() == ([], [])
    assert counters(nic) == {"TO_UPLINK": 1, "DROP_VLAN": 1}
    assert nic.function(VF0).regs.get(TX_DROPS) == 1


def test_port_vlan_accepts_its_pvid_stripped_and_drops_foreign_vids(nic):
    program(nic, VF0, port_mac(VF0), pvid=100)
    nic.switch.forward(frame(port_mac(VF0), PARTNER, vlan=100), PORT_UPLINK)
    assert nic.take() == ([(VF0, frame(port_mac(VF0), PARTNER))], [])
    for foreign in (frame(port_mac(VF0), PARTNER, vlan=200), frame(port_mac(VF0), PARTNER)):
        nic.switch.forward(foreign, PORT_UPLINK)
        assert nic.take() == ([], [])
    assert counters(nic) == {"UNICAST_INTERNAL": 1, "DROP_VLAN": 2}


def test_port_vlan_to_port_vlan_inside_the_switch(nic):
    program(nic, VF0, port_mac(VF0), pvid=7)
    program(nic, VF1, port_mac(VF1), pvid=7)
    program(nic, VF2, port_mac(VF2), pvid=8)
    nic.switch.forward(frame(port_mac(VF1), port_mac(VF0)), VF0)
    assert nic.take() == ([(VF1, frame(port_mac(VF1), port_mac(VF0)))], [])
    b = frame(BCAST, port_mac(VF0))
    nic.switch.forward(b, VF0)  # VF2 (VID 8) is isolated; others are untagged ports
    assert nic.take() == ([(VF1, b)], [frame(BCAST, port_mac(VF0), vlan=7)])
    assert counters(nic) == {"UNICAST_INTERNAL": 1, "BROADCAST": 1, "TO_UPLINK": 1}


def test_vlan_filter_on_tagged_frames(nic):
    program(nic, VF1, port_mac(VF1), vlans=[10, 20])
    for vid in (10, 20):
        f = frame(port_mac(VF1), PARTNER, vlan=vid)
        nic.switch.forward(f, PORT_UPLINK)
        assert nic.take() == ([(VF1, f)], [])
    nic.switch.forward(frame(port_mac(VF1), PARTNER, vlan=30), PORT_UPLINK)
    assert nic.take() == ([], [])
    untagged = frame(port_mac(VF1), PARTNER)
    nic.switch.forward(untagged, PORT_UPLINK)
    assert nic.take() == ([(VF1, untagged)], [])
    program(nic, VF1, port_mac(VF1), vlans=[10], upe=True)  # promiscuous ignores the VLAN filter
    f = frame(port_mac(VF1), PARTNER, vlan=30)
    nic.switch.forward(f, PORT_UPLINK)
    assert nic.take() == ([(VF1, f)], [])
    assert counters(nic) == {"UNICAST_INTERNAL": 4, "DROP_VLAN": 1}


def test_broadcast_tagged_reaches_only_members_of_the_vlan(nic):
    program(nic, VF2, port_mac(VF2), vlans=[5])
    f = frame(BCAST, PARTNER, vlan=5)
    nic.switch.forward(f, PORT_UPLINK)
    assert nic.take() == ([(VF2, f)], [])


@pytest.mark.parametrize(
    "length,ok", [(13, False), (14, True), (60, True), (device.MAX_FRAME + 4, True), (device.MAX_FRAME + 5, False)]
)
def test_frame_length_bounds(nic, length, ok):
    base = frame(UNKNOWN, port_mac(VF0), payload=b"")
    f = (base + bytes(length))[:length]
    assert nic.switch.forward(f, VF0) is ok
    assert nic.take()[1] == ([f] if ok else [])
    assert counters(nic) == ({"TO_UPLINK": 1} if ok else {"DROP_MALFORMED": 1})
    assert nic.function(VF0).regs.get(TX_DROPS) == (0 if ok else 1)


def test_truncated_tag_is_malformed(nic):
    tagged = frame(port_mac(VF0), PARTNER, vlan=3)[:16]
    assert nic.switch.forward(tagged, PORT_UPLINK) is False
    assert counters(nic) == {"DROP_MALFORMED": 1}


def test_lookup_follows_register_rewrites(nic):
    new = mac("02:00:00:00:09:99")
    nic.switch.forward(frame(port_mac(VF1), PARTNER), PORT_UPLINK)
    assert [p for p, _ in nic.take()[0]] == [VF1]
    program(nic, VF1, new)
    nic.switch.forward(frame(port_mac(VF1), PARTNER), PORT_UPLINK)
    assert nic.take() == ([], [])
    nic.switch.forward(frame(new, PARTNER), PORT_UPLINK)
    assert [p for p, _ in nic.take()[0]] == [VF1]
    bus_write(nic, regs.SW_MAC_HI, VF1, 0)  # VALID cleared: the address is gone
    nic.switch.forward(frame(new, port_mac(VF0)), VF0)
    assert nic.take()[1] == [frame(new, port_mac(VF0))]


def test_vf_disable_and_pf_reset_rebuild_the_tables(nic):
    nic.core.remove_vfs()  # NumVFs 4 -> 2: VF2, VF3 vanish
    nic.core.add_vfs([FakeShell(0x0101 + i, device.VF_MSIX_VECTORS) for i in range(2)])
    nic.switch.forward(frame(port_mac(VF3), PARTNER), PORT_UPLINK)
    assert nic.take() == ([], [])
    assert nic.switch.forward(frame(UNKNOWN, port_mac(VF3)), VF3) is False  # no such port
    nic.pf.software_reset()  # PF software reset: filters back to 0
    nic.switch.forward(frame(port_mac(VF0), PARTNER), PORT_UPLINK)
    assert nic.take() == ([], [])


def test_refused_delivery_is_the_engines_business(nic):
    """VF1's RX queue has no ring, so it refuses the frame: the switch still counts the frame as
    delivered; the refusal is the queue engine's drop (its RX_DROPS, QRX_NOBUF)."""
    f = frame(port_mac(VF1), PARTNER)
    nic.switch.forward(f, PORT_UPLINK)
    assert nic.decisions[-1].deliveries == ((VF1, f, False),)
    assert counters(nic) == {"UNICAST_INTERNAL": 1}
    assert nic.function(VF1).regs.get(regs.by_name("STAT_RX_DROPS")) == 1
    assert nic.function(VF1).regs.read(regs.QRX_NOBUF.at(0), 4) == (1).to_bytes(4, "little")


def test_frames_to_own_or_disabled_port_go_nowhere(nic):
    program(nic, VF1, port_mac(VF1), rx_en=False)
    nic.switch.forward(frame(port_mac(VF1), port_mac(VF0)), VF0)  # local MAC, RX disabled: not the uplink
    nic.switch.forward(frame(port_mac(VF0), port_mac(VF0)), VF0)  # to itself
    assert nic.take() == ([], [])
    assert counters(nic) == {"DROP_NO_MATCH": 2}


def test_counters_wrap_at_32_bits(nic):
    reg = regs.by_name("SW_DROP_NO_MATCH")
    nic.pf.regs.set(reg, 0xFFFFFFFF)
    nic.switch.forward(frame(UNKNOWN, PARTNER), PORT_UPLINK)
    assert nic.pf.regs.get(reg) == 0


def test_every_frame_entering_is_captured_once(nic):
    class Capture(list):
        def write(self, f):
            self.append(f)

    capture = Capture()
    nic.core.capture(capture)
    frames = [frame(BCAST, port_mac(VF0)), frame(UNKNOWN, PARTNER), b"\x00" * 5]
    nic.switch.forward(frames[0], VF0)
    nic.switch.forward(frames[1], PORT_UPLINK)
    nic.switch.forward(frames[2], PORT_UPLINK)
    assert list(capture) == frames


def test_pf_driver_programming_decodes_as_intended(nic):
    """The PF driver's encoding (pf_driver.filters) is what the switch decodes."""

    class Pf:
        async def write_reg(self, reg, value, index=0):
            bus_write(nic, reg, index, value)

        async def write_regs(self, reg, values, index=0):
            for k, value in enumerate(values):
                bus_write(nic, reg, index + k, value)

    run_sync(
        program_function(
            Pf(), VF2, port_mac(VF2), multicast=[MCAST], vlans=[300, 4], upe=True, spoofchk=True, pvid=12, defq=3
        )
    )
    f = filters_of(nic.pf.regs, VF2)
    assert (f.mac, f.multicast, f.vlans, f.pvid) == (port_mac(VF2), {MCAST}, {4, 300}, 12)
    assert (f.bam, f.rx_en, f.upe, f.mpe, f.spoofchk, f.pvlan) == (True, True, True, False, True, True)
    assert nic.switch.filters(VF2) == f

"""The scoreboard's pure-Python reference (tb/uvm/reference.py) against the documented rules
(docs/datapath.md "Embedded switch", docs/iommu.md); no simulator."""

from tb.uvm import reference as ref
from tb.uvm.reference import DmaReference, PortView, forward

PF_MAC = bytes.fromhex("025f0100ffff")
A, B, C = (bytes.fromhex(f"025f010000{i:02x}") for i in range(3))
PARTNER = bytes.fromhex("00163e000001")
GROUP = bytes.fromhex("01005e000001")


def frame(src: bytes, dst: bytes, n: int = 64, tagged_vid: int | None = None) -> bytes:
    body = dst + src + b"\x08\x00" + bytes(k & 0xFF for k in range(n - 14))
    return ref.tag(body, tagged_vid) if tagged_vid is not None else body


def ports(**over):
    views = {0: PortView(PF_MAC), 1: PortView.vf(True, A), 2: PortView.vf(True, B), 3: PortView.vf(True, C)}
    views.update(over)
    return views


def test_unicast_broadcast_multicast():
    p = ports()
    d = forward(frame(A, B), 1, p)
    assert d.receivers == {2} and d.uplink is None and d.counters == {ref.UNICAST_INTERNAL}
    d = forward(frame(A, PARTNER), 1, p)  # unknown unicast from a function: uplink
    assert d.receivers == set() and d.uplink == frame(A, PARTNER) and d.counters == {ref.TO_UPLINK}
    d = forward(frame(PARTNER, bytes.fromhex("00163e0000ee")), ref.UPLINK, p)
    assert d.counters == {ref.DROP_NO_MATCH} and d.uplink is None  # unknown unicast from the uplink
    d = forward(frame(A, ref.BROADCAST), 1, p)  # everyone with BAM but the source, and out
    assert d.receivers == {0, 2, 3} and d.uplink is not None and d.counters == {ref.BROADCAST_KIND, ref.TO_UPLINK}
    p[3] = PortView.vf(True, C, multicast=[GROUP])
    d = forward(frame(A, GROUP), 1, p)
    assert d.receivers == {3} and d.kind == ref.MULTICAST_KIND
    p[2] = PortView.vf(True, B, upe=True)  # a promiscuous VF gets a copy of unicast
    assert forward(frame(A, C), 1, p).receivers == {2, 3}
    assert forward(frame(A, A), 1, p).counters == {ref.UNICAST_INTERNAL}  # the copy went to the UPE port
    p[2] = PortView.vf(True, B)
    assert forward(frame(A, A), 1, p).counters == {ref.DROP_NO_MATCH}  # never back to the source
    p[2] = PortView.vf(False, B)  # a VF before RESET: no address, no receive
    d = forward(frame(A, B), 1, p)
    assert d.receivers == set() and d.uplink is not None


def test_spoofed_source_and_port_vlan():
    p = ports()
    assert forward(frame(B, C), 1, p).counters == {ref.DROP_SPOOF}  # VF 0 pretends to be VF 1
    assert forward(frame(B, C), 0, p).receivers == {3}  # the PF is not spoof-checked
    p[1] = PortView.vf(True, A, spoofchk=False)
    assert forward(frame(B, C), 1, p).receivers == {3}
    p = ports()
    p[1] = PortView.vf(True, A, pvid=42)
    p[2] = PortView.vf(True, B, pvid=42)
    d = forward(frame(A, B), 1, p)  # tagged on ingress, stripped at a PVID port
    assert d.deliveries == {2: frame(A, B)}
    d = forward(frame(A, PARTNER), 1, p)
    assert d.uplink == frame(A, PARTNER, tagged_vid=42)  # the uplink sees the tag
    assert forward(frame(A, B, tagged_vid=7), 1, p).counters == {ref.DROP_VLAN}  # tagged from a PVID port
    p = ports()
    p[3] = PortView.vf(True, C, vlans=[10])
    assert forward(frame(A, C, tagged_vid=10), 1, p).receivers == {3}
    d = forward(frame(A, C, tagged_vid=20), 1, p)  # refused by the only owner's VLAN filter
    assert d.receivers == set() and d.counters == {ref.DROP_VLAN}


def test_malformed_and_counters():
    p = ports()
    assert forward(b"\x01" * 13, 1, p).counters == {ref.DROP_MALFORMED}
    assert forward(frame(A, B, 17)[:17], 1, p).counters == {ref.UNICAST_INTERNAL}
    assert forward(ref.tag(frame(A, B, 14), 5)[:17], 1, p).counters == {ref.DROP_MALFORMED}
    assert forward(frame(A, B, ref.MAX_SWITCH_FRAME + 1), 1, p).counters == {ref.DROP_MALFORMED}
    assert forward(frame(A, B, ref.MAX_SWITCH_FRAME), 1, p).receivers == {2}
    assert ref.primary_kind({ref.BROADCAST_KIND, ref.TO_UPLINK}) == ref.BROADCAST_KIND


def test_dma_reference_faults_and_translations():
    r = DmaReference()
    pf, vf0, vf1 = 0x100, 0x101, 0x102
    r.attach_passthrough(pf)
    r.attach(vf0, "d0")
    r.attach(vf1, "d1")
    r.map("d0", 0xBFFF_F000, 0x9_4000, 0x1000, ref.PROT_READ | ref.PROT_WRITE)
    r.map("d1", 0xBFFF_F000, 0xE_0000, 0x1000, ref.PROT_READ)
    assert r.predict(pf, 0x1234, 64, True) == ref.DmaExpect(None, 0x1234)
    assert r.predict(vf0, 0xBFFF_F030, 16, False) == ref.DmaExpect(None, 0x9_4030)
    assert r.predict(vf1, 0xBFFF_F030, 16, False) == ref.DmaExpect(None, 0xE_0030)  # same IOVA, other page
    assert r.predict(vf1, 0xBFFF_F030, 16, True).fault == ref.DENIED
    assert r.predict(vf0, 0xBFFF_E000, 16, False).fault == ref.NOT_MAPPED
    assert r.predict(vf0, 0xBFFF_FFF0, 32, False).fault == ref.NOT_MAPPED  # runs off the mapping
    assert r.predict(vf0, 1 << 48, 4, False).fault == ref.BEYOND_AW
    assert r.predict(0x103, 0x1000, 4, False).fault == ref.NO_CONTEXT
    r.detach(vf0)
    assert r.predict(vf0, 0xBFFF_F030, 16, False).fault == ref.NO_CONTEXT
    r.unmap("d1", 0xBFFF_F000)
    assert r.predict(vf1, 0xBFFF_F030, 16, False).fault == ref.NOT_MAPPED

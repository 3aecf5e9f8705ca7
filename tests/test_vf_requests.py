"""The PF's validation of VF requests, without a simulator: untrusted input gets NACKs."""

import pytest

from datasheet import device
from datasheet import mailbox as mbx
from datasheet.mailbox import MbxError, Message, Opcode
from pf_driver.vf_info import VfInfo, VfState
from pf_driver.vf_requests import handle_request

PERM = bytes.fromhex("025f01000001")


def ready_vf(**kw):
    vf = VfInfo(1, PERM, **kw)
    assert handle_request(vf, Message(Opcode.RESET, [])).cts
    return vf


def nack(vf, opcode, payload):
    reply = handle_request(vf, Message(opcode, payload))
    assert reply.nack and reply.opcode == opcode
    return MbxError(reply.payload[0])


def test_reset_grants_cts_with_permanent_mac_then_admin_mac():
    vf = VfInfo(1, PERM)
    assert nack(vf, Opcode.GET_QUEUES, []) is MbxError.NOT_RESET
    reply = handle_request(vf, Message(Opcode.RESET, []))
    assert reply.ack and reply.cts and mbx.words_to_mac(reply.payload) == PERM
    assert vf.state is VfState.CTS
    vf.set_admin_mac(bytes.fromhex("02aaaaaaaaaa"))
    assert mbx.words_to_mac(handle_request(vf, Message(Opcode.RESET, [])).payload) == vf.mac


def test_vlan_table_is_bounded_and_remove_is_idempotent():
    vf = ready_vf()
    for vid in range(1, mbx.MAX_VLANS + 1):
        assert handle_request(vf, Message(Opcode.SET_VLAN, [mbx.VLAN_ADD.put(vid, 1)])).ack
    assert nack(vf, Opcode.SET_VLAN, [mbx.VLAN_ADD.put(4000, 1)]) is MbxError.INVALID
    assert handle_request(vf, Message(Opcode.SET_VLAN, [mbx.VLAN_ADD.put(5, 1)])).ack  # already present
    assert handle_request(vf, Message(Opcode.SET_VLAN, [4000])).ack  # absent: no-op
    assert len(vf.vlans) == mbx.MAX_VLANS
    assert nack(vf, Opcode.SET_VLAN, [0 | 1 << 31]) is MbxError.INVALID  # VID 0


@pytest.mark.parametrize(
    "payload",
    [
        [device.VF_QUEUE_PAIRS, 0x1000, 0, 64, 0],
        [0 | 1 << 20, 0x1000, 0, 64, 0],  # reserved bits
        [0, 0, 0, 64, 0],  # null ring
        [0, 0x1000, 0, device.RING_MAX_DESCS * 2, 0],
        [0, 0x1000, 0, device.RING_MIN_DESCS // 2, 0],
        [1 << 31, 0x1000, 0, 64, device.RX_BUF_MAX + 1],
    ],
)
def test_config_queues_rejects_bad_rings(payload):
    vf = ready_vf()
    assert nack(vf, Opcode.CONFIG_QUEUES, payload) is MbxError.INVALID
    assert vf.tx_rings == {} and vf.rx_rings == {} and vf.state is VfState.CTS


def test_config_queues_accepts_64bit_iova():
    vf = ready_vf()
    assert handle_request(vf, Message(Opcode.CONFIG_QUEUES, [2, 0x8000_0080, 0x1, 1024, 0])).ack
    assert vf.tx_rings[2].iova == 0x1_8000_0080 and vf.state is VfState.CONFIGURED


def test_promisc_reserved_bits_and_trust():
    vf = ready_vf()
    assert nack(vf, Opcode.SET_PROMISC, [0x4]) is MbxError.INVALID
    assert nack(vf, Opcode.SET_PROMISC, [0x1]) is MbxError.POLICY
    assert handle_request(vf, Message(Opcode.SET_PROMISC, [0])).ack  # turning it off is always allowed
    vf.trust = True
    assert handle_request(vf, Message(Opcode.SET_PROMISC, [0x3])).ack
    assert vf.promisc_unicast and vf.promisc_multicast

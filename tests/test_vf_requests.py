"""The PF's validation of VF requests, without a simulator: untrusted input gets NACKs."""

import pytest

from datasheet import device, regs
from datasheet import mailbox as mbx
from datasheet.descriptors import HENA_MASK, RssType, hash_types_of, hena_of
from datasheet.mailbox import MbxError, Message, Offload, Opcode
from pf_driver.offloads import fn_offload_value
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


# -- offloads (API 1.2) ----------------------------------------------------------------------------
def offload_vf(**kw):
    vf = ready_vf(**kw)
    assert handle_request(vf, Message(Opcode.API_NEGOTIATE, [1 << 16 | 2])).ack
    return vf


def test_offload_messages_need_the_offload_api():
    vf = ready_vf()
    assert handle_request(vf, Message(Opcode.API_NEGOTIATE, [1 << 16 | 1])).payload == [1 << 16 | 1]
    for opcode, payload in (
        (Opcode.GET_OFFLOADS, []),
        (Opcode.SET_OFFLOADS, [0]),
        (Opcode.CONFIG_RSS_KEY, [0] * mbx.RSS_KEY_DWORDS),
        (Opcode.CONFIG_RSS_LUT, [0] * mbx.RSS_LUT_DWORDS),
        (Opcode.SET_RSS_HENA, [0]),
    ):
        assert nack(vf, opcode, payload) is MbxError.UNSUPPORTED_API
    assert nack(ready_vf(), Opcode.GET_OFFLOADS, []) is MbxError.UNSUPPORTED_API  # no API agreed yet


def test_offloads_within_policy_and_rss_parameters_validated():
    vf = offload_vf()
    reply = handle_request(vf, Message(Opcode.GET_OFFLOADS, []))
    assert reply.payload == [int(mbx.ALL_OFFLOADS), device.RSS_KEY_SIZE, device.RSS_RETA_SIZE]
    assert handle_request(vf, Message(Opcode.SET_OFFLOADS, [int(Offload.TSO | Offload.RSS)])).ack
    assert vf.offloads == Offload.TSO | Offload.RSS
    assert nack(vf, Opcode.SET_OFFLOADS, [1 << 6]) is MbxError.INVALID
    key = bytes(range(device.RSS_KEY_SIZE))
    assert handle_request(vf, Message(Opcode.CONFIG_RSS_KEY, regs.rss_key_words(key))).ack and vf.rss_key == key
    assert nack(vf, Opcode.CONFIG_RSS_KEY, [0] * 9) is MbxError.BAD_LENGTH
    table = [q % device.VF_QUEUE_PAIRS for q in range(device.RSS_RETA_SIZE)]
    assert handle_request(vf, Message(Opcode.CONFIG_RSS_LUT, regs.reta_words(table))).ack and vf.rss_table == table
    beyond = table[:-1] + [device.VF_QUEUE_PAIRS]
    assert nack(vf, Opcode.CONFIG_RSS_LUT, regs.reta_words(beyond)) is MbxError.INVALID
    assert vf.rss_table == table  # unchanged by the refused one
    assert handle_request(vf, Message(Opcode.SET_RSS_HENA, [HENA_MASK])).ack
    assert nack(vf, Opcode.SET_RSS_HENA, [HENA_MASK + 1]) is MbxError.INVALID
    vf.allowed_offloads = Offload.RXCSUM  # the administrator's policy
    assert nack(vf, Opcode.SET_OFFLOADS, [int(Offload.TSO)]) is MbxError.POLICY
    assert nack(vf, Opcode.SET_RSS_HENA, [0]) is MbxError.POLICY
    assert handle_request(vf, Message(Opcode.GET_OFFLOADS, [])).payload[0] == int(Offload.RXCSUM)
    assert handle_request(vf, Message(Opcode.RESET, [])).ack  # RESET forgets what it asked, not the policy
    assert vf.offloads == Offload(0) and vf.rss_hena == 0 and vf.allowed_offloads == Offload.RXCSUM


def test_fn_offload_value_applies_hash_types_only_with_rss():
    assert fn_offload_value(Offload.TSO, HENA_MASK) == regs.FN_OFFLOAD.field("TSO").mask
    value = fn_offload_value(Offload.RSS | Offload.RXCSUM, hena_of({RssType.IPV4, RssType.IPV6_UDP}))
    assert hash_types_of(value) == {RssType.IPV4, RssType.IPV6_UDP}
    assert value & regs.FN_OFFLOAD.field("RXCSUM").mask

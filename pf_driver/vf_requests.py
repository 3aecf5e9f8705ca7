"""The PF's handling of each VF request: validation and policy. Everything a VF sends is
untrusted input; each refusal is a NACK with an :class:`~datasheet.mailbox.MbxError`.
"""

from __future__ import annotations

from datasheet import device, regs
from datasheet import mailbox as mbx
from datasheet.descriptors import HENA_MASK
from datasheet.mailbox import MbxError, Message, Offload, Opcode
from pf_driver.vf_info import RingConfig, VfInfo, VfState


class Refused(Exception):
    def __init__(self, error: MbxError, why: str):
        super().__init__(why)
        self.error = error


def _is_unicast(mac: bytes) -> bool:
    return mac != bytes(6) and not mac[0] & 1


def handle_request(vf: VfInfo, msg: Message) -> Message:
    """Validate and apply one request; return the reply (ACK or NACK)."""
    try:
        spec = mbx.SPECS.get(msg.opcode)
        if spec is None or spec.direction is not mbx.Direction.VF_TO_PF:
            raise Refused(MbxError.UNKNOWN_OPCODE, f"opcode {msg.opcode:#x}")
        lo, hi = spec.request_len
        if not lo <= msg.declared_len <= hi:
            raise Refused(MbxError.BAD_LENGTH, f"{spec.opcode.name} with {msg.declared_len} dwords")
        if vf.state is VfState.DISABLED:
            raise Refused(MbxError.POLICY, "the PF disabled this VF after repeated error events")
        if vf.state is VfState.NOT_RESET and msg.opcode != Opcode.RESET:
            raise Refused(MbxError.NOT_RESET, f"{spec.opcode.name} before RESET")
        payload, flags = _HANDLERS[Opcode(msg.opcode)](vf, msg.payload)
        return Message(msg.opcode, payload, ack=True, cts=flags)
    except Refused as refusal:
        vf.nacked += 1
        return Message(msg.opcode, [refusal.error], nack=True)


def _reset(vf: VfInfo, _p: list[int]) -> tuple[list[int], bool]:
    vf.clear_requested_state()
    vf.state = VfState.CTS
    return mbx.mac_to_words(vf.mac), True


def _set_mac(vf: VfInfo, p: list[int]) -> tuple[list[int], bool]:
    mac = mbx.words_to_mac(p)
    if not _is_unicast(mac):
        raise Refused(MbxError.INVALID, f"MAC {mbx.mac_str(mac)} is not unicast")
    if vf.admin_mac and not vf.trust and mac != vf.mac:
        raise Refused(MbxError.POLICY, "administrator set the MAC")
    vf.mac = mac
    return [], False


def _set_multicast(vf: VfInfo, p: list[int]) -> tuple[list[int], bool]:
    count = p[0]
    if count > mbx.MAX_MULTICAST:
        raise Refused(MbxError.INVALID, f"{count} multicast addresses")
    if len(p) != 1 + 2 * count:
        raise Refused(MbxError.BAD_LENGTH, f"{count} addresses in {len(p)} dwords")
    macs = [mbx.words_to_mac(p[1 + 2 * i : 3 + 2 * i]) for i in range(count)]
    if any(not m[0] & 1 for m in macs):
        raise Refused(MbxError.INVALID, "a multicast list entry is not multicast")
    vf.multicast = macs
    return [], False


def _set_vlan(vf: VfInfo, p: list[int]) -> tuple[list[int], bool]:
    vid, add = mbx.VLAN_VID.get(p[0]), mbx.VLAN_ADD.get(p[0])
    if p[0] & ~(mbx.VLAN_VID.mask | mbx.VLAN_ADD.mask) or not 1 <= vid <= 4094:
        raise Refused(MbxError.INVALID, f"VLAN word {p[0]:#x}")
    if vf.admin_vlan is not None:
        raise Refused(MbxError.POLICY, "administrator set a port VLAN")
    if add:
        if vid not in vf.vlans and len(vf.vlans) >= mbx.MAX_VLANS:
            raise Refused(MbxError.INVALID, "VLAN table full")
        vf.vlans.add(vid)
    else:
        vf.vlans.discard(vid)
    return [], False


def _set_promisc(vf: VfInfo, p: list[int]) -> tuple[list[int], bool]:
    upe, mpe = mbx.PROMISC_UNICAST.get(p[0]), mbx.PROMISC_MULTICAST.get(p[0])
    if p[0] & ~(mbx.PROMISC_UNICAST.mask | mbx.PROMISC_MULTICAST.mask):
        raise Refused(MbxError.INVALID, f"promisc word {p[0]:#x}")
    if (upe or mpe) and not vf.trust:
        raise Refused(MbxError.POLICY, "untrusted VF asked for promiscuous mode")
    vf.promisc_unicast, vf.promisc_multicast = bool(upe), bool(mpe)
    return [], False


def _get_queues(vf: VfInfo, _p: list[int]) -> tuple[list[int], bool]:
    return [device.VF_QUEUE_PAIRS, device.VF_QUEUE_PAIRS, 0], False


def _config_queues(vf: VfInfo, p: list[int]) -> tuple[list[int], bool]:
    index, rx = mbx.QCFG_INDEX.get(p[0]), mbx.QCFG_RX.get(p[0])
    iova, length, buf = p[1] | p[2] << 32, p[3], p[4]
    if p[0] & ~(mbx.QCFG_INDEX.mask | mbx.QCFG_RX.mask) or index >= device.VF_QUEUE_PAIRS:
        raise Refused(MbxError.INVALID, f"queue {index} outside the VF's {device.VF_QUEUE_PAIRS}")
    error = device.ring_geometry_error(iova, length)
    if error:
        raise Refused(MbxError.INVALID, error)
    if rx and not device.RX_BUF_MIN <= buf <= device.RX_BUF_MAX:
        raise Refused(MbxError.INVALID, f"RX buffer size {buf}")
    (vf.rx_rings if rx else vf.tx_rings)[index] = RingConfig(iova, length, buf)
    vf.state = VfState.CONFIGURED
    return [], False


def _api_negotiate(vf: VfInfo, p: list[int]) -> tuple[list[int], bool]:
    major, minor = p[0] >> 16, p[0] & 0xFFFF
    ours = mbx.API_VERSION
    if major != ours[0]:
        raise Refused(MbxError.UNSUPPORTED_API, f"VF speaks {major}.{minor}")
    vf.api_version = (major, min(minor, ours[1]))
    return [vf.api_version[0] << 16 | vf.api_version[1]], False


def _offload_api(vf: VfInfo, rss: bool = False) -> None:
    """Offload messages need API 1.2 or later; the RSS ones need RSS allowed."""
    if vf.api_version is None or vf.api_version < mbx.OFFLOADS_API:
        raise Refused(MbxError.UNSUPPORTED_API, f"offload message with API {vf.api_version}")
    if rss and not vf.allowed_offloads & Offload.RSS:
        raise Refused(MbxError.POLICY, "RSS is not allowed for this VF")


def _get_offloads(vf: VfInfo, _p: list[int]) -> tuple[list[int], bool]:
    _offload_api(vf)
    return [int(vf.allowed_offloads), device.RSS_KEY_SIZE, device.RSS_RETA_SIZE], False


def _set_offloads(vf: VfInfo, p: list[int]) -> tuple[list[int], bool]:
    _offload_api(vf)
    if p[0] & ~int(mbx.ALL_OFFLOADS):
        raise Refused(MbxError.INVALID, f"offload bits {p[0]:#x}")
    wanted = Offload(p[0])
    if wanted & ~vf.allowed_offloads:
        raise Refused(MbxError.POLICY, f"not allowed: {Offload(wanted & ~vf.allowed_offloads)!r}")
    vf.offloads = wanted
    return [], False


def _config_rss_key(vf: VfInfo, p: list[int]) -> tuple[list[int], bool]:
    _offload_api(vf, rss=True)
    vf.rss_key = regs.rss_key_bytes(p)
    return [], False


def _config_rss_lut(vf: VfInfo, p: list[int]) -> tuple[list[int], bool]:
    _offload_api(vf, rss=True)
    table = regs.reta_entries(p)
    beyond = sorted({q for q in table if q >= device.VF_QUEUE_PAIRS})
    if beyond:
        raise Refused(MbxError.INVALID, f"queues {beyond} outside the VF's {device.VF_QUEUE_PAIRS}")
    vf.rss_table = table
    return [], False


def _set_rss_hena(vf: VfInfo, p: list[int]) -> tuple[list[int], bool]:
    _offload_api(vf, rss=True)
    if p[0] & ~HENA_MASK:
        raise Refused(MbxError.INVALID, f"hash types {p[0]:#x}")
    vf.rss_hena = p[0]
    return [], False


_HANDLERS = {
    Opcode.RESET: _reset,
    Opcode.SET_MAC: _set_mac,
    Opcode.SET_MULTICAST: _set_multicast,
    Opcode.SET_VLAN: _set_vlan,
    Opcode.SET_PROMISC: _set_promisc,
    Opcode.GET_QUEUES: _get_queues,
    Opcode.CONFIG_QUEUES: _config_queues,
    Opcode.API_NEGOTIATE: _api_negotiate,
    Opcode.GET_OFFLOADS: _get_offloads,
    Opcode.SET_OFFLOADS: _set_offloads,
    Opcode.CONFIG_RSS_KEY: _config_rss_key,
    Opcode.CONFIG_RSS_LUT: _config_rss_lut,
    Opcode.SET_RSS_HENA: _set_rss_hena,
}

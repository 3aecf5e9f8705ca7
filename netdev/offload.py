"""Offloads as a net device exposes them: the features ``ethtool -k`` lists and ``ethtool -K``
switches, the RSS parameters ``ethtool -X`` sets, and what a protocol stack asks of one frame
(Linux ``skb``: CHECKSUM_PARTIAL, ``gso_size``, ``vlan_tci``) turned into a context descriptor.

Features start off when a net device is first opened; a feature the device (or, for a VF, the
PF's policy) does not offer cannot be turned on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from datasheet import descriptors as d
from datasheet import device
from datasheet.descriptors import L4Type, RssType, TxContext
from datasheet.mailbox import Offload

#: ``ethtool -k`` names of the features, and the offload each is
FEATURES = {
    "rx-checksum": Offload.RXCSUM,
    "tx-checksum": Offload.TXCSUM,
    "tso": Offload.TSO,
    "rxhash": Offload.RSS,
    "rxvlan": Offload.RXVLAN,
    "txvlan": Offload.TXVLAN,
}
#: the key drivers have long shipped as their default (also Microsoft's verification key)
DEFAULT_RSS_KEY = bytes.fromhex("6d5a56da255b0ec24167253d43a38fb0d0ca2bcbae7b30b477cb2da38030f20c6a42b73bbeac01fa")
ALL_HASH_TYPES = frozenset(RssType) - {RssType.NONE}


class FeatureError(ValueError):
    """A feature the device does not offer, or an offload asked of a frame while it is off."""


def offloads_of(features: dict[str, bool] | set[str]) -> Offload:
    names = {n for n, on in features.items() if on} if isinstance(features, dict) else set(features)
    unknown = names - set(FEATURES)
    if unknown:
        raise FeatureError(f"unknown features {sorted(unknown)}")
    return Offload(sum(FEATURES[n] for n in names))


@dataclass(frozen=True)
class RssConfig:
    """``ethtool -X``: the hash key, the indirection table (queue of each entry) and, as
    ``ethtool -N rx-flow-hash`` sets them, the hash types."""

    key: bytes = DEFAULT_RSS_KEY
    table: tuple[int, ...] = field(default_factory=lambda: (0,) * device.RSS_RETA_SIZE)
    hash_types: frozenset[RssType] = ALL_HASH_TYPES

    @classmethod
    def spread(cls, num_queues: int, key: bytes = DEFAULT_RSS_KEY) -> RssConfig:
        """Linux's default (``ethtool_rxfh_indir_default``): entry i is queue i mod n."""
        return cls(key, tuple(i % num_queues for i in range(device.RSS_RETA_SIZE)))

    def __post_init__(self):
        if len(self.key) != device.RSS_KEY_SIZE:
            raise ValueError(f"RSS key of {len(self.key)} bytes, not {device.RSS_KEY_SIZE}")
        if len(self.table) != device.RSS_RETA_SIZE:
            raise ValueError(f"indirection table of {len(self.table)} entries, not {device.RSS_RETA_SIZE}")


@dataclass(frozen=True)
class TxOffload:
    """What the stack asks of one frame: ``csum`` (CHECKSUM_PARTIAL: the TCP/UDP checksum and,
    over IPv4, the header checksum), ``gso_size`` (TSO: MSS; 0 for none), ``vlan`` (a TCI to insert)."""

    csum: bool = False
    gso_size: int = 0
    vlan: int | None = None


def _headers(frame: bytes) -> TxContext:
    """The context fields of ``frame`` (skb_network_offset, skb_transport_offset): Ethernet with at
    most one 802.1Q tag, IPv4 or IPv6 (no extension headers), TCP or UDP."""
    maclen, ethertype = 14, frame[12:14]
    if ethertype == b"\x81\x00":
        maclen, ethertype = 18, frame[16:18]
    if ethertype == b"\x08\x00":
        ipv6, iplen, proto = False, (frame[maclen] & 0x0F) * 4, frame[maclen + 9]
    elif ethertype == b"\x86\xdd":
        ipv6, iplen, proto = True, 40, frame[maclen + 6]
    else:
        raise FeatureError(f"checksum offload of a frame with EtherType {ethertype.hex()}")
    l4 = maclen + iplen
    if proto == 6:
        return TxContext(maclen, iplen, (frame[l4 + 12] >> 4) * 4, ipv6, L4Type.TCP)
    if proto == 17:
        return TxContext(maclen, iplen, 8, ipv6, L4Type.UDP)
    raise FeatureError(f"checksum offload of IP protocol {proto}")


def tx_request(frame: bytes, request: TxOffload, features: Offload) -> tuple[bytes | None, int, int]:
    """(context descriptor or None, offload command bits, VLAN tag) for ``frame``; raises
    :class:`FeatureError` for an offload whose feature is off."""
    context, cmd, vlan = None, 0, 0
    if request.gso_size or request.csum:
        ctx = _headers(frame)
        if request.gso_size:
            if not features & Offload.TSO:
                raise FeatureError("tso is off")
            if ctx.l4t is not L4Type.TCP:
                raise FeatureError("TSO of a frame that is not TCP")
            cmd |= d.TX_CMD_TSE.mask
        else:
            if not features & Offload.TXCSUM:
                raise FeatureError("tx-checksum is off")
            cmd |= d.TX_CMD_TXSM.mask | (0 if ctx.ipv6 else d.TX_CMD_IXSM.mask)
        context = TxContext(ctx.maclen, ctx.iplen, ctx.l4len, ctx.ipv6, ctx.l4t, request.gso_size).encode()
    if request.vlan is not None:
        if not features & Offload.TXVLAN:
            raise FeatureError("txvlan is off")
        cmd |= d.TX_CMD_VLE.mask
        vlan = request.vlan
    return context, cmd, vlan

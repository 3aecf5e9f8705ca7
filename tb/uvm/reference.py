"""A small pure-Python reference of the NIC's forwarding, isolation and DMA-remapping rules.

Written from the documents (``docs/datapath.md`` "Embedded switch", ``docs/iommu.md``),
not from ``model/``: the scoreboard compares what the device did against what
this module says it must do.  It imports nothing of the project and nothing of
cocotb, so ``tests/test_reference.py`` checks it without a simulator.

Forwarding (:func:`forward`): given each switch port's configuration as the PF
driver sees it (:class:`PortView`) and one frame entering at port ``src``,
predict the switch decision, the frame each receiving function gets, and the
frame the uplink gets.  Ports: ``0`` = PF, ``1 + i`` = VF *i*, :data:`UPLINK`.

DMA (:class:`DmaReference`): given which requester IDs the host attached to
which domain and what it mapped there, predict whether a device access at
(RID, IOVA, length, direction) must fault, and if not which host address it
must reach.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from datasheet import device

UPLINK = -1
BROADCAST = b"\xff" * 6
TPID = b"\x81\x00"
ETH_HLEN = 14
VLAN_HLEN = 4
#: the longest frame (without FCS) the datasheet lets a descriptor chain carry, and the
#: switch's limit (one 802.1Q tag more); shorter than 14 bytes (18 tagged) is malformed
MAX_FRAME = device.MAX_FRAME
MAX_SWITCH_FRAME = MAX_FRAME + VLAN_HLEN

# switch decisions (the SW_* counters' names, lower case), plus the egress drop
UNICAST_INTERNAL = "unicast_internal"
TO_UPLINK = "uplink"
BROADCAST_KIND = "broadcast"
MULTICAST_KIND = "multicast"
DROP_SPOOF = "drop_spoof"
DROP_VLAN = "drop_vlan"
DROP_NO_MATCH = "drop_no_match"
DROP_MALFORMED = "drop_malformed"
DROP_NO_BUFFER = "drop_no_buffer"
DECISIONS = (
    UNICAST_INTERNAL,
    TO_UPLINK,
    BROADCAST_KIND,
    MULTICAST_KIND,
    DROP_SPOOF,
    DROP_VLAN,
    DROP_NO_MATCH,
    DROP_MALFORMED,
    DROP_NO_BUFFER,
)


@dataclass(frozen=True)
class PortView:
    """One function's switch port as its driver configured it.

    ``mac`` None: the function has no unicast address (a VF before its RESET).
    ``pvid`` None: no port VLAN.
    """

    mac: bytes | None
    multicast: frozenset = frozenset()
    vlans: frozenset = frozenset()
    bam: bool = True
    upe: bool = False
    mpe: bool = False
    spoofchk: bool = False
    rx_en: bool = True
    pvid: int | None = None

    @classmethod
    def vf(
        cls, active: bool, mac: bytes, multicast=(), vlans=(), upe=False, mpe=False, spoofchk=True, pvid=None
    ) -> PortView:
        """A VF's port the way the PF driver programs it: no address and no receive
        until the VF's RESET was accepted; filters and flags as requested/allowed."""
        return cls(
            mac=bytes(mac) if active else None,
            multicast=frozenset(bytes(m) for m in multicast),
            vlans=frozenset(vlans),
            bam=True,
            upe=bool(upe),
            mpe=bool(mpe),
            spoofchk=bool(spoofchk),
            rx_en=bool(active),
            pvid=pvid,
        )


@dataclass(frozen=True)
class Decision:
    """What the switch must do with one frame.

    ``counters``: the switch decision counters the frame increments (the SW_* names
    in lower case: a broadcast from a function counts ``broadcast`` and ``uplink``).
    ``deliveries``: port -> the bytes that function must receive.
    ``uplink``: the bytes the uplink must transmit, or None.
    """

    counters: frozenset
    deliveries: dict = field(default_factory=dict)
    uplink: bytes | None = None

    @property
    def receivers(self) -> frozenset:
        return frozenset(self.deliveries)

    @property
    def kind(self) -> str:
        """The one decision a frame is filed under (drops first, then the frame class)."""
        return primary_kind(self.counters)


def primary_kind(counters) -> str:
    for kind in (
        DROP_MALFORMED,
        DROP_SPOOF,
        DROP_VLAN,
        DROP_NO_MATCH,
        BROADCAST_KIND,
        MULTICAST_KIND,
        UNICAST_INTERNAL,
        TO_UPLINK,
    ):
        if kind in counters:
            return kind
    return DROP_NO_MATCH


def vlan_of(frame: bytes) -> int | None:
    """VID of an 802.1Q-tagged frame; None if untagged."""
    if len(frame) < ETH_HLEN or frame[12:14] != TPID:
        return None
    return int.from_bytes(frame[14:16], "big") & 0xFFF


def tag(frame: bytes, vid: int) -> bytes:
    return frame[:12] + TPID + (vid & 0xFFF).to_bytes(2, "big") + frame[12:]


def untag(frame: bytes) -> bytes:
    return frame[:12] + frame[12 + VLAN_HLEN :]


def frame_class(dst: bytes) -> str:
    if dst == BROADCAST:
        return BROADCAST_KIND
    return MULTICAST_KIND if dst[0] & 1 else UNICAST_INTERNAL


def forward(frame: bytes, src: int, ports: dict) -> Decision:
    """The switch decision for ``frame`` entering at ``src`` (``ports``: port -> PortView)."""
    frame = bytes(frame)
    vid = vlan_of(frame)
    if not ETH_HLEN + (VLAN_HLEN if vid is not None else 0) <= len(frame) <= MAX_SWITCH_FRAME:
        return Decision(frozenset({DROP_MALFORMED}))
    if src != UPLINK:
        me = ports[src]
        if src != 0 and me.spoofchk and frame[6:12] != me.mac:
            return Decision(frozenset({DROP_SPOOF}))
        if me.pvid is not None:
            if vid is not None:
                return Decision(frozenset({DROP_VLAN}))
            frame, vid = tag(frame, me.pvid), me.pvid
    dst = frame[0:6]
    kind = frame_class(dst)
    if kind == BROADCAST_KIND:
        wanted = {p for p, v in ports.items() if v.bam}
        uplink = src != UPLINK
    elif kind == MULTICAST_KIND:
        wanted = {p for p, v in ports.items() if dst in v.multicast or v.mpe}
        uplink = src != UPLINK
    else:
        owners = {p for p, v in ports.items() if v.mac is not None and v.mac == dst}
        wanted = owners | {p for p, v in ports.items() if v.upe}
        uplink = src != UPLINK and not owners
    deliveries, refused = {}, False
    for p in sorted(wanted):
        v = ports[p]
        if p == src or not v.rx_en:
            continue
        if v.pvid is not None:
            if vid != v.pvid:
                refused = True
                continue
            deliveries[p] = untag(frame)
        elif vid is not None and vid not in v.vlans and not v.upe:
            refused = True
        else:
            deliveries[p] = frame
    counters = set()
    if kind != UNICAST_INTERNAL or deliveries:
        counters.add(kind)
    if uplink:
        counters.add(TO_UPLINK)
    elif not deliveries:
        counters.add(DROP_VLAN if refused else DROP_NO_MATCH)
    return Decision(frozenset(counters), deliveries, frame if uplink else None)


# -- DMA remapping -------------------------------------------------------------------------
PAGE = 4096
ADDRESS_WIDTH = 48  # the domains the host builds are 4-level (48-bit)
PROT_READ, PROT_WRITE = 1, 2
PASSTHROUGH = "passthrough"

# why a predicted access must fault
NO_CONTEXT = "no_context"  # the RID is not attached (root or context entry not present)
NOT_MAPPED = "not_mapped"  # the domain has no mapping there
DENIED = "denied"  # mapped without the needed permission
BEYOND_AW = "beyond_aw"  # above the domain's address width


@dataclass(frozen=True)
class DmaExpect:
    fault: str | None  # None: the access must succeed
    phys: int | None = None  # host address of the first byte when it succeeds


@dataclass
class _Mapping:
    iova: int
    size: int
    phys: int
    prot: int


def _iova(m: _Mapping) -> int:
    return m.iova


class DmaReference:
    """Shadow of the host's IOMMU programming: attachments and mappings, by domain key."""

    def __init__(self):
        self.context: dict[int, object] = {}  # rid -> domain key or PASSTHROUGH
        self._maps: dict[object, list[_Mapping]] = {}  # domain key -> mappings sorted by iova

    # -- what the host did
    def attach(self, rid: int, domain) -> None:
        self.context[rid] = domain
        self._maps.setdefault(domain, [])

    def attach_passthrough(self, rid: int) -> None:
        self.context[rid] = PASSTHROUGH

    def detach(self, rid: int) -> None:
        self.context.pop(rid, None)

    def domain_of(self, rid: int):
        return self.context.get(rid)

    def map(self, domain, iova: int, phys: int, size: int, prot: int) -> None:
        maps = self._maps.setdefault(domain, [])
        for m in maps:
            if m.iova < iova + size and iova < m.iova + m.size:
                raise ValueError(f"IOVA {iova:#x}+{size:#x} overlaps a mapping at {m.iova:#x}")
        bisect.insort(maps, _Mapping(iova, size, phys, prot), key=_iova)

    def unmap(self, domain, iova: int, size: int | None = None) -> None:
        """Remove the mapping at ``iova``, or every mapping inside [iova, iova+size)."""
        maps = self._maps.get(domain, [])
        end = iova + 1 if size is None else iova + size
        gone = [m for m in maps if iova <= m.iova < end]
        if not gone or (size is not None and any(m.iova + m.size > end for m in gone)):
            raise KeyError(f"no mapping{'s' if size else ''} at IOVA {iova:#x}" + (f"+{size:#x}" if size else ""))
        self._maps[domain] = [m for m in maps if m not in gone]

    def mappings(self, domain) -> list[tuple[int, int, int, int]]:
        return [(m.iova, m.size, m.phys, m.prot) for m in self._maps.get(domain, [])]

    def _find(self, domain, addr: int) -> _Mapping | None:
        maps = self._maps.get(domain, [])
        k = bisect.bisect_right(maps, addr, key=_iova) - 1
        if k >= 0 and addr < maps[k].iova + maps[k].size:
            return maps[k]
        return None

    # -- what the hardware must do
    def predict(self, rid: int, iova: int, length: int, is_write: bool) -> DmaExpect:
        domain = self.context.get(rid)
        if domain is None:
            return DmaExpect(NO_CONTEXT)
        if domain == PASSTHROUGH:
            return DmaExpect(None, iova)
        if iova < 0 or iova + length > 1 << ADDRESS_WIDTH:
            return DmaExpect(BEYOND_AW)
        need = PROT_WRITE if is_write else PROT_READ
        first, addr, end = None, iova, iova + max(length, 1)
        while addr < end:
            m = self._find(domain, addr)
            if m is None:
                return DmaExpect(NOT_MAPPED)
            if not m.prot & need:
                return DmaExpect(DENIED)
            if first is None:
                first = m.phys + (addr - m.iova)
            addr = m.iova + m.size
        return DmaExpect(None, first)

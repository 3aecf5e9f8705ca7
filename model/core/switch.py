"""Embedded switch (VEB) between the PF, the VFs and the uplink port.

Ports: ``0`` = PF, ``1 + i`` = VF i, :data:`PORT_UPLINK` = the uplink. Every
function's filters live in the PF's BAR0 (``SW_FN_CTRL``, ``SW_MAC_*``,
``SW_MC_*``, ``SW_VLAN``, element ``fn``), plain RW registers the PF driver
programs; a VF cannot reach them. Bus writes to them mark the lookup tables
stale (``on_write`` hooks); the tables are rebuilt on the next frame, so
forwarding is dictionary lookups, not a scan of every function.

:meth:`Switch.forward` applies, in order:

1. Bounds: shorter than 14 bytes (18 if tagged 0x8100) or longer than
   ``MAX_FRAME + 4``: dropped (``SW_DROP_MALFORMED``).
2. Anti-spoofing, VF ports only: with ``SPOOFCHK`` set, a source MAC other
   than the VF's valid ``SW_MAC`` is dropped (``SW_DROP_SPOOF``).
3. Port VLAN at ingress: a function with ``PVLAN_EN`` gets an 802.1Q tag with
   its ``PVID`` inserted; a frame it sends already tagged is dropped
   (``SW_DROP_VLAN``).
4. Destination: broadcast goes to every ``BAM`` function, multicast to every
   function listing the address in ``SW_MC`` or with ``MPE``, unicast to the
   function(s) owning the MAC plus every ``UPE`` function; broadcast,
   multicast and unicast no function owns also go to the uplink when the
   source is a function. Never back to the source port; only to functions
   with ``RX_EN``.
5. Egress VLAN: a ``PVLAN_EN`` receiver takes only frames tagged with its PVID
   and gets them untagged; any other receiver takes a tagged frame only if the
   VID is in its ``SW_VLAN`` list or it has ``UPE``. Untagged frames pass.

Counters (PF BAR0, 32-bit wrap): ``SW_BROADCAST`` / ``SW_MULTICAST`` once per
such frame past ingress; ``SW_UNICAST_INTERNAL`` once per unicast frame that
reached at least one function; ``SW_TO_UPLINK`` per frame handed to the uplink
port; a frame that reached no port at all counts ``SW_DROP_VLAN`` if a VLAN
filter refused it somewhere, else ``SW_DROP_NO_MATCH``. Ingress drops of a
function's frame (1-3) also count in that function's ``STAT_TX_DROPS``.
Per-queue RX drops (no buffer) are the queue engine's business.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from datasheet import device, regs
from model import events as ev

if TYPE_CHECKING:
    import logging

    from model.core.pcap import PcapWriter
    from model.core.regfile import RegisterFile
    from model.inject import Injection

PORT_UPLINK = -1
TPID_8021Q = b"\x81\x00"
BROADCAST = b"\xff" * 6
ETH_HLEN = 14
VLAN_HLEN = 4
MAX_SWITCH_FRAME = device.MAX_FRAME + VLAN_HLEN

CTRL = {f.name: f for f in regs.SW_FN_CTRL.fields}
VALID = regs.SW_MAC_HI.field("VALID")
VID = regs.SW_VLAN.field("VID")
COUNTER = {r.name[len("SW_") :]: r for r in regs.SW_STATS}
FILTER_REGS = (regs.SW_FN_CTRL, regs.SW_MAC_LO, regs.SW_MAC_HI, regs.SW_MC_LO, regs.SW_MC_HI, regs.SW_VLAN)


@dataclass(frozen=True)
class FnFilters:
    """One function's switch configuration, decoded from the SW_* registers."""

    fn: int
    mac: bytes | None
    multicast: frozenset[bytes]
    vlans: frozenset[int]
    bam: bool
    upe: bool
    mpe: bool
    spoofchk: bool
    rx_en: bool
    pvlan: bool
    pvid: int


def filters_of(rf: RegisterFile, fn: int) -> FnFilters:
    """Decode switch port ``fn``'s filters from the PF register file ``rf``."""
    ctrl = rf.get(regs.SW_FN_CTRL, fn)
    mc_slots = range(fn * device.SW_MC_PER_FN, (fn + 1) * device.SW_MC_PER_FN)
    multicast = (regs.sw_mac_decode(rf.get(regs.SW_MC_LO, k), rf.get(regs.SW_MC_HI, k)) for k in mc_slots)
    vlan_slots = range(fn * device.SW_VLANS_PER_FN, (fn + 1) * device.SW_VLANS_PER_FN)
    vlans = (rf.get(regs.SW_VLAN, k) for k in vlan_slots)
    bit = {name: bool(f.get(ctrl)) for name, f in CTRL.items() if f.width == 1}
    return FnFilters(
        fn=fn,
        mac=regs.sw_mac_decode(rf.get(regs.SW_MAC_LO, fn), rf.get(regs.SW_MAC_HI, fn)),
        multicast=frozenset(m for m in multicast if m is not None),
        vlans=frozenset(VID.get(v) for v in vlans if VALID.get(v)),
        bam=bit["BAM"],
        upe=bit["UPE"],
        mpe=bit["MPE"],
        spoofchk=bit["SPOOFCHK"],
        rx_en=bit["RX_EN"],
        pvlan=bit["PVLAN_EN"],
        pvid=CTRL["PVID"].get(ctrl),
    )


class _Tables:
    """Lookup tables over the existing functions (ports 0 .. n-1)."""

    def __init__(self, rf: RegisterFile, n: int):
        self.filters = [filters_of(rf, fn) for fn in range(n)]
        receivers = [f for f in self.filters if f.rx_en]
        self.by_mac: dict[bytes, tuple[int, ...]] = {}
        for f in self.filters:  # an owned MAC stays local even with RX_EN clear
            if f.mac is not None:
                self.by_mac[f.mac] = self.by_mac.get(f.mac, ()) + (f.fn,)
        self.by_mc: dict[bytes, tuple[int, ...]] = {}
        for f in receivers:
            for mac in f.multicast:
                self.by_mc[mac] = self.by_mc.get(mac, ()) + (f.fn,)
        self.bam = tuple(f.fn for f in receivers if f.bam)
        self.upe = tuple(f.fn for f in receivers if f.upe)
        self.mpe = tuple(f.fn for f in receivers if f.mpe)


def _vid(frame: bytes) -> int | None:
    """VID of an 802.1Q-tagged frame, None if untagged."""
    if frame[12:14] != TPID_8021Q:
        return None
    return int.from_bytes(frame[14:16], "big") & 0x0FFF


def insert_tag(frame: bytes, vid: int) -> bytes:
    return frame[:12] + TPID_8021Q + (vid & 0x0FFF).to_bytes(2, "big") + frame[12:]


def strip_tag(frame: bytes) -> bytes:
    return frame[:12] + frame[12 + VLAN_HLEN :]


class Switch:
    """The VEB. Wiring (all explicit): ``pf_regs`` holds the filters and the SW_* counters;
    ``ports()`` is the number of function ports (1 + NumVFs); ``deliver(fn, frame)`` hands a
    frame to function ``fn``'s RX queue (False: no buffer); ``to_uplink(frame)`` sends it out;
    ``tx_drop(fn)`` counts an ingress drop in that function's STAT_TX_DROPS; ``capture()`` is
    the open pcap writer or None. Each frame is published as a
    :class:`~model.events.SwitchDecision`; :class:`~model.inject.InjectionPoints` may
    misroute one."""

    def __init__(
        self,
        pf_regs: RegisterFile,
        *,
        ports: Callable[[], int],
        deliver: Callable[[int, bytes], bool],
        to_uplink: Callable[[bytes], bool],
        tx_drop: Callable[[int], None],
        capture: Callable[[], PcapWriter | None],
        events: ev.EventBus,
        log: logging.Logger,
    ):
        self.rf = pf_regs
        self._ports_now, self._deliver, self._to_uplink = ports, deliver, to_uplink
        self._tx_drop, self._capture = tx_drop, capture
        self.log = log
        self._decision = events.topic(ev.SwitchDecision)
        self.misroute_next: tuple[set[int], Injection] | None = None  # injection point: (ports, Injection)
        self._tables_cache: _Tables | None = None
        self._ports = -1  # number of function ports the tables cover
        for reg in FILTER_REGS:
            pf_regs.on_write(reg, self._filters_written)

    # -- lookup tables -----------------------------------------------------------------
    def _filters_written(self, old: int, new: int) -> None:
        self._tables_cache = None

    def invalidate(self) -> None:
        """Rebuild the tables before the next frame (PF reset, or registers changed with ``set``)."""
        self._tables_cache = None

    def _tables(self) -> _Tables:
        ports = self._ports_now()
        if self._tables_cache is None or ports != self._ports:
            self._tables_cache = _Tables(self.rf, ports)
            self._ports = ports
        return self._tables_cache

    def filters(self, fn: int) -> FnFilters:
        return self._tables().filters[fn]

    # -- counters ------------------------------------------------------------------------
    def _count(self, name: str, moved: list) -> None:
        self.rf.add(COUNTER[name], 1)
        moved.append(name)

    def counters(self) -> dict[str, int]:
        return {name: self.rf.get(reg) for name, reg in COUNTER.items()}

    # -- forwarding ----------------------------------------------------------------------
    def forward(self, frame: bytes, src: int) -> bool:
        """Switch one frame entering from port ``src``; synchronous.

        Returns False if the switch dropped it at ingress (malformed, spoofed
        source MAC, tagged from a port-VLAN port): the sender's TX descriptor
        should report it dropped. True means the switch took the frame; whether
        any port accepted it shows only in the SW_* counters.
        """
        frame = bytes(frame)
        capture = self._capture()
        if capture is not None:
            capture.write(frame)
        moved, deliveries, uplink = [], [], []
        reason = self._forward(frame, src, moved, deliveries, uplink)
        if self._decision:
            self._decision.emit(
                ev.SwitchDecision(src, frame, tuple(deliveries), tuple(uplink), frozenset(moved), reason)
            )
        return reason is None

    def _forward(self, frame: bytes, src: int, moved: list, deliveries: list, uplink: list) -> str | None:
        """The decision; returns the ingress drop counter's name, or None if the switch took it."""
        tables = self._tables()
        if not (src == PORT_UPLINK or 0 <= src < len(tables.filters)):
            self.log.warning("switch: frame from port %d, which does not exist: dropped", src)
            return "NO_PORT"
        vid = _vid(frame) if len(frame) >= ETH_HLEN else None
        if not ETH_HLEN + (VLAN_HLEN if vid is not None else 0) <= len(frame) <= MAX_SWITCH_FRAME:
            return self._drop_ingress(src, "DROP_MALFORMED", f"length {len(frame)}", moved)
        if src != PORT_UPLINK:
            f = tables.filters[src]
            if src != device.PF_PORT and f.spoofchk and frame[6:12] != f.mac:
                return self._drop_ingress(src, "DROP_SPOOF", f"source MAC {frame[6:12].hex(':')}", moved)
            if f.pvlan:
                if vid is not None:
                    return self._drop_ingress(src, "DROP_VLAN", f"tagged (VID {vid}) from a port-VLAN port", moved)
                frame, vid = insert_tag(frame, f.pvid), f.pvid
        self._switch(tables, frame, src, vid, moved, deliveries, uplink)
        return None

    def _drop_ingress(self, src: int, counter: str, why: str, moved: list) -> str:
        self._count(counter, moved)
        if src != PORT_UPLINK:
            self._tx_drop(src)
        self.log.debug("switch: frame from port %d dropped: %s", src, why)
        return counter

    def _switch(
        self, tables: _Tables, frame: bytes, src: int, vid: int | None, moved: list, deliveries: list, uplink: list
    ) -> None:
        dst = frame[0:6]
        internal = src != PORT_UPLINK
        owned = False
        if dst == BROADCAST:
            kind, candidates, to_uplink = "BROADCAST", tables.bam, internal
        elif dst[0] & 1:
            listed = tables.by_mc.get(dst, ())
            kind, to_uplink = "MULTICAST", internal
            candidates = sorted(set(listed).union(tables.mpe)) if tables.mpe else listed
        else:
            owners = tables.by_mac.get(dst, ())
            owned = bool(owners)
            kind, to_uplink = "UNICAST_INTERNAL", internal and not owned
            candidates = sorted(set(owners).union(tables.upe)) if tables.upe else owners
            candidates = self._misrouted(candidates, src)
        if kind != "UNICAST_INTERNAL":
            self._count(kind, moved)

        delivered = vlan_refused = False
        for fn in candidates:
            if fn == src:
                continue
            f = tables.filters[fn]
            if not f.rx_en:
                continue
            if f.pvlan:
                if vid != f.pvid:
                    vlan_refused = True
                    continue
                out = strip_tag(frame)
            elif vid is not None and vid not in f.vlans and not f.upe:
                vlan_refused = True
                continue
            else:
                out = frame
            delivered = True
            deliveries.append((fn, out, self._deliver(fn, out)))
        if delivered and kind == "UNICAST_INTERNAL":
            self._count(kind, moved)
        if to_uplink:
            self._count("TO_UPLINK", moved)
            uplink.append((frame, self._to_uplink(frame)))
        elif not delivered:
            self._count("DROP_VLAN" if vlan_refused else "DROP_NO_MATCH", moved)

    def _misrouted(self, owners: Sequence[int], src: int) -> Sequence[int]:
        """Verification only (``InjectionPoints.misroute_next``): the next unicast frame between
        two of the armed ports goes to a third of them instead of its owner."""
        if self.misroute_next is None:
            return owners
        ports, injection = self.misroute_next
        if src not in ports or not owners or owners[0] not in ports:
            return owners
        others = sorted(p for p in ports if p not in (src, owners[0]))
        if not others:
            return owners
        self.misroute_next = None
        injection.fire(fn=others[0])
        self.log.warning("switch: injected misroute of a frame for port %d to port %d", owners[0], others[0])
        return (others[0],)

"""Scoreboard: every observation checked against :mod:`tb.uvm.reference`.

Frames.  A frame a driver queued (or the link partner sent) must enter the
switch once, from its port.  At the switch the reference, fed with each port's
configuration as the PF driver sees it at that instant, predicts which
functions get which bytes and whether the uplink gets it; the switch monitor
says what happened.  Every frame a function's RX queue accepted must then reach
that function's net device byte for byte, and every frame handed to an up
uplink must reach the link partner.  Reported: missing, extra, corrupted and
misrouted frames, and counters that disagree.

While a port is being reconfigured or reset (a :class:`~tb.uvm.items.Transition`
from an agent), its frames may legitimately be lost and its filters are in
flux: a delivery to it is then allowed if the reference allows it under the
port's configuration from before *or* after the change, and required only if
both require it.

Offloads.  The frames a driver queued with an offload request are expected as the reference
makes them (checksums filled, TSO segments, the VLAN tag; :mod:`tb.uvm.offload_reference`).
Each frame a function's RX queue accepts is predicted through that function's receive
offloads as its driver configured them (VLAN strip, checksum verdicts, RSS hash, type and
queue); the net device must get the predicted bytes on the predicted queue with the
predicted write-back report ("rx_offload").  Frames of a port whose offloads are being
changed are only checked for their bytes (stripped or not).

DMA.  Every request the IOMMU translated is checked against the host's own
record of what it attached and mapped (:class:`~tb.uvm.reference.DmaReference`):
a DMA that must fault and did not, one that reached a different host page than
the mapping says, one that faulted for the wrong reason or should not have
faulted at all.  The IOMMU's fault log must hold every fault the monitor saw.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from cocotb.triggers import Timer
from pyuvm import uvm_scoreboard, uvm_subscriber

from datasheet.descriptors import STATUS_TRUNC
from tb.uvm import offload_reference as offref
from tb.uvm import reference as ref
from tb.uvm.items import (
    DmaEvent,
    RxFrame,
    SwitchEvent,
    Transition,
    TxFrame,
    UplinkFrame,
)

#: FaultReason names the reference's fault classes stand for
FAULT_CLASSES = {
    ref.NO_CONTEXT: {"ROOT_ENTRY_NOT_PRESENT", "CONTEXT_ENTRY_NOT_PRESENT"},
    ref.NOT_MAPPED: {"SLPTE_NOT_PRESENT"},
    ref.DENIED: {"WRITE_DENIED", "READ_DENIED"},
    ref.BEYOND_AW: {"ADDRESS_BEYOND_AW"},
}
MAX_REPORTED = 200
TRUNC = STATUS_TRUNC.mask


def imp(parent, name, fn):
    """An analysis export of ``parent`` that calls ``fn`` (one per input stream)."""
    return uvm_subscriber.uvm_AnalysisImp(name, parent, fn)


def first_difference(a: bytes, b: bytes) -> int:
    for k, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return k
    return min(len(a), len(b))


def _take(pool: list, frame: bytes) -> bool:
    for k, f in enumerate(pool):
        if f == frame:
            del pool[k]
            return True
    return False


def _describe(frame: bytes) -> str:
    return f"{len(frame)} B {frame[6:12].hex(':')} -> {frame[0:6].hex(':')}"


class Scoreboard(uvm_scoreboard):
    def build_phase(self):
        self.switch_export = imp(self, "switch_export", self.write_switch)
        self.rx_export = imp(self, "rx_export", self.write_rx)
        self.uplink_export = imp(self, "uplink_export", self.write_uplink)
        self.tx_export = imp(self, "tx_export", self.write_tx)
        self.dma_export = imp(self, "dma_export", self.write_dma)
        self.transition_export = imp(self, "transition_export", self.write_transition)
        self.wb_export = imp(self, "wb_export", self.write_writeback)
        self.truncated = Counter()  # port -> RX frames the device truncated (ring too full)
        self.reset_export = imp(self, "reset_export", self.write_reset)
        self.refused = Counter()  # port -> deliveries its RX queue refused since its last reset
        self.late_drops = Counter()  # port -> accepted frames the queue dropped later (QRX_NOBUF)
        self.views = dict  # set by the env: port -> PortView (PF driver's view)
        self.rx_view = lambda port: None  # set by the env: port -> offload_reference.RxView (drivers' view)
        self.rx_expect: dict = defaultdict(list)  # (port, frame) -> predicted RxExpect, in order
        self.port_of_rid = lambda rid: None
        self.dma_ref = ref.DmaReference()
        self.errors: list[tuple[str, str]] = []
        self.stats = Counter()
        self.tx_pending: dict[int, list] = defaultdict(list)
        self.tx_maybe: dict[int, list] = defaultdict(list)
        self.rx_pending: dict[int, list] = defaultdict(list)
        self.rx_maybe: dict[int, list] = defaultdict(list)
        self.up_pending: list = []
        self.up_maybe: list = []
        self.in_transition: Counter = Counter()
        self._snapshots: dict[int, ref.PortView] = {}
        self.expected_counters = Counter()  # SW_* increments the reference predicted (exact frames)
        self.dma_faults = Counter()  # (port, reason) -> faults seen

    # -- reporting --------------------------------------------------------------------------
    def error(self, kind: str, message: str) -> None:
        self.stats["errors"] += 1
        if len(self.errors) < MAX_REPORTED:
            self.errors.append((kind, message))
            self.logger.error("[%s] %s", kind, message)

    def error_kinds(self) -> set[str]:
        return {kind for kind, _ in self.errors}

    # -- transitions --------------------------------------------------------------------------
    def write_transition(self, t: Transition) -> None:
        views = self.views()
        for port in t.ports:
            if t.begin:
                if not self.in_transition[port] and port in views:
                    self._snapshots[port] = views[port]
                self.in_transition[port] += 1
                # whatever is queued for or by this port may now be lost
                self.rx_maybe[port] += self.rx_pending.pop(port, [])
                self.tx_maybe[port] += self.tx_pending.pop(port, [])
                if port == ref.UPLINK:
                    self.up_maybe += self.up_pending
                    self.up_pending = []
            else:
                self.in_transition[port] -= 1
                if self.in_transition[port] <= 0:
                    del self.in_transition[port]
                    self._snapshots.pop(port, None)

    def _unsettled(self, port: int) -> bool:
        return port in self.in_transition

    def _variants(self, views: dict):
        """The configurations the ports in flux may be in besides the current one."""
        moving = [p for p in views if self._unsettled(p)]
        before = dict(views)
        before.update({p: self._snapshots[p] for p in moving if p in self._snapshots})
        cleared = dict(views)
        cleared.update({p: ref.PortView(None, bam=False, rx_en=False) for p in moving})
        unreset = dict(views)
        unreset.update(
            {
                p: ref.PortView(
                    None,
                    views[p].multicast,
                    views[p].vlans,
                    spoofchk=views[p].spoofchk,
                    rx_en=False,
                    pvid=views[p].pvid,
                )
                for p in moving
                if p != 0
            }
        )
        return before, cleared, unreset

    # -- TX side: what drivers and the partner queued ----------------------------------------
    def write_tx(self, item: TxFrame) -> None:
        """A driver queued ``item.frame`` on its ring (or the partner is sending it)."""
        if self._unsettled(item.port):
            self.tx_maybe[item.port].append(item.frame)
        else:
            self.tx_pending[item.port].append(item.frame)
        self.stats["tx_expected"] += 1

    def withdraw_tx(self, port: int, frame: bytes) -> None:
        """The driver said the ring was full / the link was down: the frame was not queued."""
        if not _take(self.tx_pending[port], frame):
            _take(self.tx_maybe[port], frame)
        self.stats["tx_expected"] -= 1

    # -- the switch -------------------------------------------------------------------------
    def write_switch(self, ev: SwitchEvent) -> None:
        self.stats["switch_events"] += 1
        src = ev.src
        if not (_take(self.tx_pending[src], ev.frame) or _take(self.tx_maybe[src], ev.frame)):
            self.error("extra_tx", f"a frame nobody queued entered the switch from port {src}: {_describe(ev.frame)}")
        views = self.views()
        try:
            now = ref.forward(ev.frame, src, views)
        except KeyError:
            self.error("unknown_port", f"frame from port {src}, which the PF driver does not know")
            return
        involved = {p for p in views if self._unsettled(p)}
        lenient = bool(involved) or self._unsettled(ref.UPLINK)
        if lenient:
            # a port in flux may be in its old or new configuration, or half-way: cleared by a
            # reset (no address, no receive), or re-programmed as a VF before its RESET
            outcomes = [now]
            for variant in self._variants(views):
                outcomes.append(ref.forward(ev.frame, src, variant))
            receivers = set().union(*(o.receivers for o in outcomes))
            allowed = {p: {o.deliveries.get(p) for o in outcomes} - {None} for p in receivers}
            required = {
                p: f
                for p, f in now.deliveries.items()
                if p not in involved and src not in involved and all(o.deliveries.get(p) == f for o in outcomes)
            }
            uplink_allowed = {o.uplink for o in outcomes} - {None}
            uplink_required = (
                now.uplink if src not in involved and all(o.uplink == now.uplink for o in outcomes) else None
            )
            self.stats["lenient_frames"] += 1
        else:
            allowed = {p: {f} for p, f in now.deliveries.items()}
            required = dict(now.deliveries)
            uplink_allowed = {now.uplink} - {None}
            uplink_required = now.uplink
            self.expected_counters.update(now.counters)
            observed = set(ev.counters)
            if ref.DROP_NO_BUFFER in observed:
                observed.discard(ref.DROP_NO_BUFFER)
            if observed != set(now.counters):
                self.error(
                    "counters",
                    f"frame from port {src} ({_describe(ev.frame)}): switch counted "
                    f"{sorted(observed)}, reference {sorted(now.counters)}",
                )
        got = {}
        for port, frame, accepted in ev.deliveries:
            if port in got:
                self.error("duplicate", f"frame from port {src} delivered twice to port {port}")
            got[port] = frame
            ok = allowed.get(port)
            if not ok:
                self.error(
                    "misroute",
                    f"frame from port {src} ({_describe(ev.frame)}) delivered to port "
                    f"{port}; reference receivers {sorted(now.receivers)}",
                )
            elif frame not in ok:
                want = next(iter(ok))
                self.error(
                    "corrupt",
                    f"frame from port {src} to port {port} altered in the switch "
                    f"(first difference at byte {first_difference(frame, want)})",
                )
            if accepted:
                self._expect_rx(port, frame)
                self.stats["rx_expected"] += 1
            else:
                self.refused[port] += 1
                self.stats["drop_no_buffer"] += 1
        for port, frame in required.items():
            if port not in got:
                self.error(
                    "missing",
                    f"frame from port {src} ({_describe(frame)}) not delivered to port "
                    f"{port}; reference receivers {sorted(now.receivers)}",
                )
        for frame, sent in ev.uplink:
            if frame not in uplink_allowed:
                self.error(
                    "misroute" if not uplink_allowed else "corrupt",
                    f"frame from port {src} ({_describe(frame)}) handed to the uplink; reference "
                    f"{'says no' if not uplink_allowed else 'expects other bytes'}",
                )
            if sent:
                pool = self.up_maybe if self._unsettled(ref.UPLINK) else self.up_pending
                pool.append(frame)
        if uplink_required is not None and not ev.uplink:
            self.error("missing", f"frame from port {src} ({_describe(uplink_required)}) not handed to the uplink")

    def _expect_rx(self, port: int, frame: bytes) -> None:
        """A frame the port's RX queue accepted: what its net device must get, per the reference
        of the receive offloads (strict), or either bytes it may get while its offloads change."""
        view = self.rx_view(port)
        exp = offref.rx_predict(frame, view) if view is not None else None
        if self._unsettled(port) or exp is None:
            self.rx_maybe[port].append(frame)
            if exp is not None and exp.frame != frame:
                self.rx_maybe[port].append(exp.frame)
            return
        self.rx_pending[port].append(exp.frame)
        self.rx_expect[port, exp.frame].append(exp)

    def _check_rx_offload(self, item: RxFrame, exp: offref.RxExpect) -> None:
        info = item.info
        got = (item.queue, info.rss_hash, info.rss_type, info.vlan, info.ip_checksum, info.l4_checksum)
        want = (exp.queue, exp.rss_hash, exp.rss_type, exp.vlan, exp.ip_checksum, exp.l4_checksum)
        self.stats["rx_offload_checked"] += 1
        if got != want:
            names = ("queue", "rss_hash", "rss_type", "vlan", "ip_checksum", "l4_checksum")
            diff = ", ".join(f"{n} {g} (reference {w})" for n, g, w in zip(names, got, want) if g != w)
            self.error("rx_offload", f"port {item.port} received {_describe(item.frame)} with {diff}")

    def write_reset(self, ev) -> None:
        """A function reset clears its queue counters (QRX_NOBUF)."""
        if ev.port is not None:
            self.refused[ev.port] = 0

    def no_buffer_allowance(self, port: int, qrx_nobuf: int) -> None:
        """The device's QRX_NOBUF of ``port`` counts every frame its RX queue dropped for want of
        a buffer: those it refused at the switch (seen) and those it took and could not place
        (not seen).  The difference may go missing."""
        self.late_drops[port] = max(0, qrx_nobuf - self.refused[port])
        self.stats["late_no_buffer"] += self.late_drops[port]

    def write_writeback(self, wb) -> None:
        """An RX descriptor written back with TRUNC: the frame did not fit the free buffers; the
        net device drops it (documented), so one frame for that port may go missing."""
        if wb.rx and wb.status & TRUNC:
            self.truncated[wb.port] += 1
            self.stats["rx_truncated"] += 1

    # -- RX side: what the net devices and the link partner got --------------------------------
    def write_rx(self, item: RxFrame) -> None:
        self.stats["rx_frames"] += 1
        port = item.port
        if _take(self.rx_pending[port], item.frame):
            expected = self.rx_expect.get((port, item.frame))
            if expected and item.info is not None:
                self._check_rx_offload(item, expected.pop(0))
            return
        if _take(self.rx_maybe[port], item.frame):
            return
        near = [f for f in self.rx_pending[port] + self.rx_maybe[port] if len(f) == len(item.frame)]
        if near:
            k = first_difference(item.frame, near[0])
            self.error(
                "corrupt",
                f"port {port} received a corrupted frame ({_describe(item.frame)}; first difference at byte {k})",
            )
            pool = self.rx_pending[port] if near[0] in self.rx_pending[port] else self.rx_maybe[port]
            _take(pool, near[0])
        else:
            self.error("extra_rx", f"port {port} received a frame the switch never gave it: {_describe(item.frame)}")

    def write_uplink(self, item: UplinkFrame) -> None:
        self.stats["uplink_frames"] += 1
        if not (_take(self.up_pending, item.frame) or _take(self.up_maybe, item.frame)):
            self.error("extra_uplink", f"the link partner received an unexpected frame: {_describe(item.frame)}")

    # -- DMA ----------------------------------------------------------------------------------
    def write_dma(self, ev: DmaEvent) -> None:
        self.stats["dma"] += 1
        exp = self.dma_ref.predict(ev.rid, ev.iova, ev.length, ev.is_write)
        port = self.port_of_rid(ev.rid)
        if ev.fault_reason is not None:
            self.dma_faults[port, ev.fault_reason] += 1
            self.stats["dma_faults"] += 1
        if exp.fault is None and ev.fault_reason is None and ev.phys == exp.phys:
            return  # as the host mapped it
        what = f"{'write' if ev.is_write else 'read'} of {ev.length} B at IOVA {ev.iova:#x} from RID {ev.rid:#06x}"
        if exp.fault is None and ev.fault_reason is not None:
            self.error("dma_fault", f"{what} faulted ({ev.fault_reason}) though the host mapped it")
        elif exp.fault is not None and ev.fault_reason is None:
            self.error("isolation", f"{what} must fault ({exp.fault}) but reached host {ev.phys:#x}")
        elif exp.fault is None and ev.phys != exp.phys:
            self.error("isolation", f"{what} reached host {ev.phys:#x}; the mapping says {exp.phys:#x}")
        elif exp.fault is not None and ev.fault_reason not in FAULT_CLASSES[exp.fault]:
            self.error("fault_reason", f"{what} faulted with {ev.fault_reason}, reference: {exp.fault}")

    # -- end of test --------------------------------------------------------------------------
    def outstanding(self) -> int:
        return sum(map(len, self.tx_pending.values())) + sum(map(len, self.rx_pending.values())) + len(self.up_pending)

    async def drain(self, timeout_ns: int = 3_000_000, step_ns: int = 10_000) -> None:
        """Let the device finish: wait until nothing required is outstanding (or time runs out)."""
        waited = 0
        while self.outstanding() and waited < timeout_ns:
            await Timer(step_ns, "ns")
            waited += step_ns
        await Timer(step_ns, "ns")

    def final_check(self, iommu=None) -> None:
        for port, frames in self.tx_pending.items():
            if frames:
                self.error(
                    "missing",
                    f"{len(frames)} frame(s) queued by port {port} never entered the switch, "
                    f"first: {_describe(frames[0])}",
                )
        for port, frames in self.rx_pending.items():
            frames = frames[self.truncated[port] + self.late_drops[port] :]
            if frames:
                self.error(
                    "missing",
                    f"{len(frames)} frame(s) accepted for port {port} never reached its "
                    f"net device, first: {_describe(frames[0])}",
                )
        if self.up_pending:
            self.error(
                "missing",
                f"{len(self.up_pending)} frame(s) handed to the uplink never reached the "
                f"partner, first: {_describe(self.up_pending[0])}",
            )
        self.stats["lost_in_transition"] = (
            sum(map(len, self.rx_maybe.values())) + len(self.up_maybe) + sum(map(len, self.tx_maybe.values()))
        )
        if iommu is not None:
            log = iommu.faults
            if log.total != self.stats["dma_faults"]:
                self.error(
                    "fault_log",
                    f"IOMMU fault log counted {log.total} faults, the monitor saw {self.stats['dma_faults']}",
                )

    def summary(self) -> str:
        s = self.stats
        return (
            f"switch events {s['switch_events']}, rx frames {s['rx_frames']}, uplink frames "
            f"{s['uplink_frames']}, dma {s['dma']} ({s['dma_faults']} faults), lenient {s['lenient_frames']}, "
            f"no-buffer drops {s['drop_no_buffer']} (+{s['late_no_buffer']} after acceptance), "
            f"truncated {s['rx_truncated']}, lost in transitions {s['lost_in_transition']}, "
            f"offload reports checked {s['rx_offload_checked']}, "
            f"errors {s['errors']}"
        )

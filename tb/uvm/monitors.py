"""Monitors: what the device, the IOMMU, the switch and each net device did, from their events.

Nothing here drives the device, and nothing wraps a method of it: every observation comes
from ``nic.events`` (:mod:`model.events`), ``rc.iommu.events`` (:mod:`iommu.events`) and
each net device's packet tap, so the environment sees the same on any fabric.

* :class:`DeviceMonitor`: BAR0 writes (ring set-up and EITR it keeps track of itself; the
  mailbox registers' ones, published for the mailbox monitor), doorbells, config writes
  (VF Enable), MSI-X messages the functions sent, descriptor write-backs, resets, TX frames
  that asked for an offload, and the IOMMU's verdict on every DMA and its IOTLB fills;
* :class:`MailboxMonitor`: PF<->VF conversations rebuilt from the mailbox registers' writes;
* :class:`SwitchMonitor`: each frame through the switch with where it went;
* :class:`NetdevMonitor`: what each function's net device received, with the write-back's
  report (RSS hash and type, stripped VLAN tag, checksum verdicts).

Observers are plain synchronous callbacks: they never await, so they cannot change the
order of events in the simulation.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from pyuvm import uvm_analysis_port, uvm_monitor, uvm_subscriber

from datasheet import device, pci, regs
from datasheet import mailbox as mbx
from iommu import events as iommu_ev
from model import events as ev
from tb.lib.timing import now_ns
from tb.uvm import reference as ref
from tb.uvm.items import (
    ConfigWrite,
    DmaEvent,
    Doorbell,
    IotlbFill,
    MailboxEvent,
    MmioWrite,
    MsiEvent,
    ResetEvent,
    RxFrame,
    SwitchEvent,
    TxOffloadEvent,
    Writeback,
)

#: a reset counts as "with traffic in flight" if the device moved data this recently
IN_FLIGHT_NS = 20_000

_COUNTER_NAMES = {
    "UNICAST_INTERNAL": ref.UNICAST_INTERNAL,
    "TO_UPLINK": ref.TO_UPLINK,
    "BROADCAST": ref.BROADCAST_KIND,
    "MULTICAST": ref.MULTICAST_KIND,
    "DROP_SPOOF": ref.DROP_SPOOF,
    "DROP_NO_MATCH": ref.DROP_NO_MATCH,
    "DROP_VLAN": ref.DROP_VLAN,
    "DROP_MALFORMED": ref.DROP_MALFORMED,
}
#: model reset kinds -> the environment's (PF or VF)
_RESET_KINDS = {
    (False, "soft"): "pf_reset",
    (False, "flr"): "pf_flr",
    (True, "soft"): "vf_soft",
    (True, "flr"): "vf_flr",
}
#: what the device monitor does with a BAR0 write, by offset (any other write it ignores)
MAILBOX, EITR, RING_LEN, RING_CTL = "mailbox", "eitr", "ring_len", "ring_ctl"


def _bar0_actions(mailbox_dwords) -> dict[int, tuple[str, object]]:
    """offset -> (what, key): the mailbox registers' dwords (published for the mailbox
    monitor), EITR (key: the vector), each queue's TDLEN/RDLEN and TXDCTL/RXDCTL (key: (rx, q))."""
    actions: dict[int, tuple[str, object]] = {offset: (MAILBOX, None) for offset in mailbox_dwords}
    actions.update((regs.EITR.at(v), (EITR, v)) for v in range(regs.EITR.count))
    for q in range(device.PF_QUEUE_PAIRS):
        for reg, what, rx in (
            (regs.TDLEN, RING_LEN, False),
            (regs.RDLEN, RING_LEN, True),
            (regs.TXDCTL, RING_CTL, False),
            (regs.RXDCTL, RING_CTL, True),
        ):
            actions[reg.at(q)] = (what, (rx, q))
    return actions


#: a VF's: its message buffer and doorbell; the PF's: the buffers and doorbells of every VF
_VF_ACTIONS = _bar0_actions((*range(regs.VF_MBMEM.offset, regs.VF_MBMEM.end, 4), regs.VF_MAILBOX.offset))
_PF_ACTIONS = _bar0_actions(
    (*range(regs.PF_MBMEM.offset, regs.PF_MBMEM.end, 4), *range(regs.PF_MAILBOX.offset, regs.PF_MAILBOX.end, 4))
)
_RING_ENABLE = regs.TXDCTL.field("ENABLE").mask


class DeviceMonitor(uvm_monitor):
    """Turns the device's and the IOMMU's events into the environment's observations."""

    def build_phase(self):
        self.ap_mailbox = uvm_analysis_port("ap_mailbox", self)  # BAR0 writes to the mailbox registers
        self.ap_cfg = uvm_analysis_port("ap_cfg", self)
        self.ap_msi = uvm_analysis_port("ap_msi", self)
        self.ap_dma = uvm_analysis_port("ap_dma", self)
        self.ap_iotlb = uvm_analysis_port("ap_iotlb", self)
        self.ap_wb = uvm_analysis_port("ap_wb", self)
        self.ap_doorbell = uvm_analysis_port("ap_doorbell", self)
        self.ap_reset = uvm_analysis_port("ap_reset", self)
        self.ap_sriov = uvm_analysis_port("ap_sriov", self)
        self.ap_tx_offload = uvm_analysis_port("ap_tx_offload", self)
        self.system = None
        self.rids: dict[int, int] = {}  # port -> RID (the host's view)
        self.ports: dict[int, int] = {}  # RID -> port
        self.ring_len: dict = defaultdict(int)  # (port, rx, q) -> length written
        self.tails: dict = defaultdict(int)  # (port, rx, q) -> last tail rung
        self.eitr: dict = defaultdict(int)  # (port, vector) -> usec
        self.last_dma_ns = -1e30
        self.sriov_offset = None
        self._num_vfs_written = 0
        self.dma_faults = 0

    # -- wiring ---------------------------------------------------------------------------
    def attach(self, system) -> None:
        self.system = system
        events = system.nic.events
        for kind, handler in (
            (ev.MmioWrite, self._mmio),
            (ev.ConfigWrite, self._config_write),
            (ev.Interrupt, self._interrupt),
            (ev.Writeback, self._writeback),
            (ev.Doorbell, self._doorbell),
            (ev.Reset, self._reset),
            (ev.TxOffload, self._tx_offload),
        ):
            events.subscribe(kind, handler)
        iommu = system.rc.iommu.events
        iommu.subscribe(iommu_ev.Translation, self._translated)
        iommu.subscribe(iommu_ev.IotlbFill, lambda e: self.ap_iotlb.write(IotlbFill(now_ns(), e.did, e.shift)))
        self.sriov_offset = system.pf.sriov.state.pos
        self.refresh()

    def refresh(self) -> None:
        """Re-learn the functions' RIDs (after VF Enable changes), from the host's view."""
        system = self.system
        self.rids = {device.PF_PORT: int(system.pf_dev.pcie_id)}
        self.rids.update((device.vf_port(n), int(vdev.pcie_id)) for n, vdev in enumerate(system.pf.virtfns))
        self.ports = {rid: port for port, rid in self.rids.items()}

    def port_of(self, rid: int) -> int | None:
        if rid not in self.ports and len(self.ports) != 1 + len(self.system.pf.virtfns):
            self.refresh()  # VFs came or went since the last refresh
        return self.ports.get(rid)

    def rid_of(self, port: int) -> int:
        if port not in self.rids:
            self.refresh()
        return self.rids.get(port, -1)

    def traffic_in_flight(self) -> bool:
        return now_ns() - self.last_dma_ns < IN_FLIGHT_NS

    # -- the device ---------------------------------------------------------------------------
    def _mmio(self, e: ev.MmioWrite) -> None:
        if e.bar != device.REG_BAR:
            return
        port, offset, value = e.fn, e.offset, e.value
        action = (_VF_ACTIONS if port else _PF_ACTIONS).get(offset)
        if action is None:
            return
        what, key = action
        if what is MAILBOX:  # an item only for its reader
            self.ap_mailbox.write(MmioWrite(now_ns(), self.rid_of(port), port, offset, value))
        elif what is EITR:
            self.eitr[port, key] = value & regs.EITR.write_mask
        elif what is RING_LEN:
            self.ring_len[(port, *key)] = value
        elif value & _RING_ENABLE:
            self.tails[(port, *key)] = 0  # an enabled ring starts at 0

    def _doorbell(self, e: ev.Doorbell) -> None:
        key = (e.fn, e.rx, e.queue)
        self.ap_doorbell.write(
            Doorbell(now_ns(), self.rid_of(e.fn), e.fn, e.rx, e.queue, e.tail, self.tails[key], self.ring_len[key])
        )
        self.tails[key] = e.tail

    def _writeback(self, e: ev.Writeback) -> None:
        self.ap_wb.write(Writeback(now_ns(), self.rid_of(e.fn), e.fn, e.rx, e.queue, e.slot, e.length, e.status))

    def _tx_offload(self, e: ev.TxOffload) -> None:
        self.ap_tx_offload.write(
            TxOffloadEvent(now_ns(), e.fn, e.cmd, e.context, e.length, e.segments, e.vlan_overridden, e.error)
        )

    def _interrupt(self, e: ev.Interrupt) -> None:
        if e.outcome == "sent":
            self.ap_msi.write(MsiEvent(now_ns(), self.rid_of(e.fn), e.fn, e.vector, bool(self.eitr[e.fn, e.vector])))

    def _reset(self, e: ev.Reset) -> None:
        kind = _RESET_KINDS.get((e.fn != device.PF_PORT, e.kind))
        if kind is None:
            return
        for key in [k for k in self.tails if k[0] == e.fn]:
            del self.tails[key]
        for key in [k for k in self.eitr if k[0] == e.fn]:
            del self.eitr[key]
        self.ap_reset.write(ResetEvent(now_ns(), kind, self.rid_of(e.fn), e.fn, self.traffic_in_flight()))

    def _config_write(self, e: ev.ConfigWrite) -> None:
        self.ap_cfg.write(ConfigWrite(now_ns(), e.rid, e.offset, e.value, e.byte_enable))
        if self.sriov_offset is None or e.fn != device.PF_PORT:
            return
        num_vf = self.sriov_offset + pci.PCI_SRIOV_NUM_VF
        ctrl = self.sriov_offset + pci.PCI_SRIOV_CTRL
        if e.offset == num_vf & ~3 and e.byte_enable & 0x3:
            self._num_vfs_written = e.value & 0xFFFF
        elif e.offset == ctrl & ~3 and e.byte_enable & 0x1 and e.value & pci.PCI_SRIOV_CTRL_VFE:
            self.ap_sriov.write(self._num_vfs_written)

    # -- the IOMMU ------------------------------------------------------------------------------
    def _translated(self, t: iommu_ev.Translation) -> None:
        self.last_dma_ns = now_ns()
        if t.fault is None:
            self.ap_dma.write(DmaEvent(now_ns(), t.source_id, t.iova, t.length, t.is_write, t.phys, None))
        else:
            self.dma_faults += 1
            self.ap_dma.write(
                DmaEvent(now_ns(), t.source_id, t.iova, t.length, t.is_write, None, t.fault.reason.name, t.fault)
            )


class MailboxMonitor(uvm_subscriber):
    """Rebuilds PF<->VF mailbox conversations from the BAR0 writes of both sides.

    The VF writes VF_MBMEM then REQ; the PF writes its reply into PF_MBMEM and rings STS.
    Each reply (or PF notification) is published with the request it answers and the
    state the PF driver had the VF in when it rang REQ.
    """

    def build_phase(self):
        self.ap = uvm_analysis_port("ap", self)
        self.vf_state = lambda vf: "unknown"
        self._vf_buf: dict[int, list] = defaultdict(lambda: [0] * mbx.MBX_DWORDS)
        self._pf_buf: dict[int, list] = defaultdict(lambda: [0] * mbx.MBX_DWORDS)
        self._pending: dict[int, tuple] = {}

    def write(self, item: MmioWrite) -> None:
        off = item.offset
        if item.port:  # a VF's BAR0
            vf = device.port_vf(item.port)
            if regs.VF_MBMEM.offset <= off < regs.VF_MBMEM.end:
                self._vf_buf[vf][(off - regs.VF_MBMEM.offset) // 4] = item.value
            elif off == regs.VF_MAILBOX.offset and item.value & regs.VF_MAILBOX.field("REQ").mask:
                words = self._vf_buf[vf]
                msg = mbx.Message.decode(list(words))
                self._pending[vf] = (msg.opcode, tuple(msg.payload), self.vf_state(vf))
        elif regs.PF_MBMEM.offset <= off < regs.PF_MBMEM.end:
            vf, word = divmod((off - regs.PF_MBMEM.offset) // 4, mbx.MBX_DWORDS)
            self._pf_buf[vf][word] = item.value
        elif regs.PF_MAILBOX.offset <= off < regs.PF_MAILBOX.end and item.value & regs.PF_MAILBOX.field("STS").mask:
            vf = (off - regs.PF_MAILBOX.offset) // 4
            msg = mbx.Message.decode(list(self._pf_buf[vf]))
            if not msg.is_reply:
                self.ap.write(MailboxEvent(item.time, vf, msg.opcode, tuple(msg.payload), "NOTIFY", None, "n/a"))
                return
            pending = self._pending.pop(vf, None)
            if pending is None:
                return
            opcode, payload, state = pending
            error = msg.payload[0] if msg.nack and msg.payload else None
            self.ap.write(MailboxEvent(item.time, vf, opcode, payload, "NACK" if msg.nack else "ACK", error, state))


class SwitchMonitor(uvm_monitor):
    """One :class:`SwitchEvent` per frame that entered the switch: the counters it moved, the
    functions it reached (and whether their RX queue took it), what left on the uplink."""

    def build_phase(self):
        self.ap = uvm_analysis_port("ap", self)
        self.events = 0

    def attach(self, nic) -> None:
        nic.events.subscribe(ev.SwitchDecision, self._decision)

    def _decision(self, d: ev.SwitchDecision) -> None:
        self.events += 1
        self.ap.write(
            SwitchEvent(
                now_ns(),
                d.src,
                d.frame,
                frozenset(_COUNTER_NAMES[c] for c in d.counters),
                [(fn, frame, accepted) for fn, frame, accepted in d.deliveries],
                [(frame, sent) for frame, sent in d.uplink],
            )
        )


class NetdevMonitor(uvm_monitor):
    """What each function's net device received (the PF's and every VF's), from its packet tap."""

    def build_phase(self):
        self.ap = uvm_analysis_port("ap", self)
        self.received: Counter = Counter()
        self._tapped: set[int] = set()

    def attach_netdev(self, port: int, netdev) -> None:
        if id(netdev) in self._tapped:  # a reopened net device keeps its tap
            return
        self._tapped.add(id(netdev))

        def arrived(queue, frame, info, port=port):
            self.received[port] += 1
            self.ap.write(RxFrame(now_ns(), port, queue, bytes(frame), info))

        netdev.add_tap(arrived)

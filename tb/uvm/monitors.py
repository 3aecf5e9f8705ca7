"""Monitors: what crossed the PCIe link (by requester ID), what went through the
embedded switch and its counters, what each net device received.

Nothing here drives the device.  The observation points are:

* the root complex (:class:`MonitoredRootComplex`, a subclass of the IOMMU root
  complex): every TLP a device sent upstream and every TLP the host sent down,
  plus the IOMMU's translate result and IOTLB fills;
* the switch's ports: ``nic.switch.forward`` (ingress), ``nic.rx_deliver``
  (egress to a function, with whether its RX queue took the frame),
  ``nic.uplink.transmit`` (egress to the wire), and the SW_* counters;
* each net device's ``received`` queue (what NAPI handed to the stack).

Observers are plain synchronous callbacks: they never await, so they cannot
change the order of events in the simulation.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from cocotb.queue import Queue
from cocotb.utils import get_sim_time
from cocotbext.pcie.core.tlp import TlpType
from pyuvm import uvm_analysis_port, uvm_monitor, uvm_subscriber

from datasheet import descriptors as d
from datasheet import device, pci, regs
from datasheet import mailbox as mbx
from iommu.rc import IommuRootComplex
from pf_driver import pci_core
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
    Writeback,
)

MEM_WRITES = (TlpType.MEM_WRITE, TlpType.MEM_WRITE_64)
MEM_READS = (TlpType.MEM_READ, TlpType.MEM_READ_64)
CFG_WRITES = (TlpType.CFG_WRITE_0, TlpType.CFG_WRITE_1)
CFG_READS = (TlpType.CFG_READ_0, TlpType.CFG_READ_1)
COMPLETIONS = (TlpType.CPL, TlpType.CPL_DATA)
#: a reset counts as "with traffic in flight" if the device moved data this recently
IN_FLIGHT_NS = 20_000

_Q_OFFSETS = {reg.offset - regs.QUEUE_BLOCK: reg for reg in (
    regs.TDBAL, regs.TDBAH, regs.TDLEN, regs.TDT, regs.TXDCTL, regs.RDBAL, regs.RDBAH, regs.RDLEN, regs.RDT,
    regs.RXDCTL)}
_RX_REGS = (regs.RDBAL, regs.RDBAH, regs.RDLEN, regs.RDT, regs.RXDCTL)
_COUNTER_NAMES = {"UNICAST_INTERNAL": ref.UNICAST_INTERNAL, "TO_UPLINK": ref.TO_UPLINK,
                  "BROADCAST": ref.BROADCAST_KIND, "MULTICAST": ref.MULTICAST_KIND, "DROP_SPOOF": ref.DROP_SPOOF,
                  "DROP_NO_MATCH": ref.DROP_NO_MATCH, "DROP_VLAN": ref.DROP_VLAN,
                  "DROP_MALFORMED": ref.DROP_MALFORMED}


def now_ns() -> float:
    return get_sim_time("ns")


class MonitoredRootComplex(IommuRootComplex):
    """The IOMMU root complex with taps on both directions of the link.

    ``upstream`` callbacks see every TLP a device sent (before the IOMMU);
    ``downstream`` callbacks every TLP the host sends to a device.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.upstream: list = []
        self.downstream: list = []

    async def handle_tlp(self, tlp):
        for observe in self.upstream:
            observe(tlp)
        await super().handle_tlp(tlp)

    async def downstream_send(self, tlp):
        for observe in self.downstream:
            observe(tlp)
        await super().downstream_send(tlp)


class _Ring:
    __slots__ = ("base_hi", "base_lo", "length", "tail")

    def __init__(self):
        self.base_lo = self.base_hi = self.length = self.tail = 0

    @property
    def base(self) -> int:
        return self.base_hi << 32 | self.base_lo


class TlpMonitor(uvm_monitor):
    """Counts TLPs per (RID, kind) and decodes the ones the environment cares about:
    BAR0 writes (doorbells, ring set-up, EITR, resets), config writes (FLR, VF Enable),
    MSI-X messages, descriptor write-backs, and the IOMMU's verdict on every DMA."""

    def build_phase(self):
        self.ap_mmio = uvm_analysis_port("ap_mmio", self)
        self.ap_cfg = uvm_analysis_port("ap_cfg", self)
        self.ap_msi = uvm_analysis_port("ap_msi", self)
        self.ap_dma = uvm_analysis_port("ap_dma", self)
        self.ap_iotlb = uvm_analysis_port("ap_iotlb", self)
        self.ap_wb = uvm_analysis_port("ap_wb", self)
        self.ap_doorbell = uvm_analysis_port("ap_doorbell", self)
        self.ap_reset = uvm_analysis_port("ap_reset", self)
        self.ap_sriov = uvm_analysis_port("ap_sriov", self)
        self.counts: Counter = Counter()          # (rid, kind) -> TLPs
        self.system = None
        self.functions: dict[int, int] = {}       # rid -> port
        self.rings: dict[int, dict] = defaultdict(dict)     # rid -> {(rx, q): _Ring}
        self.eitr: dict[int, dict] = defaultdict(dict)      # rid -> {vector: usec}
        self.last_dma_ns = -1e30
        self.exp_offset: dict[int, int] = {}      # rid -> PCIe capability offset
        self.sriov_offset = None
        self._num_vfs_written = 0
        self.dma_faults = 0

    # -- wiring ---------------------------------------------------------------------------
    async def attach(self, system) -> None:
        self.system = system
        rc = system.rc
        rc.upstream.append(self._upstream)
        rc.downstream.append(self._downstream)
        iommu = rc.iommu
        translate, insert = iommu.translate, iommu.iotlb.insert

        def observed_translate(source_id, iova, length, is_write):
            result = translate(source_id, iova, length, is_write)
            self._translated(source_id, iova, length, is_write, result)
            return result

        def observed_insert(did, iova, entry):
            insert(did, iova, entry)
            self.ap_iotlb.write(IotlbFill(now_ns(), did, entry.shift))

        iommu.translate = observed_translate
        iommu.iotlb.insert = observed_insert
        self.sriov_offset = system.pf.sriov.state.pos
        await self.refresh()

    async def refresh(self) -> None:
        """Re-learn the functions (after VF Enable changes): RIDs, BAR0 windows, PCIe caps."""
        self._learn()
        system = self.system
        for rid, port in self.functions.items():
            if rid not in self.exp_offset:
                pdev = system.pf_dev if port == 0 else system.pf.virtfns[port - 1]
                known = [off for r, off in self.exp_offset.items() if r != int(system.pf_dev.pcie_id)]
                self.exp_offset[rid] = known[0] if port and known else \
                    await pci_core.find_capability(pdev, pci.PCI_CAP_ID_EXP)

    def _learn(self) -> None:
        """RIDs and BAR0 windows of the PF and of the VFs in the host's view (synchronous)."""
        system = self.system
        pf = system.pf
        pf_rid = int(system.pf_dev.pcie_id)
        self.functions = {pf_rid: 0}
        self._bars = [(system.pf_dev.bar_addr[device.REG_BAR], device.PF_REG_BAR_SIZE, pf_rid, 0)]
        st = pf.sriov.state
        for n, vdev in enumerate(pf.virtfns):
            rid = int(vdev.pcie_id)
            self.functions[rid] = 1 + n
            self._bars.append((vdev.bar_addr[device.REG_BAR], st.bar_size[device.REG_BAR], rid, 1 + n))
        self._bars.sort()

    def port_of(self, rid: int) -> int | None:
        if rid not in self.functions and len(self.functions) != 1 + len(self.system.pf.virtfns):
            self._learn()                           # VFs came or went since the last refresh
        return self.functions.get(rid)

    def _decode_bar0(self, addr: int):
        for base, size, rid, port in self._bars:
            if base <= addr < base + size:
                return rid, port, addr - base
        return None

    def traffic_in_flight(self) -> bool:
        return now_ns() - self.last_dma_ns < IN_FLIGHT_NS

    # -- upstream: device -> host ------------------------------------------------------------
    def _upstream(self, tlp) -> None:
        rid = int(tlp.requester_id)
        t = tlp.fmt_type
        if t in MEM_WRITES:
            if self.system.rc.in_interrupt_window(tlp.address):
                self.counts[rid, "MSI"] += 1
                self._msi(rid, tlp)
                return
            self.counts[rid, "MWr"] += 1
            self.last_dma_ns = now_ns()
            self._writeback(rid, tlp)
        elif t in MEM_READS:
            self.counts[rid, "MRd"] += 1
            self.last_dma_ns = now_ns()
        elif t in COMPLETIONS:
            self.counts[int(tlp.completer_id), "Cpl-up"] += 1
        else:
            self.counts[rid, t.name] += 1

    def _msi(self, rid: int, tlp) -> None:
        data = int.from_bytes(bytes(tlp.get_data())[:4], "little")
        port = self.port_of(rid)
        vector = None
        vec = self.system.rc.msi_region.msi_vectors.get(data)
        virtfns = self.system.pf.virtfns
        if vec is not None and port is not None and port <= len(virtfns):
            pdev = self.system.pf_dev if port == 0 else virtfns[port - 1]
            vector = next((k for k, v in enumerate(pdev.msi_vectors) if v is vec), None)
        moderated = bool(vector is not None and self.eitr[rid].get(vector, 0))
        self.ap_msi.write(MsiEvent(now_ns(), rid, port, vector, moderated))

    def _writeback(self, rid: int, tlp) -> None:
        rings = self.rings.get(rid)
        if not rings:
            return
        addr = tlp.address
        for (rx, q), ring in rings.items():
            span = ring.length * d.DESC_SIZE
            if ring.length and ring.base <= addr < ring.base + span:
                data = bytes(tlp.get_data())[:tlp.length * 4]
                port = self.port_of(rid)
                for k in range(len(data) // d.DESC_SIZE):
                    slot = (addr - ring.base) // d.DESC_SIZE + k
                    length, status = d.parse_writeback(data[k * d.DESC_SIZE:(k + 1) * d.DESC_SIZE])
                    self.ap_wb.write(Writeback(now_ns(), rid, port, rx, q, slot, length, status))
                return

    def _translated(self, rid, iova, length, is_write, result) -> None:
        if isinstance(result, list):
            self.ap_dma.write(DmaEvent(now_ns(), rid, iova, length, is_write, result[0][0], None))
        else:
            self.dma_faults += 1
            self.ap_dma.write(DmaEvent(now_ns(), rid, iova, length, is_write, None, result.reason.name, result))

    # -- downstream: host -> device -----------------------------------------------------------
    def _downstream(self, tlp) -> None:
        t = tlp.fmt_type
        if t in MEM_WRITES:
            hit = self._decode_bar0(tlp.address)
            if hit is None:
                self.counts[None, "MWr-down"] += 1
                return
            rid, port, offset = hit
            self.counts[rid, "MWr-down"] += 1
            data = bytes(tlp.get_data())
            for k in range(tlp.length):
                value = int.from_bytes(data[4 * k:4 * k + 4], "little")
                self._bar0_write(rid, port, offset + 4 * k, value)
        elif t in MEM_READS:
            hit = self._decode_bar0(tlp.address)
            self.counts[hit[0] if hit else None, "MRd-down"] += 1
        elif t in CFG_WRITES:
            rid = int(tlp.completer_id)
            self.counts[rid, "CfgWr"] += 1
            value = int.from_bytes(bytes(tlp.get_data())[:4], "little")
            self._config_write(ConfigWrite(now_ns(), rid, tlp.address & 0xFFC, value, tlp.first_be))
        elif t in CFG_READS:
            self.counts[int(tlp.completer_id), "CfgRd"] += 1
        elif t in COMPLETIONS:
            self.counts[int(tlp.requester_id), "Cpl-down"] += 1

    def _bar0_write(self, rid: int, port: int, offset: int, value: int) -> None:
        self.ap_mmio.write(MmioWrite(now_ns(), rid, port, offset, value))
        if offset == regs.CTRL.offset and value & regs.CTRL.field("RST").mask:
            self.rings.pop(rid, None)
            self.eitr.pop(rid, None)
            kind = "pf_reset" if port == 0 else "vf_soft"
            self.ap_reset.write(ResetEvent(now_ns(), kind, rid, port, self.traffic_in_flight()))
            return
        if regs.EITR.offset <= offset < regs.EITR.end:
            self.eitr[rid][(offset - regs.EITR.offset) // 4] = value & regs.EITR.write_mask
            return
        rel = offset - regs.QUEUE_BLOCK
        if not 0 <= rel < device.PF_QUEUE_PAIRS * regs.QUEUE_STRIDE:
            return
        q, reg = divmod(rel, regs.QUEUE_STRIDE)
        reg = _Q_OFFSETS.get(reg)
        if reg is None:
            return
        rx = reg in _RX_REGS
        ring = self.rings[rid].setdefault((rx, q), _Ring())
        if reg in (regs.TDBAL, regs.RDBAL):
            ring.base_lo = value
        elif reg in (regs.TDBAH, regs.RDBAH):
            ring.base_hi = value
        elif reg in (regs.TDLEN, regs.RDLEN):
            ring.length = value
        elif reg in (regs.TXDCTL, regs.RXDCTL):
            if value & 1:
                ring.tail = 0
        else:                                            # TDT / RDT: a doorbell
            self.ap_doorbell.write(Doorbell(now_ns(), rid, port, rx, q, value, ring.tail, ring.length))
            ring.tail = value

    def _config_write(self, item: ConfigWrite) -> None:
        self.ap_cfg.write(item)
        exp = self.exp_offset.get(item.rid)
        devctl = None if exp is None else exp + pci.PCI_EXP_DEVCTL
        if devctl is not None and item.offset == devctl & ~3 and item.byte_enable & 0x2 \
                and (item.value >> (8 * (devctl & 3))) & pci.PCI_EXP_DEVCTL_BCR_FLR:
            port = self.port_of(item.rid)
            self.rings.pop(item.rid, None)
            self.eitr.pop(item.rid, None)
            kind = "vf_flr" if port else "pf_flr"
            self.ap_reset.write(ResetEvent(now_ns(), kind, item.rid, port, self.traffic_in_flight()))
        if self.sriov_offset is None or item.rid not in self.functions or self.functions[item.rid] != 0:
            return
        num_vf = self.sriov_offset + pci.PCI_SRIOV_NUM_VF
        ctrl = self.sriov_offset + pci.PCI_SRIOV_CTRL
        if item.offset == num_vf & ~3 and item.byte_enable & 0x3:
            self._num_vfs_written = item.value & 0xFFFF
        elif item.offset == ctrl & ~3 and item.byte_enable & 0x1 and item.value & pci.PCI_SRIOV_CTRL_VFE:
            self.ap_sriov.write(self._num_vfs_written)


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
        if item.port:                                                 # a VF's BAR0
            vf = item.port - 1
            if regs.VF_MBMEM.offset <= off < regs.VF_MBMEM.end:
                self._vf_buf[vf][(off - regs.VF_MBMEM.offset) // 4] = item.value
            elif off == regs.VF_MAILBOX.offset and item.value & regs.VF_MAILBOX.field("REQ").mask:
                words = self._vf_buf[vf]
                msg = mbx.Message.decode(list(words))
                self._pending[vf] = (msg.opcode, tuple(msg.payload), self.vf_state(vf))
        elif regs.PF_MBMEM.offset <= off < regs.PF_MBMEM.end:
            vf, word = divmod((off - regs.PF_MBMEM.offset) // 4, mbx.MBX_DWORDS)
            self._pf_buf[vf][word] = item.value
        elif regs.PF_MAILBOX.offset <= off < regs.PF_MAILBOX.end \
                and item.value & regs.PF_MAILBOX.field("STS").mask:
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
    """Wraps the switch's ports: one :class:`SwitchEvent` per frame that entered it, with
    the counters it moved, the functions it reached (and whether their RX queue took
    it), and what left on the uplink."""

    def build_phase(self):
        self.ap = uvm_analysis_port("ap", self)
        self.events = 0
        self._current: SwitchEvent | None = None

    def attach(self, nic) -> None:
        switch, uplink = nic.switch, nic.uplink
        forward, rx_deliver, transmit = switch.forward, nic.rx_deliver, uplink.transmit

        def observed_forward(frame, src):
            before = switch.counters()
            event = self._current = SwitchEvent(now_ns(), src, bytes(frame), frozenset())
            try:
                result = forward(frame, src)
            finally:
                self._current = None
            after = switch.counters()
            event.counters = frozenset(_COUNTER_NAMES[k] for k in after if after[k] != before[k])
            self.events += 1
            self.ap.write(event)
            return result

        def observed_rx_deliver(port, frame):
            accepted = rx_deliver(port, frame)
            if self._current is not None:
                self._current.deliveries.append((port, bytes(frame), bool(accepted)))
            return accepted

        def observed_transmit(frame):
            sent = transmit(frame)
            if self._current is not None:
                self._current.uplink.append((bytes(frame), bool(sent)))
            return sent

        switch.forward = observed_forward
        nic.rx_deliver = observed_rx_deliver
        uplink.transmit = observed_transmit


class _TapQueue(Queue):
    """Stands in for a net device's ``received`` queue: hands each frame to the monitor."""

    def __init__(self, callback):
        super().__init__()
        self._callback = callback

    def put_nowait(self, item) -> None:
        self._callback(item)


class NetdevMonitor(uvm_monitor):
    """What each function's net device received (the PF's and every VF's)."""

    def build_phase(self):
        self.ap = uvm_analysis_port("ap", self)
        self.received: Counter = Counter()

    def attach_netdev(self, port: int, netdev) -> None:
        def arrived(item, port=port):
            queue, frame = item
            self.received[port] += 1
            self.ap.write(RxFrame(now_ns(), port, queue, bytes(frame)))
        netdev.received = _TapQueue(arrived)

"""Functional coverage (cocotb-coverage) sampled from the monitors' analysis ports.

Every coverpoint lives under ``nic.<group>``; :data:`GROUPS` lists the groups the
report shows.  The collector is a set of analysis exports: each monitor stream
calls one ``sample_*`` method, decorated with the coverpoints and crosses it
feeds.  Nothing here is sampled by hand from a test.

Per run the database is exported to ``sim_build/coverage/<seed>.xml`` (see
:func:`export`); :mod:`tb.tools.regress` merges the runs.
"""

from __future__ import annotations

import os
from pathlib import Path

from cocotb_coverage.coverage import CoverCross, CoverPoint, coverage_db
from pyuvm import uvm_component

from datasheet import descriptors as d
from datasheet import device
from datasheet.descriptors import L4Type, OffloadError, RssType
from datasheet.mailbox import MbxError, Opcode
from pf_driver.vf_info import VfState
from tb.paths import COVERAGE_DIR
from tb.uvm import offload_reference as offref
from tb.uvm import reference as ref
from tb.uvm.items import (
    DmaEvent,
    Doorbell,
    IotlbFill,
    MailboxEvent,
    MsiEvent,
    ResetEvent,
    RxFrame,
    SwitchEvent,
    TxOffloadEvent,
    Writeback,
)
from tb.uvm.scoreboard import imp

# -- bins ------------------------------------------------------------------------------------
NUM_VFS_BINS = ["1", "2-7", "8", "9-63", "64+"]


def num_vfs_bucket(n: int) -> str:
    if n >= 64:
        return "64+"
    if n >= 9:
        return "9-63"
    if n == 8:
        return "8"
    return "2-7" if n >= 2 else "1"


OPCODES = [op.name for op in Opcode if op is not Opcode.LINK_STATUS] + ["UNKNOWN"]
REPLIES = ["ACK", "NACK"]
#: the PF's view of a VF when it rang (DISABLED, after repeated error events, is the fuzz campaign's)
VF_STATES = [s.value for s in VfState if s is not VfState.DISABLED]
NACK_ERRORS = [e.name for e in MbxError]
#: impossible by the protocol: an opcode other than RESET accepted before RESET, an unknown opcode accepted
MBX_IGNORE = [(op, "ACK", "not-reset") for op in OPCODES if op != "RESET"] + [
    ("UNKNOWN", "ACK", s) for s in VF_STATES if s != "not-reset"
]


def opcode_name(opcode: int) -> str:
    try:
        op = Opcode(opcode)
    except ValueError:
        return "UNKNOWN"
    return "UNKNOWN" if op is Opcode.LINK_STATUS else op.name


FRAME_LEN_BINS = ["runt", "min", "typical", "max", "jumbo", "bad"]


def frame_len_bin(frame: bytes) -> str:
    n = len(frame) - (ref.VLAN_HLEN if ref.vlan_of(frame) is not None else 0)
    if n < 60:
        return "runt"
    if n == 60:
        return "min"
    if n < 1514:
        return "typical"
    return "max" if n == 1514 else "jumbo"


DESC_STATUS_BINS = [
    "tx_ok",
    "tx_err_len",
    "tx_err_offload",
    "tx_dropped",
    "tx_err_dma",
    "rx_eop",
    "rx_more",
    "rx_trunc",
]


def desc_status_bin(wb: Writeback) -> str:
    s = wb.status
    if not wb.rx:
        if s & d.STATUS_ERR_DMA.mask:
            return "tx_err_dma"
        if s & d.STATUS_ERR_LEN.mask:
            return "tx_err_len"
        if s & d.STATUS_ERR_OFFLOAD.mask:
            return "tx_err_offload"
        return "tx_dropped" if s & d.STATUS_DROPPED.mask else "tx_ok"
    if s & d.STATUS_TRUNC.mask:
        return "rx_trunc"
    return "rx_eop" if s & d.STATUS_EOP.mask else "rx_more"


FAULT_REASONS = [
    "ROOT_ENTRY_NOT_PRESENT",
    "CONTEXT_ENTRY_NOT_PRESENT",
    "SLPTE_NOT_PRESENT",
    "WRITE_DENIED",
    "READ_DENIED",
    "ADDRESS_BEYOND_AW",
]
REQUESTERS = ["pf", "vf"]
#: the PF is attached in pass-through on its own bus: only a missing context entry can stop it
FAULT_IGNORE = [(r, "pf") for r in FAULT_REASONS if r != "CONTEXT_ENTRY_NOT_PRESENT"]
PAGE_SIZES = ["4K", "2M", "1G"]
PAGE_SHIFTS = {12: "4K", 21: "2M", 30: "1G"}
RESET_KINDS = ["vf_flr", "vf_soft", "pf_reset"]
SWITCH_DECISIONS = list(ref.DECISIONS)
SOURCES = ["pf", "vf", "uplink"]
#: a frame from the uplink is never spoof-checked nor sent back to the uplink; the PF is not spoof-checked
SWITCH_IGNORE = [(ref.DROP_SPOOF, "uplink"), (ref.TO_UPLINK, "uplink"), (ref.DROP_SPOOF, "pf")]

#: group -> one-line description, in report order
GROUPS = {
    "nic.sriov": "SR-IOV configuration: NumVFs buckets",
    "nic.mailbox": "mailbox opcode x reply x VF state, NACK codes, notifications",
    "nic.datapath": "descriptor status, frame lengths, ring wrap",
    "nic.iommu": "IOMMU fault reason x requester kind, page sizes used",
    "nic.irq": "MSI-X messages with and without interrupt moderation",
    "nic.reset": "reset kind x traffic in flight",
    "nic.switch": "switch decisions x source port kind",
    "nic.offload": "RSS hash type x queue, RX checksum verdict x L3/L4, TX checksum, TSO size x MSS, "
    "VLAN insert/strip x port VLAN, refused TX requests",
    "nic.fuzz": "hostile-VF campaign: scenario kinds, act kinds, scenario x outcome (tb/fuzz)",
}


def _kind(port) -> str:
    if port is None or port == ref.UPLINK:
        return "uplink"
    return "pf" if port == 0 else "vf"


# -- the sampling functions: one per monitor stream -------------------------------------------
@CoverPoint("nic.sriov.num_vfs", xf=num_vfs_bucket, bins=NUM_VFS_BINS)
def _sample_num_vfs(n):
    pass


@CoverPoint("nic.mailbox.opcode", xf=lambda e: opcode_name(e.opcode), bins=OPCODES)
@CoverPoint("nic.mailbox.reply", xf=lambda e: e.reply, bins=REPLIES)
@CoverPoint("nic.mailbox.vf_state", xf=lambda e: e.vf_state, bins=VF_STATES)
@CoverCross(
    "nic.mailbox.opcode_x_reply_x_state",
    items=["nic.mailbox.opcode", "nic.mailbox.reply", "nic.mailbox.vf_state"],
    ign_bins=MBX_IGNORE,
)
def _sample_request(e):
    pass


@CoverPoint(
    "nic.mailbox.nack_error",
    xf=lambda e: MbxError(e).name if e in {m.value for m in MbxError} else None,
    bins=NACK_ERRORS,
)
def _sample_nack(error):
    pass


@CoverPoint(
    "nic.mailbox.notification",
    xf=lambda e: "LINK_STATUS" if e.opcode == Opcode.LINK_STATUS else "OTHER",
    bins=["LINK_STATUS"],
)
def _sample_notification(e):
    pass


@CoverPoint("nic.datapath.desc_status", xf=desc_status_bin, bins=DESC_STATUS_BINS)
def _sample_writeback(wb):
    pass


@CoverPoint("nic.datapath.frame_len", xf=lambda x: x, bins=FRAME_LEN_BINS)
def _sample_frame_len(kind):
    pass


@CoverPoint("nic.datapath.ring_wrap", xf=lambda db: "rx_wrap" if db.rx else "tx_wrap", bins=["tx_wrap", "rx_wrap"])
def _sample_wrap(db):
    pass


def crossed(group: str, first: tuple, second: tuple, ignore=()):
    """Decorator: coverpoints ``<group>.<first name>`` and ``<group>.<second name>`` sampled
    from the decorated function's two arguments (``first``/``second`` = (name, bins, map of
    the argument to a bin)) and their cross ``<group>.<first>_x_<second>``."""
    (a, a_bins, a_map), (b, b_bins, b_map) = first, second

    point_a = CoverPoint(f"{group}.{a}", xf=lambda x, y: a_map(x), bins=a_bins)
    point_b = CoverPoint(f"{group}.{b}", xf=lambda x, y: b_map(y), bins=b_bins)
    cross = CoverCross(f"{group}.{a}_x_{b}", items=[f"{group}.{a}", f"{group}.{b}"], ign_bins=ignore)
    return lambda f: point_a(point_b(cross(f)))  # the points sample first, then the cross


def _same(x):
    return x


@crossed("nic.iommu", ("fault_reason", FAULT_REASONS, _same), ("requester", REQUESTERS, _same), FAULT_IGNORE)
def _sample_fault(reason, who):
    pass


@CoverPoint("nic.iommu.page_size", xf=lambda shift: PAGE_SHIFTS.get(shift), bins=PAGE_SIZES)
def _sample_page(shift):
    pass


@crossed(
    "nic.irq",
    ("function", ["pf", "vf"], _same),
    ("moderation", ["off", "on"], lambda moderated: "on" if moderated else "off"),
)
def _sample_msi(who, moderated):
    pass


@crossed(
    "nic.reset",
    ("kind", RESET_KINDS, _same),
    ("traffic", ["idle", "in_flight"], lambda busy: "in_flight" if busy else "idle"),
)
def _sample_reset(kind, busy):
    pass


@crossed("nic.switch", ("decision", SWITCH_DECISIONS, _same), ("source", SOURCES, _same), SWITCH_IGNORE)
def _sample_switch(decision, source):
    pass


# -- offloads ----------------------------------------------------------------------------------------
RSS_TYPES = [t.name for t in RssType]
RSS_QUEUES = [str(q) for q in range(device.VF_QUEUE_PAIRS)]
#: without a hash a frame goes to the default queue (0: the PF driver programs DEFQ 0)
RSS_IGNORE = [(RssType.NONE.name, q) for q in RSS_QUEUES[1:]]
VERDICTS = ["good", "bad", "not_checked"]
#: with rx-checksum on, only a UDP/IPv4 frame without a checksum is a transport frame left
#: unchecked; fragments, other protocols and non-IP frames are never checked
L4_CSUM_IGNORE = [(c, "not_checked") for c in (offref.IPV4_TCP, offref.IPV6_TCP, offref.IPV6_UDP)] + [
    (c, v) for c in (offref.IPV4_FRAG, offref.IPV4_OTHER, offref.IPV6_OTHER, offref.NON_IP) for v in ("good", "bad")
]
L3_KINDS = ["ipv4", "ipv6", "non_ip"]
IP_CSUM_IGNORE = [("ipv4", "not_checked"), ("ipv6", "good"), ("ipv6", "bad"), ("non_ip", "good"), ("non_ip", "bad")]
TX_CSUM_KINDS = [offref.IPV4_TCP, offref.IPV4_UDP, offref.IPV6_TCP, offref.IPV6_UDP]
TSO_PAYLOADS = ["one_segment", "to_8k", "to_32k", "to_64k"]
TSO_MSS = ["small", "typical", "jumbo"]
VLAN_OPS = ["tx_insert", "rx_strip"]
TX_ERRORS = [e.name for e in OffloadError]


def verdict(v: str | None) -> str:
    return v or "not_checked"


def l3_kind(l3l4: str) -> str:
    return "non_ip" if l3l4 == offref.NON_IP else l3l4[:4]


def tso_payload_bin(payload: int, mss: int) -> str:
    if payload <= mss:
        return "one_segment"
    if payload <= 8192:
        return "to_8k"
    return "to_32k" if payload <= 32768 else "to_64k"


def tso_mss_bin(mss: int) -> str:
    if mss < 536:
        return "small"
    return "typical" if mss <= 1460 else "jumbo"


@crossed("nic.offload", ("rss_type", RSS_TYPES, _same), ("rss_queue", RSS_QUEUES, str), RSS_IGNORE)
def _sample_rss(kind, queue):
    pass


@crossed(
    "nic.offload", ("rx_l3l4", list(offref.L3L4_CLASSES), _same), ("rx_l4_csum", VERDICTS, verdict), L4_CSUM_IGNORE
)
def _sample_rx_l4(l3l4, l4):
    pass


@crossed("nic.offload", ("rx_l3", L3_KINDS, _same), ("rx_ip_csum", VERDICTS, verdict), IP_CSUM_IGNORE)
def _sample_rx_ip(l3, ip):
    pass


@CoverPoint("nic.offload.tx_csum", xf=lambda kind: kind, bins=TX_CSUM_KINDS)
def _sample_tx_csum(kind):
    pass


@crossed("nic.offload", ("tso_payload", TSO_PAYLOADS, _same), ("tso_mss", TSO_MSS, tso_mss_bin))
def _sample_tso(payload_bin, mss):
    pass


@CoverPoint("nic.offload.tso_l3", xf=lambda ipv6: "ipv6" if ipv6 else "ipv4", bins=["ipv4", "ipv6"])
def _sample_tso_l3(ipv6):
    pass


@crossed("nic.offload", ("vlan_op", VLAN_OPS, _same), ("port_vlan", ["off", "on"], lambda on: "on" if on else "off"))
def _sample_vlan(op, port_vlan):
    pass


@CoverPoint("nic.offload.tx_error", xf=lambda e: OffloadError(e).name, bins=TX_ERRORS)
def _sample_tx_error(error):
    pass


class CoverageCollector(uvm_component):
    """Subscribes to the monitors; each ``write_*`` turns one observation into samples."""

    def build_phase(self):
        self.sriov_export = imp(self, "sriov_export", self.write_sriov)
        self.mailbox_export = imp(self, "mailbox_export", self.write_mailbox)
        self.wb_export = imp(self, "wb_export", self.write_wb)
        self.doorbell_export = imp(self, "doorbell_export", self.write_doorbell)
        self.dma_export = imp(self, "dma_export", self.write_dma)
        self.iotlb_export = imp(self, "iotlb_export", self.write_iotlb)
        self.msi_export = imp(self, "msi_export", self.write_msi)
        self.reset_export = imp(self, "reset_export", self.write_reset)
        self.switch_export = imp(self, "switch_export", self.write_switch)
        self.rx_export = imp(self, "rx_export", self.write_rx)
        self.tx_offload_export = imp(self, "tx_offload_export", self.write_tx_offload)
        self.port_of_rid = lambda rid: None
        self.rx_view = lambda port: None  # set by the env: port -> offload_reference.RxView
        self.port_view = lambda port: None  # set by the env: port -> reference.PortView

    def write_sriov(self, num_vfs: int) -> None:
        if num_vfs:
            _sample_num_vfs(num_vfs)

    def write_mailbox(self, e: MailboxEvent) -> None:
        if e.reply == "NOTIFY":
            _sample_notification(e)
            return
        _sample_request(e)
        if e.error is not None:
            _sample_nack(e.error)

    def write_wb(self, wb: Writeback) -> None:
        _sample_writeback(wb)
        if not wb.rx and wb.status & d.STATUS_ERR_LEN.mask:
            _sample_frame_len("bad")

    def write_doorbell(self, db: Doorbell) -> None:
        if db.wrapped:
            _sample_wrap(db)

    def write_dma(self, e: DmaEvent) -> None:
        if e.fault_reason is not None:
            _sample_fault(e.fault_reason, _kind(self.port_of_rid(e.rid)))

    def write_iotlb(self, e: IotlbFill) -> None:
        _sample_page(e.page_shift)

    def write_msi(self, e: MsiEvent) -> None:
        if e.port is not None:
            _sample_msi(_kind(e.port), e.moderated)

    def write_reset(self, e: ResetEvent) -> None:
        _sample_reset(e.kind, e.traffic_in_flight)

    def write_switch(self, e: SwitchEvent) -> None:
        source = _kind(e.src)
        _sample_frame_len(frame_len_bin(e.frame))
        _sample_switch(ref.primary_kind(e.counters), source)
        if any(not accepted for _, _, accepted in e.deliveries):
            _sample_switch(ref.DROP_NO_BUFFER, source)

    def write_rx(self, e: RxFrame) -> None:
        """A frame a net device received: RSS on a VF's queues, checksum verdicts, VLAN strip."""
        view = self.rx_view(e.port)
        if view is None or e.info is None:
            return
        info = e.info
        if e.port != device.PF_PORT and view.hash_types:
            _sample_rss(RssType(info.rss_type).name, e.queue)
        if view.rxcsum:
            l3l4 = offref.l3l4_class(e.frame)
            _sample_rx_l4(l3l4, info.l4_checksum)
            _sample_rx_ip(l3_kind(l3l4), info.ip_checksum)
        port = self.port_view(e.port)
        pvid = port is not None and port.pvid is not None
        if view.strip and (info.vlan is not None or pvid):
            _sample_vlan("rx_strip", pvid)

    def write_tx_offload(self, e: TxOffloadEvent) -> None:
        if e.error is not None:
            _sample_tx_error(e.error)
            return
        if not e.segments:
            return
        ctx = e.context
        if d.TX_CMD_TSE.get(e.cmd):
            header = ctx.maclen + ctx.iplen + ctx.l4len
            _sample_tso(tso_payload_bin(e.length - header, ctx.mss), ctx.mss)
            _sample_tso_l3(ctx.ipv6)
        elif d.TX_CMD_TXSM.get(e.cmd) and ctx.l4t is not L4Type.NONE:
            _sample_tx_csum(f"{'ipv6' if ctx.ipv6 else 'ipv4'}_{ctx.l4t.name.lower()}")
        if d.TX_CMD_VLE.get(e.cmd):
            _sample_vlan("tx_insert", e.vlan_overridden)


# -- export / totals ---------------------------------------------------------------------------
def export(seed, path: Path | None = None) -> Path:
    """Write the whole coverage database (XML) of this run (regression ``seed``) to
    ``$NIC_COVERAGE_DIR/<seed>.xml`` (default ``sim_build/coverage``); returns the path."""
    path = path or Path(os.environ.get("NIC_COVERAGE_DIR", COVERAGE_DIR)) / f"{seed}.xml"
    path.parent.mkdir(parents=True, exist_ok=True)
    coverage_db.export_to_xml(filename=str(path))
    return path


def totals() -> tuple[int, int]:
    """(covered bins, bins) over every group."""
    cov = size = 0
    for name in GROUPS:
        if name in coverage_db:
            cov += coverage_db[name].coverage
            size += coverage_db[name].size
    return cov, size

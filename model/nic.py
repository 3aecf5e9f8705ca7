"""Top level of the NIC model: the PF, its VFs, and the PCIe device that routes to them.

Typical use (see README)::

    nic = Nic(total_vfs=64)
    rc.make_port().connect(nic)       # or nic.connect(port)
"""

from __future__ import annotations

import logging

from datasheet import device, pci, regs
from model.device import NicDevice, pcie_id
from model.events import EventBus
from model.inject import InjectionPoints
from model.mailbox import MailboxUnit
from model.pcap import PcapWriter
from model.pf import PhysicalFunction
from model.regfile import SummaryBits
from model.scheduler import Scheduler
from model.switch import Switch
from model.uplink import UplinkPort
from model.vf import VirtualFunction

IMR = {f.name: f.mask for f in regs.PF_IMR.fields}


class Nic:
    def __init__(self, total_vfs: int = device.DEFAULT_TOTAL_VFS):
        self.log = logging.getLogger("cocotb.nic")
        self.events = EventBus()
        self.scheduler = Scheduler()
        self.pf = PhysicalFunction(self, total_vfs)
        self.device = NicDevice(self)
        self.vfs: list[VirtualFunction] = []
        self._by_rid: dict[int, object] = {}
        self._index_rids()
        self.mailbox = MailboxUnit(self)
        self.vferr = SummaryBits(self.pf.regs, regs.PF_VFERR)
        self.pf.regs.bind(regs.PF_VF_STATS, self._vf_stat, None)
        self.pf.regs.bind(regs.PF_VFRTRIG, lambda i: 0, self._vf_reset_trigger)
        self.inject = InjectionPoints(self)
        self.switch = Switch(self)
        self.uplink = UplinkPort(self)
        self.pcap: PcapWriter | None = None          # capture of every frame entering the switch

    # -- wiring -------------------------------------------------------------------
    @property
    def upstream_port(self):
        return self.device.upstream_port

    def connect(self, port) -> None:
        self.device.connect(port)

    @property
    def sriov(self):
        return self.pf.sriov_cap

    # -- uplink and capture ---------------------------------------------------------
    @property
    def link_up(self) -> bool:
        return self.uplink.link_up

    def open_pcap(self, path) -> PcapWriter:
        """Capture every frame entering the switch to ``path`` (libpcap), replacing any open capture."""
        self.close_pcap()
        self.pcap = PcapWriter(path)
        return self.pcap

    def close_pcap(self) -> None:
        if self.pcap is not None:
            self.pcap.close()
            self.pcap = None

    # -- Routing IDs --------------------------------------------------------------
    def vf_rid(self, index: int) -> int:
        return pci.vf_rid(int(self.pf.pcie_id), self.sriov.first_vf_offset, self.sriov.vf_stride, index)

    def renumber_vfs(self) -> None:
        for vf in self.vfs:
            vf.pcie_id = pcie_id(self.vf_rid(vf.index))
        self._index_rids()

    def _index_rids(self) -> None:
        self._by_rid = {int(self.pf.pcie_id): self.pf}
        self._by_rid.update((int(vf.pcie_id), vf) for vf in self.vfs)

    def function_by_rid(self, rid: int):
        return self._by_rid.get(rid)

    # -- SR-IOV lifecycle (called by the SR-IOV capability) ----------------------------
    async def sriov_vf_enable(self, num_vfs: int) -> None:
        """VF Enable 0->1: instantiate NumVFs VFs at their Routing IDs (SR-IOV 1.1 §3.3.3.1)."""
        self.vfs = [VirtualFunction(self, i) for i in range(num_vfs)]
        for vf in self.vfs:
            self.device.attach_function(vf)
        self.renumber_vfs()
        self.mailbox.vfs_enabled(self.vfs)
        self.pf.regs.set(regs.PF_NUM_VFS, num_vfs)
        self.log.info("VF Enable: %d VFs, RIDs %s..%s", num_vfs,
                      *(pci.rid_str(self.vf_rid(i)) for i in (0, max(num_vfs - 1, 0))))

    async def sriov_vf_disable(self) -> None:
        """VF Enable 1->0: every VF vanishes with its state."""
        self.log.info("VF Enable cleared: removing %d VFs", len(self.vfs))
        for vf in self.vfs:
            vf.queues.reset()              # their rings' work is cancelled with them
        self.vfs = []
        self.vferr.bits = 0
        self._index_rids()
        self.mailbox.vfs_disabled()
        self.pf.regs.set(regs.PF_NUM_VFS, 0)

    # -- datapath: function <-> switch ---------------------------------------------------------
    def port_of(self, function) -> int:
        """Switch port number: 0 for the PF, 1 + i for VF i."""
        return 1 + function.index if function.is_vf else 0

    def function_at(self, port: int):
        if port == 0:
            return self.pf
        return self.vfs[port - 1] if 0 < port <= len(self.vfs) else None

    def transmit(self, function, frame: bytes) -> bool:
        """A frame a function's TX engine sent; False if the switch dropped it (anti-spoofing)."""
        return self.switch.forward(frame, self.port_of(function)) is not False

    def rx_deliver(self, port: int, frame: bytes) -> bool:
        """The switch hands a frame to a function's default RX queue (SW_FN_CTRL.DEFQ)."""
        function = self.function_at(port)
        if function is None:
            return False
        queue = regs.SW_FN_CTRL.field("DEFQ").get(self.pf.regs.get(regs.SW_FN_CTRL, port))
        return function.queues.deliver(queue, frame)

    def _vf_stat(self, index: int) -> int:
        n, stat = divmod(index, len(regs.STATS))
        return self.vfs[n].regs.get(regs.STATS[stat]) if n < len(self.vfs) else 0

    def pf_interrupt(self, cause: str) -> None:
        """Raise the PF's misc vector for ``cause`` (a PF_IMR field) if the PF enabled it."""
        if self.pf.regs.get(regs.PF_IMR) & IMR[cause]:
            self.pf.msix.signal(device.PF_MBX_VECTOR)

    def function_error(self, function) -> None:
        """A function entered the error state: a VF's goes to PF_VFERR; the PF is interrupted."""
        if function.is_vf:
            self.vferr.set(function.index)
        self.pf_interrupt("FN_ERR")

    def _vf_reset_trigger(self, i: int, value: int, byte_mask: int) -> None:
        """PF_VFRTRIG: software reset of every VF whose bit is written 1."""
        bits = value & byte_mask
        for n in range(32):
            index = 32 * i + n
            if bits >> n & 1 and index < len(self.vfs):
                self.vfs[index].software_reset()

    def function_reset(self, function) -> None:
        """A function finished a software reset or FLR: the device-level consequences."""
        if function.is_vf:
            self.mailbox.vf_reset(function)
        else:
            self.mailbox.pf_reset()
        self.switch.function_reset(function)

    def vf_bar_lookup(self, addr: int):
        """(vf, bar index, offset) decoded from the PF's VF BARs, or None.

        VF n's BARi window is VF BARi base + n x per-VF size; decode only while
        VF MSE is set (SR-IOV 1.1 §3.3.3.4).
        """
        cap = self.sriov
        if not (cap.vf_mse and self.vfs):
            return None
        for idx in (device.REG_BAR, device.MSIX_BAR):
            size = cap.vf_bar_size(idx)
            base = cap.vf_bar_base(idx)
            n, offset = divmod(addr - base, size)
            if base and 0 <= n < len(self.vfs):
                return self.vfs[n], idx, offset
        return None

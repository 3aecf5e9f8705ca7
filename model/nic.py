"""Top level of the NIC model: the PF, its VFs, and the PCIe device that routes to them.

Typical use (see README)::

    nic = Nic(total_vfs=64)
    rc.make_port().connect(nic)       # or nic.connect(port)
"""

from __future__ import annotations

import logging

from datasheet import device, pci, regs
from model.device import NicDevice, pcie_id
from model.mailbox import MailboxUnit
from model.pf import PhysicalFunction
from model.vf import VirtualFunction


class Nic:
    def __init__(self, total_vfs: int = device.DEFAULT_TOTAL_VFS):
        self.log = logging.getLogger("cocotb.nic")
        self.pf = PhysicalFunction(self, total_vfs)
        self.device = NicDevice(self)
        self.vfs: list[VirtualFunction] = []
        self._by_rid: dict[int, object] = {}
        self._index_rids()
        self.mailbox = MailboxUnit(self)

    # -- wiring -------------------------------------------------------------------
    @property
    def upstream_port(self):
        return self.device.upstream_port

    def connect(self, port) -> None:
        self.device.connect(port)

    @property
    def sriov(self):
        return self.pf.sriov_cap

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
        self.vfs = []
        self._index_rids()
        self.mailbox.vfs_disabled()
        self.pf.regs.set(regs.PF_NUM_VFS, 0)

    def function_reset(self, function) -> None:
        """A function finished a software reset or FLR: the device-level consequences."""
        if function.is_vf:
            self.mailbox.vf_reset(function)
        else:
            self.mailbox.pf_reset()

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

"""The NIC as a PCIe device: routes TLPs to the PF or a VF by Routing ID / address.

cocotbext-pcie's ``Device`` assumes function numbers 0..7 on one bus and scans
its functions linearly. An SR-IOV device has up to 256 VFs whose Routing IDs
(PF RID + First VF Offset + n x VF Stride) may exceed function 7 (ARI) and spill
onto the following bus numbers; those are reached with Type 1 configuration
requests, which the device claims for its extra buses (SR-IOV 1.1 §2.1.2).
Routing here is by full 16-bit RID and arithmetic BAR lookup, O(1) per TLP.

A TLP no function claims is handled as the library does (a UR completion for a request that
needs one) and is a Non-Function-specific error, which an SR-IOV device logs in the PF only
(PCIe Base 6.0 §6.2.4, §9.4): an Unsupported Request, or an Unexpected Completion.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from cocotbext.pcie.core.device import Device
from cocotbext.pcie.core.tlp import CplStatus, Tlp, TlpType
from cocotbext.pcie.core.utils import PcieId

from datasheet import device, pci
from model.pcie.function import CPL, MEM, MEM_WRITES, request_header, tlp_header

if TYPE_CHECKING:
    from model.pcie.function import MemoryRequest, NicFunction
    from model.pcie.pf import PhysicalFunction
    from model.pcie.vf import VirtualFunction

# keyed by (fmt, type), the TLP's own fields: ``tlp.fmt_type`` builds an enum member and
# hashes it by name, a cost on every TLP
CFG0 = {t.value for t in (TlpType.CFG_READ_0, TlpType.CFG_WRITE_0)}
CFG1 = {TlpType.CFG_READ_1.value: TlpType.CFG_READ_0, TlpType.CFG_WRITE_1.value: TlpType.CFG_WRITE_0}


class NicDevice(Device):
    """The NIC on the link: its PF and VF shells, routed by Routing ID and BAR address."""

    def __init__(self, pf: PhysicalFunction):
        super().__init__(pf)
        self.pf = pf
        self.vfs: list[VirtualFunction] = []
        self._by_rid: dict[int, NicFunction] = {}
        self._attach: list[Callable[[NicFunction], None]] = []
        self.upstream_port.max_link_speed = device.LINK_SPEED_GEN
        self.upstream_port.max_link_width = device.LINK_WIDTH
        self._index_rids()

    @property
    def bus_num(self) -> int:
        return self._bus_num

    @bus_num.setter
    def bus_num(self, value: int) -> None:
        if self._bus_num != value:
            self._bus_num = value
            self.log.name = f"cocotb.pcie.{type(self).__name__}[{value:02x}]"
            self.pf.pcie_id = self.pf.pcie_id._replace(bus=value)
            self._renumber_vfs()

    # -- the functions ------------------------------------------------------------------------
    def set_vfs(self, vfs: list[VirtualFunction]) -> None:
        """VF Enable set (``vfs``) or cleared (``[]``): route to these VF shells from now on."""
        self.vfs = list(vfs)
        for vf in self.vfs:
            vf.upstream_tx_handler = self.upstream_send
            for attach in self._attach:
                attach(vf)
        self._renumber_vfs()

    def on_function(self, attach: Callable[[NicFunction], None]) -> None:
        """Call ``attach(function)`` for the PF and every VF, now and whenever VF Enable adds
        VFs: how a fabric gives each function its path upstream."""
        self._attach.append(attach)
        for function in (self.pf, *self.vfs):
            attach(function)

    def vf_rid(self, index: int) -> int:
        sriov = self.pf.sriov_cap
        return pci.vf_rid(int(self.pf.pcie_id), sriov.first_vf_offset, sriov.vf_stride, index)

    def _renumber_vfs(self) -> None:
        for vf in self.vfs:
            vf.pcie_id = PcieId.from_int(self.vf_rid(vf.index))
        self._index_rids()

    def _index_rids(self) -> None:
        self._by_rid = {int(self.pf.pcie_id): self.pf}
        self._by_rid.update((int(vf.pcie_id), vf) for vf in self.vfs)

    def function_by_rid(self, rid: int) -> NicFunction | None:
        return self._by_rid.get(rid)

    def vf_bar_lookup(self, addr: int) -> tuple[VirtualFunction, int, int] | None:
        """(VF shell, bar index, offset) decoded from the PF's VF BARs, or None.

        VF n's BARi window is VF BARi base + n x per-VF size; decode only while
        VF MSE is set (SR-IOV 1.1 §3.3.3.4).
        """
        cap = self.pf.sriov_cap
        vfs = self.vfs
        if not (cap.vf_mse and vfs):
            return None
        for idx, base, size in cap.vf_bar_apertures():
            n, offset = divmod(addr - base, size)
            if base and 0 <= n < len(vfs):
                return vfs[n], idx, offset
        return None

    # -- routing ------------------------------------------------------------------------------
    def route_config(self, rid: int, type0: bool) -> NicFunction | None:
        """The function a configuration request to ``rid`` reaches. A Type 0 request gives the
        device its bus number (PCIe 6.0 §2.2.6.2); a Type 1 one is claimed on the extra bus
        numbers VFs occupy (SR-IOV 1.1 §2.1.2)."""
        if type0:
            self.bus_num = rid >> 8
        return self.function_by_rid(rid)

    def route_memory(self, address: int) -> tuple[NicFunction, int, int] | None:
        """(function, BAR index, offset) of the BAR that decodes ``address``: the PF's, else a
        VF's (VF MSE set); None if none does."""
        bar = self.pf.match_bar(address)
        if bar:
            return self.pf, bar[0], bar[1]
        return self.vf_bar_lookup(address)

    async def check_memory_request(
        self, hit: tuple[NicFunction, int, int] | None, req: MemoryRequest
    ) -> CplStatus | None:
        """The transaction-level fabric's view of :meth:`upstream_recv`'s checks: None to serve
        ``req`` at ``hit`` (function, BAR, offset: :meth:`route_memory`); a request no BAR
        decodes is the PF's Unsupported Request."""
        if hit is not None:
            return await hit[0].refuse_request(req, hit[1], hit[2])
        await self.pf.signal_error(pci.PCI_ERR_UNC_UNSUP, request_header(req), advisory=not req.write)
        return CplStatus.UR

    async def upstream_recv(self, tlp: Tlp) -> None:
        target = None
        kind = (tlp.fmt, tlp.type)
        if kind in CFG0:
            target = self.route_config(int(tlp.completer_id), type0=True)
        elif kind in CFG1:
            target = self.route_config(int(tlp.completer_id), type0=False)
            if target is not None:
                tlp.fmt_type = CFG1[kind]  # claimed on one of the VFs' extra buses
        elif kind in CPL:
            target = self.function_by_rid(int(tlp.requester_id))
        elif kind in MEM:
            hit = self.route_memory(tlp.address)
            target = hit[0] if hit else None
        if target is not None:
            await target.upstream_recv(tlp)
            return
        # unclaimed: the library's handling (UR completion for non-posted requests)
        saved = self.functions
        self.functions = []
        try:
            await super().upstream_recv(tlp)
        finally:
            self.functions = saved
        if kind in CPL:
            await self.pf.signal_error(pci.PCI_ERR_UNC_UNX_COMP, tlp_header(tlp), advisory=True)
        else:
            posted = kind in MEM_WRITES
            await self.pf.signal_error(pci.PCI_ERR_UNC_UNSUP, tlp_header(tlp), advisory=not posted)

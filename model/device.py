"""The NIC as a PCIe device: routes TLPs to the PF or a VF by Routing ID / address.

cocotbext-pcie's ``Device`` assumes function numbers 0..7 on one bus and scans
its functions linearly. An SR-IOV device has up to 256 VFs whose Routing IDs
(PF RID + First VF Offset + n x VF Stride) may exceed function 7 (ARI) and spill
onto the following bus numbers; those are reached with Type 1 configuration
requests, which the device claims for its extra buses (SR-IOV 1.1 §2.1.2).
Routing here is by full 16-bit RID and arithmetic BAR lookup, O(1) per TLP.
"""

from __future__ import annotations

from cocotbext.pcie.core.device import Device
from cocotbext.pcie.core.tlp import TlpType
from cocotbext.pcie.core.utils import PcieId

from datasheet import device

CFG0 = {TlpType.CFG_READ_0, TlpType.CFG_WRITE_0}
CFG1 = {TlpType.CFG_READ_1: TlpType.CFG_READ_0, TlpType.CFG_WRITE_1: TlpType.CFG_WRITE_0}
CPL = {TlpType.CPL, TlpType.CPL_DATA, TlpType.CPL_LOCKED, TlpType.CPL_LOCKED_DATA}
MEM = {TlpType.MEM_READ, TlpType.MEM_READ_64, TlpType.MEM_WRITE, TlpType.MEM_WRITE_64}


class NicDevice(Device):
    def __init__(self, nic):
        self.nic = nic
        super().__init__(nic.pf)
        self.upstream_port.max_link_speed = device.LINK_SPEED_GEN
        self.upstream_port.max_link_width = device.LINK_WIDTH

    @property
    def bus_num(self):
        return self._bus_num

    @bus_num.setter
    def bus_num(self, value):
        if self._bus_num != value:
            self._bus_num = value
            self.log.name = f"cocotb.pcie.{type(self).__name__}[{value:02x}]"
            self.nic.pf.pcie_id = self.nic.pf.pcie_id._replace(bus=value)
            self.nic.renumber_vfs()

    def attach_function(self, function) -> None:
        function.upstream_tx_handler = self.upstream_send

    async def upstream_recv(self, tlp):
        target = None
        if tlp.fmt_type in CFG0:
            self.bus_num = tlp.completer_id.bus   # capture the bus number (PCIe 6.0 §2.2.6.2)
            target = self.nic.function_by_rid(int(tlp.completer_id))
        elif tlp.fmt_type in CFG1:
            target = self.nic.function_by_rid(int(tlp.completer_id))
            if target is not None:
                tlp.fmt_type = CFG1[tlp.fmt_type]   # claimed on one of the VFs' extra buses
        elif tlp.fmt_type in CPL:
            target = self.nic.function_by_rid(int(tlp.requester_id))
        elif tlp.fmt_type in MEM:
            if self.nic.pf.match_bar(tlp.address):
                target = self.nic.pf
            else:
                hit = self.nic.vf_bar_lookup(tlp.address)
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


def pcie_id(rid: int) -> PcieId:
    return PcieId.from_int(rid)

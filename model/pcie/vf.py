"""A Virtual Function shell (SR-IOV 1.1 §3.4-§3.5).

Config space per the SR-IOV spec: Vendor and Device ID read 0xFFFF, Command's Memory Space
Enable is RO 0 (the PF's VF MSE governs), BARs read 0 (the PF's VF BARn define them), no
INTx, PCIe capability with FLR, MSI-X, ARI, AER. BAR decode is arithmetic over the PF's VF BARs
(``decode``), and a VF's windows map onto its own slice only.

Error reporting controls are the PF's (PCIe Base 6.0 §9.4.1): in a VF, Command's SERR# Enable
and Parity Error Response and Device Control's error reporting enables are RsvdP, and so are
Max_Payload_Size and the Completion Timeout controls of Device Control 2; the VF's status
bits and its AER registers are its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from datasheet import device, pci
from model import events as ev
from model.pcie.caps import AriExtendedCapability
from model.pcie.function import NicFunction

if TYPE_CHECKING:
    from model.pcie.pf import PhysicalFunction

#: (VF shell, BAR index, offset) of an address in the VF BAR windows, or None
VfBarDecode = Callable[[int], "tuple[VirtualFunction, int, int] | None"]


class VirtualFunction(NicFunction):
    is_vf = True

    def __init__(self, index: int, decode: VfBarDecode, events: ev.EventBus, pf: PhysicalFunction):
        self.index = index
        super().__init__(device.vf_port(index), device.VF_MSIX_VECTORS, events)
        self._decode = decode
        self._pf = pf
        self.vendor_id = 0xFFFF
        self.device_id = 0xFFFF
        self.subsystem_id = device.VF_SUBSYSTEM_ID
        self.ari_cap = AriExtendedCapability(next_function_number=0)
        self.register_extended_capability(self.ari_cap)
        self.capture_reset_state()

    def match_bar(self, addr: int, io: bool = False) -> tuple[int, int] | None:
        if io:
            return None
        hit = self._decode(addr)
        if hit is None or hit[0] is not self:
            return None
        return hit[1], hit[2]

    async def read_config_register(self, reg: int) -> int:
        val = await super().read_config_register(reg)
        if reg == pci.PCI_COMMAND // 4:
            val &= ~(pci.PCI_COMMAND_MEMORY | pci.PCI_COMMAND_IO | pci.PCI_COMMAND_INTX_DISABLE)
        return val

    @property
    def controls(self) -> NicFunction:
        return self._pf

    async def write_config_register(self, reg: int, data: int, mask: int) -> None:
        await super().write_config_register(reg, data, mask)
        if reg == pci.PCI_COMMAND // 4:
            # RO 0 in a VF: the PF's VF MSE governs memory decode; VFs have no I/O or INTx
            self.memory_space_enable = False
            self.io_space_enable = False
            self.interrupt_disable = False
            self.serr_enable = self.parity_error_response_enable = False  # RsvdP: the PF's apply
        cap = self.pcie_cap
        if reg in (cap.offset + pci.PCI_EXP_DEVCTL // 4, cap.offset + pci.PCI_EXP_DEVCTL2 // 4):
            cap.correctable_error_reporting_enable = cap.non_fatal_error_reporting_enable = False
            cap.fatal_error_reporting_enable = cap.unsupported_request_reporting_enable = False
            cap.max_payload_size = cap.completion_timeout_value = 0
            cap.completion_timeout_disable = False

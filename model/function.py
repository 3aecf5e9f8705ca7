"""PCIe function shells of the NIC: config space and BAR decode.

:class:`NicFunction` holds what PF and VF share: a register file built from
:mod:`datasheet.regs` behind BAR0, an MSI-X table/PBA behind BAR2, the PCIe
capability with FLR, and the rule for unimplemented config registers (read 0,
write ignored, logged and counted in :attr:`NicFunction.config_unimplemented`).
"""

from __future__ import annotations

from cocotbext.pcie.core.endpoint import MemoryEndpoint

from datasheet import device, regs
from model.caps import NicPcieCapability
from model.msix import MsixTable, NicMsixCapability
from model.queues import QueueEngine
from model.regfile import RegisterFile

import struct


class NicFunction(MemoryEndpoint):
    """Common part of the PF and VF functions."""

    is_vf = False

    def __init__(self, nic, msix_vectors: int, queue_pairs: int):
        super().__init__()
        self.nic = nic
        self.vendor_id = device.VENDOR_ID
        self.revision_id = device.REVISION_ID
        self.class_code = device.CLASS_CODE
        self.subsystem_vendor_id = device.SUBSYSTEM_VENDOR_ID
        self.config_unimplemented = 0

        # replace the library's PCIe capability with the FLR-capable one, same slot
        self.deregister_capability(self.pcie_cap)
        self.pcie_cap = NicPcieCapability(self.flr)
        self.register_capability(self.pcie_cap)
        self.mem_region.cfg = self.pcie_cap

        self.msix_cap = NicMsixCapability(msix_vectors)
        self.register_capability(self.msix_cap)
        self.msix = MsixTable(self.msix_cap, self._send_msi, self.log)

        self.regs = RegisterFile(regs.registers_for(self.is_vf), self.log)
        self.regs.on_write(regs.CTRL, self._ctrl_written)
        self.strap()
        self.queues = QueueEngine(self, queue_pairs, msix_vectors)
        self.regions[device.REG_BAR] = (self._read_regs, self._write_regs)
        self.regions[device.MSIX_BAR] = (self._read_msix, self._write_msix)

    # -- BAR handlers -----------------------------------------------------------
    async def _read_regs(self, addr, length):
        return self.regs.read(addr, length)

    async def _write_regs(self, addr, data):
        self.regs.write(addr, bytes(data))

    async def _read_msix(self, addr, length):
        return self.msix.read(addr, length)

    async def _write_msix(self, addr, data):
        self.msix.write(addr, bytes(data))

    async def _send_msi(self, addr: int, data: int) -> None:
        await self.mem_write(addr, struct.pack("<L", data))

    # -- resets -----------------------------------------------------------------
    def _ctrl_written(self, old: int, new: int) -> None:
        if regs.CTRL.field("RST").get(new):
            self.software_reset()
            self.regs.set(regs.CTRL, regs.CTRL.field("RST").put(self.regs.get(regs.CTRL), 0))

    def software_reset(self) -> None:
        """CTRL.RST: device-level state of this function back to reset; config space kept."""
        self.log.info("function software reset")
        self.regs.reset()
        self.queues.reset()
        self.strap()
        self.nic.function_reset(self)

    def strap(self) -> None:
        """Hardware-owned register values after reset: link state (and FUNC_INFO in a VF)."""
        uplink = getattr(self.nic, "uplink", None)      # None while the Nic is being built
        if uplink is not None:
            uplink.apply_status(self)

    async def flr(self) -> None:
        """Function Level Reset (PCIe Base 6.0 §6.6.2): function state and config to defaults."""
        self.log.info("Function Level Reset")
        self.bus_master_enable = False
        self.memory_space_enable = False
        self.interrupt_disable = False
        self.pcie_cap.reset_control()
        self.msix.reset()
        self.software_reset()

    # -- config space -------------------------------------------------------------
    def _implemented(self, reg: int) -> bool:
        if reg < 16:
            return True
        if reg < 64:
            return self.capabilities.find_by_reg(reg) is not None
        if reg < 1024:
            return self.ext_capabilities.find_by_reg(reg) is not None
        return False

    async def read_config_register(self, reg):
        if not self._implemented(reg):
            self.config_unimplemented += 1
            self.log.debug("config read of unimplemented register 0x%03x: reads 0", reg * 4)
            return 0
        return await super().read_config_register(reg)

    async def write_config_register(self, reg, data, mask):
        if not self._implemented(reg):
            self.config_unimplemented += 1
            self.log.warning("config write to unimplemented register 0x%03x (data 0x%08x): ignored",
                             reg * 4, data)
            return
        await super().write_config_register(reg, data, mask)

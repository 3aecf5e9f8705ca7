"""PCIe function shells of the NIC: config space and BAR decode.

:class:`NicFunction` holds what PF and VF share: a register file built from
:mod:`datasheet.regs` behind BAR0, an MSI-X table/PBA behind BAR2, the PCIe
capability with FLR, and the rule for unimplemented config registers (read 0,
write ignored, logged and counted in :attr:`NicFunction.config_unimplemented`).

Faults stay in the function (``docs/security.md``): every coroutine the function
starts runs under :meth:`NicFunction.spawn`'s guard and every BAR access under
:meth:`NicFunction._guarded_access`; an unexpected exception in either puts the function
into the error state (:meth:`NicFunction.function_error`) instead of escaping into the
simulation.
"""

from __future__ import annotations

import copy
import struct

import cocotb
from cocotbext.pcie.core.endpoint import MemoryEndpoint

from datasheet import device, regs
from datasheet.regs import FnError
from model import events as ev
from model.caps import NicPcieCapability
from model.msix import MsixTable, NicMsixCapability
from model.queues import QueueEngine
from model.regfile import RegisterFile

STATUS_FN_ERR = regs.STATUS.field("FN_ERR")
ERR_CAUSE = regs.FN_ERROR.field("CAUSE")
ERR_EVENTS = regs.FN_ERROR.field("EVENTS")

#: Type 0 header state an FLR returns to its reset value (PCIe Base 6.0 §6.6.2): the whole
#: Command register, Status error bits, Cache Line Size, Interrupt Line, the BARs
HEADER_RESET = ("io_space_enable", "memory_space_enable", "bus_master_enable", "parity_error_response_enable",
                "serr_enable", "interrupt_disable", "interrupt_status", "master_data_parity_error",
                "signaled_target_abort", "received_target_abort", "received_master_abort",
                "signaled_system_error", "detected_parity_error", "cache_line_size", "latency_timer",
                "start_bist", "interrupt_line", "expansion_rom_addr", "expansion_rom_enable", "bar")
#: PCIe capability fields an FLR leaves alone (§6.6.2: link-wide settings the hierarchy owns)
PCIE_CAP_PRESERVED = frozenset({
    "max_payload_size", "aspm_control", "read_completion_boundary", "common_clock_configuration",
    "extended_synch", "enable_clock_power_management", "hardware_autonomous_width_disable",
    "captured_slot_power_limit_value", "captured_slot_power_limit_scale"})


class NicFunction(MemoryEndpoint):
    """Common part of the PF and VF functions."""

    is_vf = False

    def __init__(self, nic, fn: int, msix_vectors: int, queue_pairs: int):
        super().__init__()
        self.nic = nic
        self.fn = fn
        self.vendor_id = device.VENDOR_ID
        self.revision_id = device.REVISION_ID
        self.class_code = device.CLASS_CODE
        self.subsystem_vendor_id = device.SUBSYSTEM_VENDOR_ID
        self.config_unimplemented = 0
        self._config_write = nic.events.topic(ev.ConfigWrite)
        self._mmio_write = nic.events.topic(ev.MmioWrite)
        self._error_topic = nic.events.topic(ev.FunctionError)
        self._reset_topic = nic.events.topic(ev.Reset)

        # replace the library's PCIe capability with the FLR-capable one, same slot
        self.deregister_capability(self.pcie_cap)
        self.pcie_cap = NicPcieCapability(self.flr)
        self.register_capability(self.pcie_cap)
        self.mem_region.cfg = self.pcie_cap

        self.msix_cap = NicMsixCapability(msix_vectors)
        self.register_capability(self.msix_cap)
        self.regs = RegisterFile(regs.registers_for(self.is_vf), self.log)
        self.msix = MsixTable(fn, self.msix_cap, self._send_msi, lambda: self.bus_master_enable, self.spawn,
                              nic.events, self.log, self.regs.bad_access)
        self.regs.on_write(regs.CTRL, self._ctrl_written)
        self.strap()
        self.queues = QueueEngine(fn, self.regs, queue_pairs, msix_vectors, port=self,
                                  transmit=lambda frame: nic.transmit(self, frame), signal=self.msix.signal,
                                  spawn=self.spawn, scheduler=nic.scheduler, events=nic.events,
                                  on_error=self.function_error, log=self.log)
        self.regions[device.REG_BAR] = (self._read_regs, self._write_regs)
        self.regions[device.MSIX_BAR] = (self._read_msix, self._write_msix)

    def capture_reset_state(self) -> None:
        """Record the config state an FLR returns to; called once construction is complete."""
        self._header_reset = {name: copy.copy(getattr(self, name)) for name in HEADER_RESET}
        self._cap_reset = [(cap, {k: copy.copy(v) for k, v in vars(cap).items()
                                  if not (cap is self.pcie_cap and k in PCIE_CAP_PRESERVED)
                                  and not callable(v)})
                           for cap in (*self.capabilities.list, *self.ext_capabilities.list)
                           if not hasattr(cap, "reset")]

    # -- the guard ----------------------------------------------------------------------
    def spawn(self, coro) -> None:
        """Start ``coro`` as a task of this function: an exception it raises is the function's error."""
        cocotb.start_soon(self._guarded(coro))

    async def _guarded(self, coro) -> None:
        try:
            await coro
        except Exception as exc:
            self.function_error(FnError.TASK, f"{type(exc).__name__}: {exc}")

    def function_error(self, cause: FnError, detail: str) -> None:
        """Enter the error state: queues stopped and refusing to start until a function reset,
        STATUS.FN_ERR and FN_ERROR set, the PF told (PF_VFERR + its misc vector for a VF)."""
        rf = self.regs
        value = rf.get(regs.FN_ERROR)
        if not ERR_CAUSE.get(value):
            value = ERR_CAUSE.put(value, cause)
        value = ERR_EVENTS.put(value, min(ERR_EVENTS.get(value) + 1, ERR_EVENTS.mask >> ERR_EVENTS.lsb))
        rf.set(regs.FN_ERROR, value)
        rf.set(regs.STATUS, STATUS_FN_ERR.put(rf.get(regs.STATUS), 1))
        self.log.error("function %s entered the error state (%s): %s", self.pcie_id, cause.name, detail)
        self.queues.fail()
        self.nic.function_error(self)
        if self._error_topic:
            self._error_topic.emit(ev.FunctionError(self.fn, int(self.pcie_id), int(cause), detail))

    # -- DMA port (model.queues.DmaPort) ----------------------------------------------------
    async def dma_read(self, addr: int, length: int) -> bytes:
        return await self.mem_read(addr, length)

    async def dma_write(self, addr: int, data: bytes) -> None:
        await self.mem_write(addr, data)

    # -- BAR handlers -----------------------------------------------------------------------
    def _guarded_access(self, access, *args):
        try:
            return access(*args)
        except Exception as exc:   # never let a BAR access fault escape into the fabric
            self.function_error(FnError.ACCESS, f"{getattr(access, '__name__', access)}{args[:1]}: "
                                                f"{type(exc).__name__}: {exc}")
            return None

    def _emit_mmio(self, bar: int, addr: int, data: bytes) -> None:
        first = addr & ~3
        for dword in range(first, addr + len(data), 4):
            lanes = bytes(data[max(dword, addr) - addr:min(dword + 4, addr + len(data)) - addr])
            shift = max(addr - dword, 0)
            value = int.from_bytes(bytes(shift) + lanes, "little")
            self._mmio_write.emit(ev.MmioWrite(self.fn, bar, dword, value, ((1 << len(lanes)) - 1) << shift))

    async def _read_regs(self, addr, length):
        data = self._guarded_access(self.regs.read, addr, length)
        return bytes(length) if data is None else data

    async def _write_regs(self, addr, data):
        if self._mmio_write:
            self._emit_mmio(device.REG_BAR, addr, data)
        self._guarded_access(self.regs.write, addr, bytes(data))

    async def _read_msix(self, addr, length):
        data = self._guarded_access(self.msix.read, addr, length)
        return bytes(length) if data is None else data

    async def _write_msix(self, addr, data):
        if self._mmio_write:
            self._emit_mmio(device.MSIX_BAR, addr, data)
        self._guarded_access(self.msix.write, addr, bytes(data))

    async def _send_msi(self, addr: int, data: int) -> None:
        await self.mem_write(addr, struct.pack("<L", data))

    # -- resets -----------------------------------------------------------------------------
    def _ctrl_written(self, old: int, new: int) -> None:
        if regs.CTRL.field("RST").get(new):
            self.software_reset()
            self.regs.set(regs.CTRL, regs.CTRL.field("RST").put(self.regs.get(regs.CTRL), 0))

    def software_reset(self, kind: str = "soft") -> None:
        """CTRL.RST: device-level state of this function back to reset; config space kept."""
        self.log.info("function %s reset", kind)
        self.regs.reset()
        self.queues.reset()
        self.strap()
        self.nic.function_reset(self)
        if self._reset_topic:
            self._reset_topic.emit(ev.Reset(self.fn, kind))

    def strap(self) -> None:
        """Hardware-owned register values after reset: link state (and FUNC_INFO in a VF)."""
        uplink = getattr(self.nic, "uplink", None)      # None while the Nic is being built
        if uplink is not None:
            uplink.apply_status(self)

    async def flr(self) -> None:
        """Function Level Reset (PCIe Base 6.0 §6.6.2): every register of the function back to
        its reset value but the link-wide ones; then the device state (:meth:`software_reset`)."""
        self.log.info("Function Level Reset")
        for name, value in self._header_reset.items():
            setattr(self, name, copy.copy(value))
        for cap, state in self._cap_reset:
            for name, value in state.items():
                setattr(cap, name, copy.copy(value))
        self.msix.reset()
        self.software_reset("flr")

    # -- config space -------------------------------------------------------------------------
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
        if self._config_write:
            self._config_write.emit(ev.ConfigWrite(self.fn, int(self.pcie_id), reg * 4, data, mask))
        if not self._implemented(reg):
            self.config_unimplemented += 1
            self.log.warning("config write to unimplemented register 0x%03x (data 0x%08x): ignored",
                             reg * 4, data)
            return
        bme = self.bus_master_enable
        await super().write_config_register(reg, data, mask)
        if self.bus_master_enable and not bme:
            self.msix.deliver_pending()        # messages held while bus mastering was off

"""PCIe function shells of the NIC: config space and BAR decode, nothing else.

:class:`NicFunction` holds what PF and VF share: the Type 0 header, PM, the PCIe
capability with FLR, the MSI-X capability, and the rule for unimplemented config
registers (read 0, write ignored, logged and counted in ``config_unimplemented``). Its
BAR0 and MSI-X BAR decode onto its slice of the device core
(:class:`~model.core.slice.FunctionSlice`), mapped once by :meth:`map_slice`; the shell
is also the slice's bus-master interface (DMA, MSI-X messages, Bus Master Enable).
"""

from __future__ import annotations

import copy
import struct
from typing import TYPE_CHECKING

from cocotbext.pcie.core.endpoint import MemoryEndpoint

from datasheet import device
from model import events as ev
from model.pcie.caps import NicMsixCapability, NicPcieCapability

if TYPE_CHECKING:
    from model.core.slice import FunctionSlice

#: Type 0 header state an FLR returns to its reset value (PCIe Base 6.0 §6.6.2): the whole
#: Command register, Status error bits, Cache Line Size, Interrupt Line, the BARs
HEADER_RESET = (
    "io_space_enable",
    "memory_space_enable",
    "bus_master_enable",
    "parity_error_response_enable",
    "serr_enable",
    "interrupt_disable",
    "interrupt_status",
    "master_data_parity_error",
    "signaled_target_abort",
    "received_target_abort",
    "received_master_abort",
    "signaled_system_error",
    "detected_parity_error",
    "cache_line_size",
    "latency_timer",
    "start_bist",
    "interrupt_line",
    "expansion_rom_addr",
    "expansion_rom_enable",
    "bar",
)
#: PCIe capability fields an FLR leaves alone (§6.6.2: link-wide settings the hierarchy owns)
PCIE_CAP_PRESERVED = frozenset(
    {
        "max_payload_size",
        "aspm_control",
        "read_completion_boundary",
        "common_clock_configuration",
        "extended_synch",
        "enable_clock_power_management",
        "hardware_autonomous_width_disable",
        "captured_slot_power_limit_value",
        "captured_slot_power_limit_scale",
    }
)


class NicFunction(MemoryEndpoint):
    """Common part of the PF and VF shells; ``fn`` is the function index (0 = PF, 1 + i = VF i)."""

    is_vf = False

    def __init__(self, fn: int, msix_vectors: int, events: ev.EventBus):
        super().__init__()
        self.fn = fn
        self.slice: FunctionSlice | None = None
        self.vendor_id = device.VENDOR_ID
        self.revision_id = device.REVISION_ID
        self.class_code = device.CLASS_CODE
        self.subsystem_vendor_id = device.SUBSYSTEM_VENDOR_ID
        self.config_unimplemented = 0
        self._config_write = events.topic(ev.ConfigWrite)

        # replace the library's PCIe capability with the FLR-capable one, same slot
        self.deregister_capability(self.pcie_cap)
        self.pcie_cap = NicPcieCapability(self.flr)
        self.register_capability(self.pcie_cap)
        self.mem_region.cfg = self.pcie_cap

        self.msix_cap = NicMsixCapability(msix_vectors, on_control_change=self._msix_control_changed)
        self.register_capability(self.msix_cap)
        self.regions[device.REG_BAR] = (self._read_bar0, self._write_bar0)
        self.regions[device.MSIX_BAR] = (self._read_msix_bar, self._write_msix_bar)

    def map_slice(self, slice_: FunctionSlice) -> None:
        """Decode this function's BARs onto ``slice_`` of the device core (once, when built)."""
        self.slice = slice_

    def capture_reset_state(self) -> None:
        """Record the config state an FLR returns to; called once construction is complete."""
        self._header_reset = {name: copy.copy(getattr(self, name)) for name in HEADER_RESET}
        self._cap_reset = [
            (
                cap,
                {
                    k: copy.copy(v)
                    for k, v in vars(cap).items()
                    if not (cap is self.pcie_cap and k in PCIE_CAP_PRESERVED) and not callable(v)
                },
            )
            for cap in (*self.capabilities.list, *self.ext_capabilities.list)
            if not hasattr(cap, "reset")
        ]

    # -- bus-master interface (model.core.slice.FunctionPort) --------------------------------
    @property
    def rid(self) -> int:
        return int(self.pcie_id)

    async def dma_read(self, addr: int, length: int) -> bytes:
        return await self.mem_read(addr, length)

    async def dma_write(self, addr: int, data: bytes) -> None:
        await self.mem_write(addr, data)

    async def send_msi(self, addr: int, data: int) -> None:
        await self.mem_write(addr, struct.pack("<L", data))

    # -- BAR decode onto the slice ----------------------------------------------------------
    async def _read_bar0(self, addr: int, length: int) -> bytes:
        return self.slice.bar_read(device.REG_BAR, addr, length)

    async def _write_bar0(self, addr: int, data: bytes) -> None:
        self.slice.bar_write(device.REG_BAR, addr, bytes(data))

    async def _read_msix_bar(self, addr: int, length: int) -> bytes:
        return self.slice.bar_read(device.MSIX_BAR, addr, length)

    async def _write_msix_bar(self, addr: int, data: bytes) -> None:
        self.slice.bar_write(device.MSIX_BAR, addr, bytes(data))

    def _msix_control_changed(self) -> None:
        if self.slice is not None:
            self.slice.msix.deliver_pending()

    # -- resets -----------------------------------------------------------------------------
    async def flr(self) -> None:
        """Function Level Reset (PCIe Base 6.0 §6.6.2): every register of the function back to
        its reset value but the link-wide ones; then the device state of its slice."""
        self.log.info("Function Level Reset")
        for name, value in self._header_reset.items():
            setattr(self, name, copy.copy(value))
        for cap, state in self._cap_reset:
            for name, value in state.items():
                setattr(cap, name, copy.copy(value))
        self.slice.flr()

    # -- config space -------------------------------------------------------------------------
    def _implemented(self, reg: int) -> bool:
        if reg < 16:
            return True
        if reg < 64:
            return self.capabilities.find_by_reg(reg) is not None
        if reg < 1024:
            return self.ext_capabilities.find_by_reg(reg) is not None
        return False

    async def read_config_register(self, reg: int) -> int:
        if not self._implemented(reg):
            self.config_unimplemented += 1
            self.log.debug("config read of unimplemented register 0x%03x: reads 0", reg * 4)
            return 0
        return await super().read_config_register(reg)

    async def write_config_register(self, reg: int, data: int, mask: int) -> None:
        if self._config_write:
            self._config_write.emit(ev.ConfigWrite(self.fn, int(self.pcie_id), reg * 4, data, mask))
        if not self._implemented(reg):
            self.config_unimplemented += 1
            self.log.warning("config write to unimplemented register 0x%03x (data 0x%08x): ignored", reg * 4, data)
            return
        bme = self.bus_master_enable
        await super().write_config_register(reg, data, mask)
        if self.bus_master_enable and not bme and self.slice is not None:
            self.slice.msix.deliver_pending()  # messages held while bus mastering was off

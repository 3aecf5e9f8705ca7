"""MSI-X capability (PCIe Base 6.0 §7.7.2) in the NIC's layout: table and PBA in the MSI-X BAR."""

from __future__ import annotations

from collections.abc import Callable

from cocotbext.pcie.core.caps import MsixCapability

from datasheet import device


class NicMsixCapability(MsixCapability):
    """MSI-X capability that calls ``on_control_change()`` when Enable / Function Mask are written
    (the table may then send messages it held)."""

    def __init__(self, table_size: int, on_control_change: Callable[[], None]):
        super().__init__()
        self.msix_table_size = table_size - 1
        self.msix_table_bar_indicator_register = device.MSIX_BAR
        self.msix_table_offset = device.MSIX_TABLE_OFFSET
        self.msix_pba_bar_indicator_register = device.MSIX_BAR
        self.msix_pba_offset = device.MSIX_PBA_OFFSET
        self.on_control_change = on_control_change

    async def _write_register(self, reg: int, data: int, mask: int) -> None:
        await super()._write_register(reg, data, mask)
        if reg == 0:
            self.on_control_change()

    def reset(self) -> None:
        self.msix_enable = False
        self.msix_function_mask = False

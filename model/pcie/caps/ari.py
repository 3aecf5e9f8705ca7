"""Alternative Routing-ID Interpretation extended capability (PCIe Base 6.0 §7.8.8)."""

from __future__ import annotations

from cocotbext.pcie.core.caps import PciExtCap, PciExtCapId
from cocotbext.pcie.core.utils import byte_mask_update

from datasheet import pci


class AriExtendedCapability(PciExtCap):
    """ARI capability: Next Function Number, no MFVC/ACS function groups."""

    def __init__(self, next_function_number: int = 0):
        super().__init__()
        self.cap_id = PciExtCapId.ARI
        self.cap_ver = 1
        self.length = pci.PCI_ARI_SIZEOF // 4
        self.next_function_number = next_function_number
        self.mfvc_function_groups_capability = False
        self.acs_function_groups_capability = False
        self.ctrl = 0  # MFVC/ACS Function Groups Enable are RO 0 when not capable

    """
    31                              16 15              8 7               0
    +---------------------------------+-----------------+----------------+
    |          ARI Control            | Next Function # |  ARI Cap bits  |   1  0x04
    +---------------------------------+-----------------+----------------+
    """

    async def _read_register(self, reg: int) -> int:
        if reg == 1:
            val = bool(self.mfvc_function_groups_capability) * pci.PCI_ARI_CAP_MFVC
            val |= bool(self.acs_function_groups_capability) * pci.PCI_ARI_CAP_ACS
            val |= (self.next_function_number & 0xFF) << pci.PCI_ARI_CAP_NFN_SHIFT
            val |= (self.ctrl & 0xFFFF) << 16
            return val
        return 0

    async def _write_register(self, reg: int, data: int, mask: int) -> None:
        if reg == 1:
            # Function Group (bits 6:4 of ARI Control) is RW only with MFVC/ACS groups
            writable = 0
            if self.mfvc_function_groups_capability:
                writable |= 0x1 | (0x7 << pci.PCI_ARI_CTRL_FG_SHIFT)
            if self.acs_function_groups_capability:
                writable |= 0x2 | (0x7 << pci.PCI_ARI_CTRL_FG_SHIFT)
            self.ctrl = byte_mask_update(self.ctrl, mask >> 2, data >> 16, writable)

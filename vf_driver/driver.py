"""VF driver probe: enable the VF, map BAR0, read its identification registers."""

from __future__ import annotations

import logging

from cocotbext.pcie.core.pci import PciDevice

from datasheet import device, regs
from pf_driver.pci_core import PciError


class VfDriver:
    """Drives one Virtual Function through its own config space and BARs only."""

    def __init__(self, pdev: PciDevice):
        self.pdev = pdev
        self.log = logging.getLogger(f"cocotb.vf_driver[{pdev.pcie_id}]")
        self.bar0 = None
        self.vf_index = None
        self.msix_vectors = 0

    async def probe(self) -> None:
        dev = self.pdev
        if dev.device_id != device.VF_DEVICE_ID:
            raise PciError(f"{dev.pcie_id}: not our VF (device {dev.device_id:04x})")
        await dev.set_master()
        self.bar0 = dev.bar_window[device.REG_BAR]
        nic_id = await self.read_reg(regs.NIC_ID)
        if nic_id != device.NIC_ID_MAGIC:
            raise PciError(f"{dev.pcie_id}: NIC_ID reads {nic_id:#x}")
        info = await self.read_reg(regs.FUNC_INFO)
        if not regs.FUNC_INFO.field("IS_VF").get(info):
            raise PciError(f"{dev.pcie_id}: FUNC_INFO says this is not a VF")
        self.vf_index = regs.FUNC_INFO.field("VF_INDEX").get(info)
        self.msix_vectors = await dev.alloc_irq_vectors(1, device.VF_MSIX_VECTORS)
        self.log.info("probed VF %d", self.vf_index)

    async def read_reg(self, reg: regs.Register) -> int:
        return await self.bar0.read_dword(reg.offset)

    async def write_reg(self, reg: regs.Register, value: int) -> None:
        await self.bar0.write_dword(reg.offset, value)

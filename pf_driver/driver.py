"""PF driver probe and ``sriov_configure`` (the Linux ``pci_driver`` shape)."""

from __future__ import annotations

import logging

from cocotbext.pcie.core.pci import PciDevice

from datasheet import device, regs
from pf_driver import pci_core
from pf_driver.sriov import Sriov


class PfDriver:
    """Drives the NIC's Physical Function through config/MMIO only."""

    def __init__(self, pdev: PciDevice):
        self.pdev = pdev
        self.log = logging.getLogger(f"cocotb.pf_driver[{pdev.pcie_id}]")
        self.bar0 = None
        self.sriov = Sriov(pdev, self.log)
        self.msix_vectors = 0

    async def probe(self) -> None:
        """Enable the device, map its BARs, check identity, enable MSI-X, init SR-IOV."""
        dev = self.pdev
        if (dev.vendor_id, dev.device_id) != (device.VENDOR_ID, device.PF_DEVICE_ID):
            raise pci_core.PciError(f"{dev.pcie_id}: not our PF ({dev.vendor_id:04x}:{dev.device_id:04x})")
        await dev.enable_device()
        await dev.set_master()
        self.bar0 = dev.bar_window[device.REG_BAR]
        if self.bar0 is None:
            raise pci_core.PciError(f"{dev.pcie_id}: BAR0 not assigned")
        nic_id = await self.read_reg(regs.NIC_ID)
        if nic_id != device.NIC_ID_MAGIC:
            raise pci_core.PciError(f"{dev.pcie_id}: NIC_ID reads {nic_id:#x}")
        self.msix_vectors = await dev.alloc_irq_vectors(1, device.PF_MSIX_VECTORS)
        await self.sriov.init()
        self.log.info("probed: NIC_ID %#x, %d MSI-X vectors, TotalVFs %d",
                      nic_id, self.msix_vectors, self.sriov.state.total_vfs)

    async def read_reg(self, reg: regs.Register) -> int:
        return await self.bar0.read_dword(reg.offset)

    async def write_reg(self, reg: regs.Register, value: int) -> None:
        await self.bar0.write_dword(reg.offset, value)

    async def sriov_configure(self, num_vfs: int) -> int:
        """Enable ``num_vfs`` VFs (0 disables them); returns how many are enabled."""
        return await self.sriov.configure(num_vfs)

    @property
    def num_vfs(self) -> int:
        return self.sriov.state.num_vfs if self.sriov.state else 0

    @property
    def virtfns(self) -> list[PciDevice]:
        """Host view of the enabled VFs, index order, for binding VF drivers."""
        return list(self.sriov.state.virtfns) if self.sriov.state else []

    async def flr(self) -> None:
        """PF Function Level Reset; VFs vanish with it."""
        self.sriov.state.virtfns.clear()
        await pci_core.pcie_flr(self.pdev)




"""The Physical Function shell: Type 0 header, BAR0 (registers) and BAR2 (MSI-X), PM, PCIe with
FLR, MSI-X, ARI and SR-IOV capabilities."""

from __future__ import annotations

from datasheet import device
from model import events as ev
from model.pcie.caps import AriExtendedCapability, SriovExtendedCapability
from model.pcie.caps.sriov import SriovOwner
from model.pcie.function import NicFunction


class PhysicalFunction(NicFunction):
    def __init__(self, total_vfs: int, sriov_owner: SriovOwner, events: ev.EventBus):
        super().__init__(device.PF_PORT, device.PF_MSIX_VECTORS, events)
        self.device_id = device.PF_DEVICE_ID
        self.subsystem_id = device.PF_SUBSYSTEM_ID
        self.configure_bar(device.REG_BAR, device.PF_REG_BAR_SIZE, ext=True)
        self.configure_bar(device.MSIX_BAR, device.PF_MSIX_BAR_SIZE, ext=True)
        self.ari_cap = AriExtendedCapability(next_function_number=0)  # the only PF
        self.register_extended_capability(self.ari_cap)
        self.sriov_cap = SriovExtendedCapability(
            sriov_owner,
            total_vfs,
            {device.REG_BAR: device.VF_REG_BAR_SIZE, device.MSIX_BAR: device.VF_MSIX_BAR_SIZE},
            self.log,
        )
        self.register_extended_capability(self.sriov_cap)
        self.capture_reset_state()

    def match_bar(self, addr: int, io: bool = False) -> tuple[int, int] | None:
        """BARs decode only while Command.Memory Space Enable is set (PCI 3.0 §6.2.2)."""
        if not self.memory_space_enable:
            return None
        return super().match_bar(addr, io)

    async def flr(self) -> None:
        """PF FLR also disables SR-IOV: VFs vanish, the capability returns to reset values
        (SR-IOV 1.1 §3.3.3.1); the rest is :meth:`NicFunction.flr`."""
        if self.sriov_cap.vf_enable:
            self.sriov_cap.vf_enable = False
            await self.sriov_cap.owner.sriov_vf_disable()
        self.sriov_cap.reset()
        await super().flr()

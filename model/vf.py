"""A Virtual Function (SR-IOV 1.1 §3.4-§3.5).

Config space per the SR-IOV spec: Vendor and Device ID read 0xFFFF, Command's
Memory Space Enable is RO 0 (the PF's VF MSE governs), BARs read 0 (the PF's
VF BARn define them), no INTx, PCIe capability with FLR, MSI-X. BAR decode is
arithmetic over the PF's VF BARs, so a VF's window is its own slice only.
"""

from __future__ import annotations

from datasheet import device, pci, regs
from model.caps import AriExtendedCapability
from model.function import NicFunction


class VirtualFunction(NicFunction):
    is_vf = True

    def __init__(self, nic, index: int):
        self.index = index
        super().__init__(nic, device.vf_port(index), device.VF_MSIX_VECTORS, device.VF_QUEUE_PAIRS)
        self.vendor_id = 0xFFFF
        self.device_id = 0xFFFF
        self.subsystem_id = device.VF_SUBSYSTEM_ID
        self.ari_cap = AriExtendedCapability(next_function_number=0)
        self.register_extended_capability(self.ari_cap)
        self.capture_reset_state()

    def strap(self) -> None:
        super().strap()
        info = regs.FUNC_INFO
        value = info.field("IS_VF").put(0, 1)
        self.regs.set(info, info.field("VF_INDEX").put(value, self.index))

    def match_bar(self, addr, io=False):
        if io:
            return None
        hit = self.nic.vf_bar_lookup(addr)
        if hit is None or hit[0] is not self:
            return None
        return hit[1], hit[2]

    async def read_config_register(self, reg):
        val = await super().read_config_register(reg)
        if reg == pci.PCI_COMMAND // 4:
            val &= ~(pci.PCI_COMMAND_MEMORY | pci.PCI_COMMAND_IO | pci.PCI_COMMAND_INTX_DISABLE)
        return val

    async def write_config_register(self, reg, data, mask):
        await super().write_config_register(reg, data, mask)
        if reg == pci.PCI_COMMAND // 4:
            # RO 0 in a VF: the PF's VF MSE governs memory decode; VFs have no I/O or INTx
            self.memory_space_enable = False
            self.io_space_enable = False
            self.interrupt_disable = False

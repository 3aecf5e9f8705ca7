"""PCI Express capability with Function Level Reset (PCIe Base 6.0 §7.5.3.3, §6.6.2)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from cocotbext.pcie.core.caps import PcieCapability

from datasheet import device


class NicPcieCapability(PcieCapability):
    """Endpoint PCIe capability: FLR capable, Gen3 x8 link, ARI-aware device control 2."""

    def __init__(self, on_flr: Callable[[], Awaitable[None]]):
        super().__init__()
        self.pcie_device_type = 0x0  # PCI Express Endpoint
        self.function_level_reset_capability = True
        self.max_payload_size_supported = device.MAX_PAYLOAD_SIZE_SUPPORTED
        self.extended_tag_supported = True
        self.max_link_speed = device.LINK_SPEED_GEN
        self.max_link_width = device.LINK_WIDTH
        self.current_link_speed = device.LINK_SPEED_GEN
        self.negotiated_link_width = device.LINK_WIDTH
        self.data_link_layer_link_active = True
        self._on_flr = on_flr

    async def _read_register(self, reg: int) -> int:
        if reg == 3:
            # Link Capabilities: cocotbext-pcie 0.2.16 shifts width/ASPM/latencies right
            # instead of left, so Max Link Width reads 0; encode per §7.5.3.6.
            val = await super()._read_register(reg) & ~0x3FFF0
            val |= (self.max_link_width & 0x3F) << 4
            val |= (self.aspm_support & 0x3) << 10
            val |= (self.l0s_exit_latency & 0x7) << 12
            val |= (self.l1_exit_latency & 0x7) << 15
            return val
        return await super()._read_register(reg)

    async def initiate_function_level_reset(self) -> None:
        await self._on_flr()

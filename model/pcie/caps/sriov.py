"""SR-IOV extended capability, ID 0x0010 (SR-IOV 1.1 §3.3; PCIe Base 6.0 §9.3.3).

The capability holds the PF's view of its VFs. It calls back into its owner
(the PF) when VF Enable changes. Outcomes for bad configuration input, chosen
where the spec leaves behaviour undefined (as QEMU did for CVE-2024-26327/26328):

* VF Enable set with NumVFs > TotalVFs: no VF is created, VF Enable reads back 0.
* NumVFs written while VF Enable is set: ignored (NumVFs is latched at enable).
* System Page Size written with a value that is not exactly one supported bit,
  or while VF Enable is set: ignored, previous value kept.
* ARI Capable Hierarchy changed while VF Enable is set: ignored.

Each rejected write is logged and counted in :attr:`rejected_writes`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from cocotbext.pcie.core.caps import PciExtCap, PciExtCapId
from cocotbext.pcie.core.utils import byte_mask_update

from datasheet import device, pci

if TYPE_CHECKING:
    import logging


class SriovOwner(Protocol):
    async def sriov_vf_enable(self, num_vfs: int) -> None: ...
    async def sriov_vf_disable(self) -> None: ...


class VfBar:
    """One VF BARn register (or the upper half of a 64-bit pair)."""

    def __init__(self, size: int = 0, is_64: bool = False, upper: bool = False):
        self.native_size = size
        self.is_64 = is_64
        self.upper = upper
        self.raw = 0


class SriovExtendedCapability(PciExtCap):
    def __init__(self, owner: SriovOwner, total_vfs: int, vf_bar_sizes: dict[int, int], log: logging.Logger):
        super().__init__()
        if not 1 <= total_vfs <= device.MAX_TOTAL_VFS:
            raise ValueError(f"TotalVFs must be 1..{device.MAX_TOTAL_VFS}, got {total_vfs}")
        self.cap_id = PciExtCapId.SRIOV
        self.cap_ver = 1
        self.length = pci.PCI_SRIOV_SIZEOF // 4
        self.owner = owner
        self.log = log

        self.total_vfs = total_vfs
        self.initial_vfs = total_vfs  # no VF Migration: InitialVFs == TotalVFs
        self.function_dependency_link = 0
        self.vf_device_id = device.VF_DEVICE_ID
        self.supported_page_sizes = device.SUPPORTED_PAGE_SIZES
        self.ari_capable_hierarchy_preserved = True
        self.rejected_writes = 0

        self.vf_bars = [VfBar() for _ in range(pci.PCI_SRIOV_NUM_BARS)]
        for idx, size in vf_bar_sizes.items():
            self.vf_bars[idx] = VfBar(size, is_64=True)
            self.vf_bars[idx + 1] = VfBar(size, is_64=True, upper=True)
        self.reset()

    def reset(self) -> None:
        """Values after a conventional reset or PF FLR (SR-IOV 1.1 §3.3.3, §3.3.7)."""
        self.vf_enable = False
        self.vf_mse = False
        self.ari_capable_hierarchy = False
        self.num_vfs = 0
        self.system_page_size = 0x1
        for bar in self.vf_bars:
            bar.raw = 0
        self._apertures: tuple[tuple[int, int, int], ...] | None = None

    # -- derived values ---------------------------------------------------------
    @property
    def first_vf_offset(self) -> int:
        return device.FIRST_VF_OFFSET_ARI if self.ari_capable_hierarchy else device.FIRST_VF_OFFSET_NO_ARI

    @property
    def vf_stride(self) -> int:
        return device.VF_STRIDE_ARI if self.ari_capable_hierarchy else device.VF_STRIDE_NO_ARI

    @property
    def page_size(self) -> int:
        return 1 << (self.system_page_size.bit_length() - 1 + pci.PCI_SRIOV_PAGE_SHIFT)

    def vf_bar_size(self, idx: int) -> int:
        """Per-VF aperture of VF BARidx: native size rounded up to the System Page Size (§3.3.13)."""
        size = self.vf_bars[idx].native_size
        return max(size, self.page_size) if size else 0

    def vf_bar_apertures(self) -> tuple[tuple[int, int, int], ...]:
        """(index, base of VF 0's aperture, per-VF size) of each implemented VF BAR, in index
        order: what every memory request to the VFs is decoded against, so it is kept until a
        VF BAR or the System Page Size is written (or the capability resets)."""
        if self._apertures is None:
            self._apertures = tuple(
                (idx, *self.vf_bar(idx)) for idx, bar in enumerate(self.vf_bars) if bar.native_size and not bar.upper
            )
        return self._apertures

    def vf_bar_base(self, idx: int) -> int:
        return self.vf_bar(idx)[0]

    def vf_bar(self, idx: int) -> tuple[int, int]:
        """(base of VF 0's aperture, per-VF size) of VF BARidx."""
        size = self.vf_bar_size(idx)
        lo = self.vf_bars[idx]
        base = lo.raw & ~0xF
        if lo.is_64:
            base |= self.vf_bars[idx + 1].raw << 32
        return base & ~(size - 1), size

    def _reject(self, what: str) -> None:
        self.rejected_writes += 1
        self.log.warning("SR-IOV: %s: write ignored", what)

    """
    31                              16 15                              0
    +---------------------------------+--------------------------------+
    |                  SR-IOV Capabilities                             |  1  0x04
    +---------------------------------+--------------------------------+
    |          SR-IOV Status          |         SR-IOV Control         |  2  0x08
    +---------------------------------+--------------------------------+
    |            TotalVFs             |           InitialVFs           |  3  0x0C
    +----------------+----------------+--------------------------------+
    |    Reserved    | Func Dep Link  |             NumVFs             |  4  0x10
    +----------------+----------------+--------------------------------+
    |            VF Stride            |          First VF Offset       |  5  0x14
    +---------------------------------+--------------------------------+
    |          VF Device ID           |            Reserved            |  6  0x18
    +---------------------------------+--------------------------------+
    |                  Supported Page Sizes                            |  7  0x1C
    |                  System Page Size                                |  8  0x20
    |                  VF BAR0 .. VF BAR5                              |  9-14
    |                  VF Migration State Array Offset                 | 15  0x3C
    +------------------------------------------------------------------+
    """

    async def _read_register(self, reg: int) -> int:
        if reg == 1:
            return bool(self.ari_capable_hierarchy_preserved) * pci.PCI_SRIOV_CAP_ARI_PRESERVED
        if reg == 2:
            val = bool(self.vf_enable) * pci.PCI_SRIOV_CTRL_VFE
            val |= bool(self.vf_mse) * pci.PCI_SRIOV_CTRL_MSE
            val |= bool(self.ari_capable_hierarchy) * pci.PCI_SRIOV_CTRL_ARI
            return val  # status (VF Migration Status) is always 0
        if reg == 3:
            return (self.initial_vfs & 0xFFFF) | (self.total_vfs & 0xFFFF) << 16
        if reg == 4:
            return (self.num_vfs & 0xFFFF) | (self.function_dependency_link & 0xFF) << 16
        if reg == 5:
            return (self.first_vf_offset & 0xFFFF) | (self.vf_stride & 0xFFFF) << 16
        if reg == 6:
            return (self.vf_device_id & 0xFFFF) << 16
        if reg == 7:
            return self.supported_page_sizes
        if reg == 8:
            return self.system_page_size
        if 9 <= reg < 9 + pci.PCI_SRIOV_NUM_BARS:
            return self._read_vf_bar(reg - 9)
        return 0  # reg 15: VF Migration State Array Offset = 0 (no migration)

    def _read_vf_bar(self, idx: int) -> int:
        bar = self.vf_bars[idx]
        if bar.native_size == 0:
            return 0
        size_mask = self.vf_bar_size(idx - 1 if bar.upper else idx) - 1
        if bar.upper:
            return bar.raw & ~(size_mask >> 32) & 0xFFFFFFFF
        return (bar.raw & ~size_mask & 0xFFFFFFF0) | pci.PCI_BASE_ADDRESS_MEM_TYPE_64 * bar.is_64

    async def _write_register(self, reg: int, data: int, mask: int) -> None:
        if reg == 2:
            await self._write_control(data, mask)
        elif reg == 4 and mask & 0x3:
            if self.vf_enable:
                self._reject("NumVFs written while VF Enable is set")
            else:
                self.num_vfs = byte_mask_update(self.num_vfs, mask & 0x3, data) & 0xFFFF
        elif reg == 8:
            self._write_system_page_size(byte_mask_update(self.system_page_size, mask, data))
            self._apertures = None
        elif 9 <= reg < 9 + pci.PCI_SRIOV_NUM_BARS:
            bar = self.vf_bars[reg - 9]
            if bar.native_size:
                bar.raw = byte_mask_update(bar.raw, mask, data) & 0xFFFFFFFF
                self._apertures = None
        # everything else in this capability is RO / RsvdP

    def _write_system_page_size(self, value: int) -> None:
        if self.vf_enable:
            self._reject("System Page Size written while VF Enable is set")
        elif value & (value - 1) or not value & self.supported_page_sizes:
            self._reject(f"System Page Size 0x{value:x} is not one supported page size")
        else:
            self.system_page_size = value

    async def _write_control(self, data: int, mask: int) -> None:
        if not mask & 0x1:
            return
        self.vf_mse = bool(data & pci.PCI_SRIOV_CTRL_MSE)
        ari = bool(data & pci.PCI_SRIOV_CTRL_ARI)
        if ari != self.ari_capable_hierarchy:
            if self.vf_enable:
                self._reject("ARI Capable Hierarchy changed while VF Enable is set")
            else:
                self.ari_capable_hierarchy = ari
        enable = bool(data & pci.PCI_SRIOV_CTRL_VFE)
        if enable and not self.vf_enable:
            if self.num_vfs > self.total_vfs:
                self._reject(f"VF Enable with NumVFs {self.num_vfs} > TotalVFs {self.total_vfs}")
                return
            self.vf_enable = True
            await self.owner.sriov_vf_enable(self.num_vfs)
        elif not enable and self.vf_enable:
            self.vf_enable = False
            await self.owner.sriov_vf_disable()

"""SR-IOV in the host PCI core, in the Linux order (drivers/pci/iov.c: sriov_init, sriov_enable).

:func:`pci_iov_init` (``sriov_init``) runs when the host enumerates a PF, before any driver
binds: it reads the capability, enables ARI when the hierarchy supports it, reserves the
VF bus range and VF BAR space. Then whoever drives the PF (the PF driver's
``sriov_configure(num_vfs)``, or a test with no driver bound) calls
:func:`pci_enable_sriov` / :func:`pci_disable_sriov`, which enable or disable the VFs and
add them to or remove them from the host's view (``pci_iov_add_virtfn``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from cocotb.triggers import Timer
from cocotbext.pcie.core.caps import PciCapId
from cocotbext.pcie.core.pci import PciBus, PciDevice
from cocotbext.pcie.core.utils import PcieId

from datasheet import pci
from pcicore.aer import pci_aer_init
from pcicore.config import find_ext_capability
from pcicore.errors import PciError
from pcicore.topology import pci_bus_reserve, pci_enable_ari, pci_mmio_reserve

#: page size of the simulated host (x86-64 base page)
HOST_PAGE_SIZE = 4096


@dataclass
class SriovState:
    """What the host knows of one PF's SR-IOV capability (Linux ``struct pci_sriov``)."""

    pos: int
    total_vfs: int
    initial_vfs: int
    offset: int
    stride: int
    vf_device: int
    pgsz: int
    ari: bool
    bar_size: dict[int, int] = field(default_factory=dict)  # per-VF size by VF BAR index
    bar_base: dict[int, int] = field(default_factory=dict)
    num_vfs: int = 0
    virtfns: list[PciDevice] = field(default_factory=list)
    vf_common: VfConfigCommon | None = None  # read from the first VF of each enable


@dataclass(frozen=True)
class VfConfigCommon:
    """The header registers all VFs of a PF share (Linux ``pci_read_vf_config_common``, which
    keeps them in ``physfn->sriov``): read once, from the first VF."""

    class_revision: int  # the dword at Revision ID: revision ID, class code above it
    header_type: int
    subsystem: int  # the dword at Subsystem Vendor ID: vendor, subsystem ID above it

    @classmethod
    async def read(cls, vf: PciDevice) -> VfConfigCommon:
        return cls(
            await vf.config_read_dword(pci.PCI_REVISION_ID),
            await vf.config_read_byte(pci.PCI_HEADER_TYPE),
            await vf.config_read_dword(pci.PCI_SUBSYSTEM_VENDOR_ID),
        )


class Sriov:
    """The host's SR-IOV handling of one PF (Linux ``struct pci_sriov`` and iov.c)."""

    def __init__(self, pf: PciDevice, log: logging.Logger):
        self.pf = pf
        self.log = log
        self.state: SriovState | None = None

    async def _rd(self, off: int, width: int = 4) -> int:
        pos = self.state.pos + off
        if width == 2:
            return await self.pf.config_read_word(pos)
        return await self.pf.config_read_dword(pos)

    async def _wr(self, off: int, value: int, width: int = 4) -> None:
        pos = self.state.pos + off
        if width == 2:
            await self.pf.config_write_word(pos, value)
        else:
            await self.pf.config_write_dword(pos, value)

    async def init(self) -> SriovState:
        """sriov_init: probe the capability and reserve what VFs will need."""
        pos = await find_ext_capability(self.pf, pci.PCI_EXT_CAP_ID_SRIOV)
        if pos is None:
            raise PciError(f"{self.pf.pcie_id}: no SR-IOV capability")
        self.state = st = SriovState(
            pos=pos, total_vfs=0, initial_vfs=0, offset=0, stride=0, vf_device=0, pgsz=0, ari=False
        )
        ctrl = await self._rd(pci.PCI_SRIOV_CTRL, 2)
        if ctrl & pci.PCI_SRIOV_CTRL_VFE:  # left enabled (e.g. by firmware): start clean
            await self._wr(pci.PCI_SRIOV_CTRL, 0, 2)
            await Timer(int(pci.PCI_SRIOV_VF_ENABLE_DELAY_S * 1e9), "ns")
        st.ari = await pci_enable_ari(self.pf)
        await self._wr(pci.PCI_SRIOV_CTRL, pci.PCI_SRIOV_CTRL_ARI if st.ari else 0, 2)
        st.total_vfs = await self._rd(pci.PCI_SRIOV_TOTAL_VF, 2)
        st.initial_vfs = await self._rd(pci.PCI_SRIOV_INITIAL_VF, 2)
        st.offset = await self._rd(pci.PCI_SRIOV_VF_OFFSET, 2)
        st.stride = await self._rd(pci.PCI_SRIOV_VF_STRIDE, 2)
        st.vf_device = await self._rd(pci.PCI_SRIOV_VF_DID, 2)

        # System Page Size: the host's page size if supported, else the smallest supported
        supported = await self._rd(pci.PCI_SRIOV_SUP_PGSIZE)
        host_pg = HOST_PAGE_SIZE >> pci.PCI_SRIOV_PAGE_SHIFT
        st.pgsz = host_pg if supported & host_pg else supported & -supported
        await self._wr(pci.PCI_SRIOV_SYS_PGSIZE, st.pgsz)

        await self._size_vf_bars()
        await pci_bus_reserve(self.pf, self.vf_rid(st.total_vfs - 1) >> 8)
        for idx, size in st.bar_size.items():
            total = size * st.total_vfs
            st.bar_base[idx] = base = await pci_mmio_reserve(self.pf, total, size)
            await self._wr(pci.PCI_SRIOV_BAR + idx * 4, base & 0xFFFFFFFF)
            await self._wr(pci.PCI_SRIOV_BAR + (idx + 1) * 4, base >> 32)
        self.log.info(
            "SR-IOV: TotalVFs %d, offset %d, stride %d, VF DID %04x, ARI %s, VF BARs %s",
            st.total_vfs,
            st.offset,
            st.stride,
            st.vf_device,
            st.ari,
            {i: f"{b:#x}+n*{st.bar_size[i]:#x}" for i, b in st.bar_base.items()},
        )
        return st

    async def _size_vf_bars(self) -> None:
        """Size VF BAR0..5 by writing all ones (SR-IOV 1.1 §3.3.14); 64-bit BARs are pairs."""
        st = self.state
        idx = 0
        while idx < pci.PCI_SRIOV_NUM_BARS:
            off = pci.PCI_SRIOV_BAR + idx * 4
            orig = await self._rd(off)
            await self._wr(off, 0xFFFFFFFF)
            val = await self._rd(off)
            await self._wr(off, orig)
            if val == 0:
                idx += 1
                continue
            if val & pci.PCI_BASE_ADDRESS_MEM_TYPE_64:
                orig_hi = await self._rd(off + 4)
                await self._wr(off + 4, 0xFFFFFFFF)
                val |= await self._rd(off + 4) << 32
                await self._wr(off + 4, orig_hi)
                mask = val & pci.PCI_BASE_ADDRESS_MEM_MASK & 0xFFFFFFFFFFFFFFFF
                st.bar_size[idx] = (~mask & 0xFFFFFFFFFFFFFFFF) + 1
                idx += 2
            else:
                st.bar_size[idx] = (~(val & pci.PCI_BASE_ADDRESS_MEM_MASK) & 0xFFFFFFFF) + 1
                idx += 1

    def vf_rid(self, index: int) -> int:
        st = self.state
        return pci.vf_rid(int(self.pf.pcie_id), st.offset, st.stride, index)

    async def configure(self, num_vfs: int) -> int:
        """sriov_configure: enable ``num_vfs`` VFs (0 disables); returns the number enabled."""
        st = self.state
        if num_vfs == st.num_vfs:
            return num_vfs
        if st.num_vfs:
            await self.disable()
        if num_vfs == 0:
            return 0
        if num_vfs > st.total_vfs:
            raise PciError(f"{self.pf.pcie_id}: {num_vfs} VFs requested, TotalVFs is {st.total_vfs}")
        await self._wr(pci.PCI_SRIOV_NUM_VF, num_vfs, 2)
        # offset/stride may change with NumVFs (SR-IOV 1.1 §3.3.10): re-read
        st.offset = await self._rd(pci.PCI_SRIOV_VF_OFFSET, 2)
        st.stride = await self._rd(pci.PCI_SRIOV_VF_STRIDE, 2)
        ctrl = await self._rd(pci.PCI_SRIOV_CTRL, 2)
        ctrl |= pci.PCI_SRIOV_CTRL_VFE | pci.PCI_SRIOV_CTRL_MSE
        await self._wr(pci.PCI_SRIOV_CTRL, ctrl, 2)
        await Timer(int(pci.PCI_SRIOV_VF_ENABLE_DELAY_S * 1e9), "ns")
        if not await self._rd(pci.PCI_SRIOV_CTRL, 2) & pci.PCI_SRIOV_CTRL_VFE:
            raise PciError(f"{self.pf.pcie_id}: device refused VF Enable")
        st.vf_common = None  # the first VF added reads them
        for n in range(num_vfs):
            bars = {idx: (st.bar_base[idx] + n * size, size) for idx, size in st.bar_size.items()}
            vf = await pci_iov_add_virtfn(self.pf, self.vf_rid(n), self.pf.vendor_id, st.vf_device, bars)
            vf.virtfn_index = n
            st.virtfns.append(vf)
        st.num_vfs = num_vfs
        self.log.info("SR-IOV: enabled %d VFs", num_vfs)
        return num_vfs

    async def disable(self) -> None:
        """sriov_disable: remove the VFs from the host's view, then clear VF Enable and VF MSE."""
        st = self.state
        for vf in reversed(st.virtfns):
            pci_iov_remove_virtfn(vf)
        st.virtfns.clear()
        ctrl = await self._rd(pci.PCI_SRIOV_CTRL, 2)
        await self._wr(pci.PCI_SRIOV_CTRL, ctrl & ~(pci.PCI_SRIOV_CTRL_VFE | pci.PCI_SRIOV_CTRL_MSE), 2)
        await Timer(int(pci.PCI_SRIOV_VF_ENABLE_DELAY_S * 1e9), "ns")
        st.num_vfs = 0
        self.log.info("SR-IOV: VFs disabled")


class PciVirtfn(PciDevice):
    """The host's view of a VF (a Linux ``pci_dev`` with ``is_virtfn``), set up as Linux's
    ``pci_setup_device`` sets up a VF.

    * The header registers all VFs share (revision and class, header type, subsystem IDs) are
      read from the first VF only (:class:`VfConfigCommon`, ``pci_read_vf_config_common``).
    * A VF's BARs are read-only zero (PCIe 6.0 §9.3.4.1.11): its apertures come from the PF's
      SR-IOV capability, so Linux's ``pci_read_bases`` returns at once for a VF, and so does
      :meth:`read_bars` here (no sizing writes to registers that ignore them).
    * Max_Payload_Size and Extended Tag Field Enable are RsvdP in a VF's Device Control (PCIe
      6.0 §9.3.5.4, the PF's settings apply): ``pci_configure_mps`` and
      ``pci_configure_extended_tags`` return at once for a VF, and so do
      :meth:`configure_mps` and :meth:`configure_extended_tags`."""

    is_virtfn = True

    async def setup(self) -> None:
        """``PciDevice.setup`` with the shared header registers taken from the PF's SR-IOV
        state (the first VF of an enable reads them); the rest as for any function."""
        st = pci_iov(self.physfn).state
        if st.vf_common is None:
            st.vf_common = await VfConfigCommon.read(self)
        common = st.vf_common
        self.header_type = common.header_type & 0x7F
        self.multifunction = False  # Linux: virtfn->multifunction = 0
        self.revision_id = common.class_revision & 0xFF
        self.class_code = common.class_revision >> 8
        self.subsystem_vendor_id = common.subsystem & 0xFFFF
        self.subsystem_id = common.subsystem >> 16
        await self.read_bars(6, 0x030)
        await self.walk_capabilities()
        if self.is_pcie():
            self.pcie_capabilities_reg = await self.capability_read_word(PciCapId.EXP, pci.PCI_EXP_FLAGS)
            self.pcie_devcap_reg = await self.capability_read_dword(PciCapId.EXP, pci.PCI_EXP_DEVCAP)
            self.pcie_mpss = self.pcie_devcap_reg & pci.PCI_EXP_DEVCAP_PAYLOAD
        await self.configure_device()
        await self.init_capabilities()

    async def read_bars(self, bar_cnt: int, rom: int) -> None:
        self.bar_raw[:bar_cnt] = [0] * bar_cnt
        self.bar_size[:bar_cnt] = [0] * bar_cnt
        self.expansion_rom_raw = self.expansion_rom_size = 0

    async def configure_mps(self) -> None:
        """Nothing: Max_Payload_Size is RsvdP in a VF."""

    async def configure_extended_tags(self) -> None:
        """Nothing: Extended Tag Field Enable is RsvdP in a VF."""


def pci_bus_for(pf: PciDevice, bus_num: int) -> PciBus:
    """The host bus object for ``bus_num``: the PF's own, or a virtual bus for VFs past it."""
    if bus_num == pf.bus.bus_num:
        return pf.bus
    for child in pf.bus.children:
        if child.bus_num == bus_num and child.bridge is None:
            return child
    vbus = PciBus(pf.bus, None, bus_num)
    pf.bus.children.append(vbus)
    return vbus


async def pci_iov_add_virtfn(
    pf: PciDevice, rid: int, vendor_id: int, device_id: int, bars: dict[int, tuple[int, int]]
) -> PciDevice:
    """Add one VF to the host's view (Linux ``pci_iov_add_virtfn``).

    ``bars`` maps BAR index to (address, size) computed from the PF's VF BARs;
    a VF's own BAR registers read 0, so they are not probed (:class:`PciVirtfn`). Its AER is
    prepared as for any new function (``pci_aer_init``).
    """
    bus = pci_bus_for(pf, rid >> 8)
    vf = PciVirtfn(bus)
    vf.pcie_id = PcieId.from_int(rid)
    vf.vendor_id, vf.device_id = vendor_id, device_id
    vf.physfn = pf
    await vf.setup()
    for idx, (addr, size) in bars.items():
        vf.bar[idx] = vf.bar_addr[idx] = addr
        vf.bar_size[idx] = size
        vf.bar_window[idx] = pf.rc.mem_address_space.create_window(addr, size)
    await pci_aer_init(vf)
    bus.devices.append(vf)
    return vf


def pci_iov_remove_virtfn(vf: PciDevice) -> None:
    """Remove a VF from the host's view."""
    vf.bus.devices.remove(vf)
    if vf.bus is not vf.physfn.bus and not vf.bus.devices:
        vf.bus.parent.children.remove(vf.bus)


async def pci_iov_init(pf: PciDevice, log: logging.Logger | None = None) -> Sriov:
    """``sriov_init`` at enumeration: probe the PF's SR-IOV capability, enable ARI, reserve
    VF bus numbers and VF BAR space. Done once per PF; later calls return the same state, kept
    on the PF's host device as Linux keeps it in ``dev->sriov``."""
    sriov = getattr(pf, "sriov", None)
    if sriov is None or sriov.state is None:
        sriov = pf.sriov = Sriov(pf, log or logging.getLogger(f"cocotb.pci[{pf.pcie_id}]"))
        await sriov.init()
    return sriov


def pci_iov(pf: PciDevice) -> Sriov:
    """The SR-IOV state :func:`pci_iov_init` made for ``pf``."""
    sriov = getattr(pf, "sriov", None)
    if sriov is None:
        raise PciError(f"{pf.pcie_id}: SR-IOV not initialised (pci_iov_init at enumeration)")
    return sriov


async def pci_enable_sriov(pf: PciDevice, num_vfs: int) -> list[PciDevice]:
    """Enable ``num_vfs`` VFs (disabling any enabled first) and return their host devices."""
    sriov = pci_iov(pf)
    await sriov.configure(num_vfs)
    return list(sriov.state.virtfns)


async def pci_disable_sriov(pf: PciDevice) -> None:
    """Remove the VFs from the host's view, then clear VF Enable."""
    await pci_iov(pf).configure(0)


def pci_num_vf(pf: PciDevice) -> int:
    sriov = getattr(pf, "sriov", None)
    return sriov.state.num_vfs if sriov is not None and sriov.state else 0


def pci_sriov_get_totalvfs(pf: PciDevice) -> int:
    return pci_iov(pf).state.total_vfs

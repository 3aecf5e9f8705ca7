"""Build the simulated system: root complex, NIC, PF driver, VF drivers.

This is the stable entry point driver developers and outside tests use::

    system = await build_system(dut, total_vfs=64)
    vfs = await system.enable_vfs(8)          # sriov_configure + VF driver probe
    await vfs[0].read_reg(regs.NIC_ID)

With ``iommu=True`` the root complex remaps device DMA (VT-d, :mod:`iommu`): the
PF is in pass-through, every VF is blocked until the host assigns it a domain::

    system = await build_system(dut, total_vfs=16, iommu=True)
    vfs = await system.enable_vfs(2)
    dev = system.attach_vf_domain(vfs[0])     # also vfs[0].dma
    buf, iova = dev.dma_alloc_coherent(4096)  # program iova into the device

``fabric`` picks the PCIe fabric (:mod:`fabric`): ``"tlp"`` (cocotbext-pcie's links, every
request a TLP) or ``"fast"`` (transaction level: the same requests and outcomes as direct
calls, in zero simulated time); by default ``$FABRIC``, else ``"tlp"``::

    system = await build_system(dut, total_vfs=8, fabric="fast")
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cocotb.clock import Clock
from cocotb.triggers import Timer
from cocotbext.pcie.core import RootComplex
from cocotbext.pcie.core.pci import PciDevice

import fabric as fabrics
import pcicore
from datasheet import device
from fabric.rc import FabricRootComplex
from iommu import DmaDevice, IommuDriver
from model import Nic
from pf_driver import PfDriver
from vf_driver import VfDriver

if TYPE_CHECKING:
    from cocotb.handle import HierarchyObject

#: host pages for the IOMMU's tables and the DMA API's buffers (``iommu=True``): a
#: 4-level domain whose mappings fit in 2 MiB of IOVA has 4 table pages (16 KiB), so
#: 256 VF domains take 4 MiB and leave ~60 MiB for their rings and buffers
IOMMU_POOL_SIZE = 64 << 20

#: harness reference clock (1 kHz): the model is event driven and nothing waits on it; each
#: edge costs the simulator a step, so a slow clock keeps idle time (the 100 ms SR-IOV and
#: FLR waits) cheap in wall time
HARNESS_CLOCK_NS = 1_000_000
#: how long the harness is held in reset before the system is built
HARNESS_RESET_NS = 40_000

#: ``NIC_SLOW_TESTS=1`` (``make regress``) runs the tests too slow for ``make test`` on the
#: TLP fabric (hundreds of VFs probed through TLPs, a flood that must last in simulated time)
SLOW_TESTS = os.environ.get("NIC_SLOW_TESTS") == "1"


def run_fabric() -> str:
    """The fabric this run builds systems on unless a test asks for one (``$FABRIC``, else tlp)."""
    return fabrics.resolve()


def slow_on_tlp() -> bool:
    """Skip this test: it runs on the TLP fabric, where it is slow, and this is not the regression."""
    return run_fabric() == fabrics.TLP and not SLOW_TESTS


class _ScanMissFilter(logging.Filter):
    """Enumeration probes every empty device slot; the RC's warning for each is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Failed to route config type 0 TLP")


_SCAN_MISS_FILTER = _ScanMissFilter()


def quiet_logging(verbose: bool | None = None) -> bool:
    """cocotbext-pcie logs every TLP at INFO, a large share of wall time: quiet unless asked."""
    if verbose is None:
        verbose = os.environ.get("NIC_VERBOSE", "0") == "1"
    level = logging.DEBUG if verbose else logging.WARNING
    logging.getLogger("cocotb.pcie").setLevel(level)
    logging.getLogger("cocotb.nic").setLevel(logging.DEBUG if verbose else logging.INFO)
    return verbose


@dataclass
class System:
    dut: object
    rc: RootComplex
    root_port: object
    nic: Nic
    pf_dev: PciDevice
    pf: PfDriver
    vfs: list[VfDriver] = field(default_factory=list)
    #: the host's IOMMU driver (None when built without ``iommu``)
    iommu_driver: IommuDriver | None = None
    #: the PF driver's DMA API: the pass-through domain, so IOVA = host physical address
    pf_dma: DmaDevice | None = None
    #: the PCIe fabric the system runs on (``fabric.TLP`` or ``fabric.FAST``)
    fabric: str = fabrics.TLP
    _vf_dma: dict[int, DmaDevice] = field(default_factory=dict)  # VF RID -> its DMA ops

    async def enable_vfs(self, num_vfs: int, probe: bool = True) -> list[VfDriver]:
        """``sriov_configure(num_vfs)`` then bind and probe a VF driver on each VF."""
        await self.pf.sriov_configure(num_vfs)
        self.vfs = [VfDriver(pdev) for pdev in self.pf.virtfns]
        if probe:
            for vf in self.vfs:
                await vf.probe()
        return self.vfs

    async def disable_vfs(self) -> None:
        """``sriov_configure(0)``: each VF driver is unbound first (as ``pci_iov_remove_virtfn``
        does), the VFs leave the IOMMU, then VF Enable is cleared."""
        for vf in self.vfs:
            await vf.remove()
        for rid in list(self._vf_dma):
            self._detach(rid)
        self.vfs = []
        await self.pf.sriov_configure(0)

    async def rebind_vf(self, index: int, ring_size: int | None = None) -> VfDriver:
        """Start VF ``index`` over, as a hypervisor does between two guests: unbind its driver,
        reset the function (``pci_reset_function``), give it a fresh IOMMU domain (with the
        IOMMU on) and bind and probe a new driver, opened with ``ring_size`` if given."""
        old = self.vfs[index]
        await old.remove()
        rid = int(old.pdev.pcie_id)
        if rid in self._vf_dma:
            self._detach(rid)
        await pcicore.pci_reset_function(old.pdev)
        new = self.vfs[index] = VfDriver(old.pdev)
        if self.iommu_driver is not None:
            self.attach_vf_domain(new)
        await new.probe()
        if ring_size is not None:
            await new.open(ring_size)
        return new

    # -- IOMMU: the host assigns each VF its own DMA address space -------------------
    def _vf_driver(self, vf: VfDriver | int) -> VfDriver:
        return self.vfs[vf] if isinstance(vf, int) else vf

    def attach_vf_domain(self, vf: VfDriver | int) -> DmaDevice:
        """Give a VF (driver or index into ``vfs``) a fresh IOMMU domain and attach
        its requester ID; returns the VF's DMA API over it, which its driver finds as
        ``vf.dma`` (``pcicore.dma_device``).  The driver sees only IOVAs of that domain."""
        if self.iommu_driver is None:
            raise RuntimeError("build_system(..., iommu=True) is needed for VF DMA domains")
        vf = self._vf_driver(vf)
        rid = int(vf.pdev.pcie_id)
        if rid in self._vf_dma:
            self._detach(rid)
        dma = self._vf_dma[rid] = DmaDevice.for_rid(self.iommu_driver, rid)
        pcicore.set_dma_device(vf.pdev, dma)
        return dma

    def detach_vf(self, vf: VfDriver | int) -> DmaDevice:
        """Clear a VF's context entry: its DMA is blocked from the next request on.
        ``vf.dma`` becomes None; the DmaDevice (buffers, domain) is returned."""
        vf = self._vf_driver(vf)
        dev = self._detach(int(vf.pdev.pcie_id))
        pcicore.set_dma_device(vf.pdev, None)
        return dev

    def _detach(self, rid: int) -> DmaDevice:
        dev = self._vf_dma.pop(rid)
        self.iommu_driver.detach_device(rid)
        return dev


#: observation inputs of tb/hdl/nic_harness.sv, all driven from Python on events only
#: (tb/uvm/probe.py); they start at 0
HARNESS_PROBES = (
    "link_up",
    "last_rid",
    "cfg_access",
    "num_vfs",
    "msix_pulse",
    "msix_rid",
    "msix_vector",
    "msix_count",
    "doorbell_pulse",
    "doorbell_rid",
    "doorbell_reg",
    "doorbell_value",
    "doorbell_count",
    "dma_fault_pulse",
    "dma_fault_rid",
    "dma_fault_count",
    "reset_pulse",
    "reset_kind",
    "reset_rid",
    "frames_switched",
    "frames_to_uplink",
)


async def start_harness(dut: HierarchyObject) -> None:
    """Clock and reset of the HDL harness; every observation input starts at 0
    (link_up follows the PCIe link, the rest is driven by the pyuvm monitors)."""
    Clock(dut.clk, HARNESS_CLOCK_NS, unit="ns").start()
    dut.rst.value = 1
    for name in HARNESS_PROBES:
        getattr(dut, name).value = 0
    await Timer(HARNESS_RESET_NS, "ns")
    dut.rst.value = 0


async def build_system(
    dut: HierarchyObject,
    total_vfs: int = device.DEFAULT_TOTAL_VFS,
    ari: bool = True,
    rc: RootComplex | None = None,
    verbose: bool | None = None,
    iommu: bool = False,
    nic: Nic | None = None,
    fabric: str | None = None,
) -> System:
    """Root complex + NIC on a Gen3 x8 root port, enumerated, PF driver probed.

    ``ari`` sets whether the root port supports ARI Forwarding (VFs then follow
    the PF densely on its bus; without it they start on the next bus). ``rc``
    lets a caller supply a root complex subclass, ``nic`` a NIC it built itself (``total_vfs``
    is then the NIC's; build it without yielding to the simulator before this call, as its
    link port starts at once).  ``iommu`` builds an
    :class:`~iommu.IommuRootComplex` (unless ``rc`` is one already) and loads the
    IOMMU driver after enumeration, before the PF driver probes, as a kernel does:
    translation and interrupt remapping on (compatibility-format interrupts blocked), ACS
    on in the root port (every upstream request is translated before it is routed),
    the PF attached in pass-through (the host trusts its own PF driver), every VF
    blocked until :meth:`System.attach_vf_domain`.  ``fabric`` (None: ``$FABRIC``, else
    ``"tlp"``) is the fabric of the root complex built here; a supplied ``rc`` brings its own.
    """
    verbose = quiet_logging(verbose)
    if rc is None:
        if iommu:
            from iommu import IommuRootComplex  # noqa: PLC0415 (pulls in cocotb)

            rc = IommuRootComplex(fabric=fabric)
        else:
            rc = FabricRootComplex(fabric=fabric)
    if iommu and not hasattr(rc, "iommu"):
        raise TypeError(f"iommu=True needs an IommuRootComplex, not {type(rc).__name__}")
    built_on = rc.fabric if isinstance(rc, FabricRootComplex) else fabrics.TLP
    if fabric is not None and fabrics.resolve(fabric) != built_on:
        raise ValueError(f"fabric={fabric!r}, but the root complex supplied runs on {built_on!r}")
    if not verbose:
        rc.log.addFilter(_SCAN_MISS_FILTER)
    root_port = rc.make_port()
    root_port.pcie_cap.ari_forwarding_supported = ari
    root_port.downstream_port.max_link_speed = device.LINK_SPEED_GEN
    root_port.downstream_port.max_link_width = device.LINK_WIDTH
    nic = nic or Nic(total_vfs=total_vfs)
    root_port.connect(nic.device)  # before anything yields: the ports start at once
    await start_harness(dut)
    await rc.enumerate()
    dut.link_up.value = 1
    pf_dev = rc.find_device(nic.pf.pcie_id)
    iommu_driver = pf_dma = None
    if iommu:
        iommu_driver = IommuDriver.for_root_complex(rc, pool_size=IOMMU_POOL_SIZE, irq_remapping=True)
        await pcicore.pci_enable_acs(pf_dev)
        pf_dma = DmaDevice(iommu_driver, iommu_driver.attach_passthrough(int(nic.pf.pcie_id)))
    if pf_dma is not None:
        pcicore.set_dma_device(pf_dev, pf_dma)
    pf = PfDriver(pf_dev)
    await pf.probe()
    return System(
        dut=dut,
        rc=rc,
        root_port=root_port,
        nic=nic,
        pf_dev=pf_dev,
        pf=pf,
        iommu_driver=iommu_driver,
        pf_dma=pf_dma,
        fabric=built_on,
    )

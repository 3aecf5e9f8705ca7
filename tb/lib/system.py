"""Build the simulated system: root complex, NIC, PF driver, VF drivers.

This is the stable entry point driver developers and outside tests use::

    system = await build_system(dut, total_vfs=64)
    vfs = await system.enable_vfs(8)          # sriov_configure + VF driver probe
    await vfs[0].read_reg(regs.NIC_ID)

The root port has AER and the host's AER service (``system.aer``, :mod:`pcicore.aer`) is
bound to it: errors the functions report are logged and recovered through their drivers'
error handlers.

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

import atexit
import gc
import logging
import os
from collections.abc import Callable
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
from iommu import DmaDevice, IommuDriver, IommuRootComplex, PageAllocator
from iommu.vtd_format import PAGE_SIZE
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


#: allocations between two young-generation collections in a simulation (CPython's default: 700)
GC_GEN0_THRESHOLD = 10_000


def pace_garbage_collector() -> None:
    """A simulation allocates triggers, tasks and requests by the thousand and keeps few, beside
    a large long-lived platform (every function's config space, completion queues, register
    files): at CPython's default pace the collector runs every 700 allocations and rescans
    the platform often (a tenth or more of the wall time of enabling 256 VFs). Collect the young
    generation less often; what is collected, and when a test could tell, does not change
    (nothing in the model or the drivers depends on when a cycle is freed).

    The first call of a process also moves what is alive then (the modules, classes and
    functions the simulator imported, some 70 000 objects) out of the collector's sight
    (``gc.freeze``): they live as long as the process, and each full collection of a
    regression seed walked them again (0.1 s of the transaction-level seed). Later calls
    (the next tests' platforms) freeze nothing: a finished test's platform is still freed."""
    gen0, gen1, gen2 = gc.get_threshold()
    if gen0 < GC_GEN0_THRESHOLD:
        gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)
    global _paced
    if not _paced:
        gc.freeze()
        atexit.register(freeze_at_exit)
        _paced = True


_paced = False


def freeze_at_exit() -> None:
    """When the simulation ends, CPython's finalization runs full collections over every
    object still alive, several times (after a regression seed's tests, when every test's
    platform was still alive, about 0.7 s per simulator process). What is alive at exit
    needs no collecting, so move it out of the collector's sight (``gc.freeze``). Nothing is
    lost: standard streams are flushed by the interpreter, the results and the coverage are
    written before the end, a pcap writer flushes every record, and objects freed by their
    reference count are still finalized."""
    gc.freeze()


@dataclass
class System:
    dut: object
    rc: RootComplex
    root_port: object
    nic: Nic
    pf_dev: PciDevice
    pf: PfDriver | None  # None with build_system(..., bind_drivers=False)
    vfs: list[VfDriver] = field(default_factory=list)
    #: the host's IOMMU driver (None when built without ``iommu``)
    iommu_driver: IommuDriver | None = None
    #: the PF driver's DMA API: the pass-through domain (or dma-direct), IOVA = host physical address
    pf_dma: DmaDevice | None = None
    #: host pages for dma-direct (no IOMMU): every function's buffers come from here
    direct_pages: PageAllocator | None = None
    #: the host's AER service on the root port (None with a root complex whose ports lack AER)
    aer: pcicore.AerService | None = None
    #: the PCIe fabric the system runs on (``fabric.TLP`` or ``fabric.FAST``)
    fabric: str = fabrics.TLP
    _vf_dma: dict[int, DmaDevice] = field(default_factory=dict)  # VF RID -> its DMA ops

    async def enable_vfs(
        self, num_vfs: int, probe: bool = True, driver: Callable[[PciDevice], VfDriver] = VfDriver
    ) -> list[VfDriver]:
        """``sriov_configure(num_vfs)`` then bind a VF driver to each VF and probe it (with no
        IOMMU each VF gets dma-direct; with one, it is blocked until :meth:`attach_vf_domain`).
        ``driver``: your own VF driver class instead of the project's, any class made from the
        VF's ``PciDevice`` with async ``probe()`` and ``remove()``."""
        if self.pf is None:
            raise RuntimeError("no PF driver bound (bind_drivers=False): use pcicore.pci_enable_sriov")
        await self.pf.sriov_configure(num_vfs)
        self.vfs = [driver(pdev) for pdev in self.pf.virtfns]
        if self.direct_pages is not None:
            for vf in self.vfs:
                pcicore.set_dma_device(vf.pdev, DmaDevice.direct(self.direct_pages))
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
        if self.aer is not None:  # the AER service may be recovering the function: let it finish
            await self.aer.wait_idle(1_000_000_000)
        await old.remove()
        rid = int(old.pdev.pcie_id)
        if rid in self._vf_dma:
            self._detach(rid)
        await pcicore.pci_reset_function(old.pdev)
        if self.aer is not None:
            await self.aer.unmask(old.pdev)  # a new guest: the rate limit's masks go
        new = self.vfs[index] = VfDriver(old.pdev)
        if self.iommu_driver is not None:
            self.attach_vf_domain(new)
        elif self.direct_pages is not None:
            pcicore.set_dma_device(new.pdev, DmaDevice.direct(self.direct_pages))
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
    bind_drivers: bool = True,
    fabric: str | None = None,
    harness: bool = True,
) -> System:
    """Root complex + NIC on a Gen3 x8 root port, enumerated, PF driver probed.

    ``bind_drivers=False`` stops after the host's part, for someone who brings their own
    PF driver: the NIC is enumerated and resourced (BARs assigned, and, as Linux's
    ``pci_iov_init`` does at enumeration, ARI enabled, VF bus numbers and VF BAR space
    reserved) and has its DMA API, but no driver is bound: ``system.pf`` is None, and VF
    Enable is the caller's job (``pcicore.pci_enable_sriov(system.pf_dev, n)``).

    ``ari`` sets whether the root port supports ARI Forwarding (VFs then follow
    the PF densely on its bus; without it they start on the next bus). The root
    complex's ports have AER and the host's AER service is bound to the root port before
    the PF driver probes. ``rc``
    lets a caller supply a root complex subclass, ``nic`` a NIC it built itself (``total_vfs``
    is then the NIC's; build it without yielding to the simulator before this call, as its
    link port starts at once).  ``iommu`` builds an
    :class:`~iommu.IommuRootComplex` (unless ``rc`` is one already) and loads the
    IOMMU driver after enumeration, before the PF driver probes, as a kernel does:
    translation and interrupt remapping on (compatibility-format interrupts blocked), ACS
    on in the root port (every upstream request is translated before it is routed),
    the PF attached in pass-through (the host trusts its own PF driver), every VF
    blocked until :meth:`System.attach_vf_domain`. Without ``iommu`` there is no
    remapping: the PF and each VF get dma-direct (bus address = host physical address);
    the root complex is still an :class:`~iommu.IommuRootComplex` (translation off), whose
    MSI window counts a write naming no vector instead of asserting and whose root ports
    have AER. ``fabric`` (None: ``$FABRIC``, else ``"tlp"``) is the fabric of the root
    complex built here; a supplied ``rc`` brings its own.

    ``harness=False`` builds a second host in the same simulation (its own root complex, host
    memory, IOMMU and NIC; the harness clock and reset were started by the first): the
    destination of a live migration (:mod:`tb.lib.migration`).
    """
    verbose = quiet_logging(verbose)
    pace_garbage_collector()
    rc = rc or IommuRootComplex(fabric=fabric)
    if iommu and not isinstance(rc, IommuRootComplex):
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
    if harness:
        await start_harness(dut)
    await rc.enumerate()
    dut.link_up.value = 1
    pf_dev = rc.find_device(nic.pf.pcie_id)
    await pcicore.pci_iov_init(pf_dev)  # the host's part of SR-IOV, before any driver
    iommu_driver = direct_pages = None
    if iommu:
        iommu_driver = IommuDriver.for_root_complex(rc, pool_size=IOMMU_POOL_SIZE, irq_remapping=True)
        await pcicore.pci_enable_acs(pf_dev)
        pf_dma = DmaDevice(iommu_driver, iommu_driver.attach_passthrough(int(nic.pf.pcie_id)))
    else:
        base, _region = rc.alloc_region(IOMMU_POOL_SIZE)
        # the first host region starts at physical 0, which no DMA buffer may have (a zero
        # ring base is invalid; Linux never hands out page 0 either): skip a page
        direct_pages = PageAllocator(rc.host_memory, base + PAGE_SIZE, IOMMU_POOL_SIZE - PAGE_SIZE)
        pf_dma = DmaDevice.direct(direct_pages)
    pcicore.set_dma_device(pf_dev, pf_dma)
    aer = None
    if hasattr(root_port, "aer_cap"):  # the AER port service binds to the root port (aer_probe)
        aer = pcicore.AerService(rc.find_device(root_port.pcie_id))
        await aer.probe()
    pf = None
    if bind_drivers:
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
        direct_pages=direct_pages,
        aer=aer,
        fabric=built_on,
    )

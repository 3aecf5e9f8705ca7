"""Build the simulated system: root complex, NIC, PF driver, VF drivers.

This is the stable entry point driver developers and outside tests use::

    system = await build_system(dut, total_vfs=64)
    vfs = await system.enable_vfs(8)          # sriov_configure + VF driver probe
    await vfs[0].read_reg(regs.NIC_ID)

Everything the drivers do crosses the simulated PCIe link as TLPs.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from cocotb.clock import Clock
from cocotb.triggers import Timer
from cocotbext.pcie.core import RootComplex
from cocotbext.pcie.core.pci import PciDevice

from datasheet import device
from model import Nic
from pf_driver import PfDriver
from vf_driver import VfDriver

#: harness reference clock (100 kHz): the model is event driven and never waits on it,
#: so a slow clock keeps the 100 ms SR-IOV/FLR waits cheap in wall time
HARNESS_CLOCK_NS = 10_000


def quiet_logging(verbose: bool | None = None) -> None:
    """cocotbext-pcie logs every TLP at INFO, a large share of wall time: quiet unless asked."""
    if verbose is None:
        verbose = os.environ.get("NIC_VERBOSE", "0") == "1"
    level = logging.DEBUG if verbose else logging.WARNING
    logging.getLogger("cocotb.pcie").setLevel(level)
    logging.getLogger("cocotb.nic").setLevel(logging.DEBUG if verbose else logging.INFO)


@dataclass
class System:
    dut: object
    rc: RootComplex
    root_port: object
    nic: Nic
    pf_dev: PciDevice
    pf: PfDriver
    vfs: list[VfDriver] = field(default_factory=list)

    async def enable_vfs(self, num_vfs: int, probe: bool = True) -> list[VfDriver]:
        """``sriov_configure(num_vfs)`` then bind and probe a VF driver on each VF."""
        await self.pf.sriov_configure(num_vfs)
        self.vfs = [VfDriver(pdev) for pdev in self.pf.virtfns]
        if probe:
            for vf in self.vfs:
                await vf.probe()
        return self.vfs

    async def disable_vfs(self) -> None:
        self.vfs = []
        await self.pf.sriov_configure(0)


async def start_harness(dut) -> None:
    """Clock and reset of the HDL harness; link_up follows the PCIe link."""
    Clock(dut.clk, HARNESS_CLOCK_NS, unit="ns").start()
    dut.rst.value = 1
    dut.link_up.value = 0
    dut.last_rid.value = 0
    dut.cfg_access.value = 0
    dut.msix_pulse.value = 0
    await Timer(4 * HARNESS_CLOCK_NS, "ns")
    dut.rst.value = 0


async def build_system(dut, total_vfs: int = device.DEFAULT_TOTAL_VFS, ari: bool = True,
                       rc: RootComplex | None = None, verbose: bool | None = None) -> System:
    """Root complex + NIC on a Gen3 x8 root port, enumerated, PF driver probed.

    ``ari`` sets whether the root port supports ARI Forwarding (VFs then follow
    the PF densely on its bus; without it they start on the next bus). ``rc``
    lets a caller supply a root complex subclass (e.g. one with an IOMMU).
    """
    quiet_logging(verbose)
    await start_harness(dut)
    rc = rc or RootComplex()
    root_port = rc.make_port()
    root_port.pcie_cap.ari_forwarding_supported = ari
    root_port.downstream_port.max_link_speed = device.LINK_SPEED_GEN
    root_port.downstream_port.max_link_width = device.LINK_WIDTH
    nic = Nic(total_vfs=total_vfs)
    root_port.connect(nic.device)
    await rc.enumerate()
    dut.link_up.value = 1
    pf_dev = rc.find_device(nic.pf.pcie_id)
    pf = PfDriver(pf_dev)
    await pf.probe()
    return System(dut=dut, rc=rc, root_port=root_port, nic=nic, pf_dev=pf_dev, pf=pf)

"""The host platform the agents act on: the system (root complex, NIC, drivers), which VFs
the guests have open (``slots``), their IOMMU domains, and bringing a guest back after a
reset.  It is not a UVM component: the env builds one and hands it to every agent, so no
agent reaches back into the env.

The platform states its intent to the scoreboard's DMA reference: which domain each
requester ID belongs to (so a context entry changed behind its back shows up as an
isolation break); the mappings themselves come from the IOMMU driver's events.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from datasheet import device, regs
from datasheet.descriptors import hash_types_of
from datasheet.mailbox import Offload
from iommu import IOMMU_READ, IOMMU_WRITE, DmaDevice
from iommu import events as iommu_ev
from iommu.vtd_format import PAGE_SIZE
from pf_driver import PfDriver
from pf_driver.vf_info import VfInfo, VfState
from tb.lib.system import System, build_system
from tb.lib.timing import wait_until
from tb.uvm import offload_reference as offref
from tb.uvm import reference as ref
from vf_driver import VfDriver

#: VF agents (guests with open net devices); more VFs may be enabled, they stay idle
MAX_AGENTS = 8
PAGE = PAGE_SIZE  # host page (VT-d 4 KiB)
CANARY = bytes(range(256)) * 16


@dataclass
class EnvConfig:
    """What one test run builds; chosen by the test (possibly at random) in its build phase."""

    seed: int
    total_vfs: int = 16
    num_vfs: int = 4
    open_vfs: int = 4  # VFs whose guests open their net devices (<= MAX_AGENTS)
    ring_size: int = 64
    ari: bool = True
    open_pf: bool = True
    blocked_dma: bool = False  # at VF Enable, let a VF DMA before any VF has a domain
    #: the most VFs the test has open at once (a re-enable may open others): the env builds
    #: that many VF agents, each a dozen pyuvm components; ``None``: ``open_vfs``
    max_open_vfs: int | None = None

    @property
    def vf_agents(self) -> int:
        """VF agents the env builds (at most :data:`MAX_AGENTS`)."""
        return min(MAX_AGENTS, max(self.open_vfs, self.max_open_vfs or 0))


def reference_prot(prot: int) -> int:
    return (ref.PROT_READ if prot & IOMMU_READ else 0) | (ref.PROT_WRITE if prot & IOMMU_WRITE else 0)


def netdev_rx_view(features: Offload, rss, num_queues: int) -> offref.RxView:
    """The receive offloads of a net device with ``features`` and RSS parameters ``rss``."""
    return offref.RxView(
        frozenset(rss.hash_types) if features & Offload.RSS else frozenset(),
        rss.key,
        tuple(rss.table),
        bool(features & Offload.RXCSUM),
        bool(features & Offload.RXVLAN),
        0,
        num_queues,
    )


def _vf_port_view(info: VfInfo) -> ref.PortView:
    """A VF's switch port as the PF driver's record of it says."""
    return ref.PortView.vf(
        info.state is not VfState.NOT_RESET,
        info.mac,
        info.multicast,
        info.vlans,
        info.promisc_unicast,
        info.promisc_multicast,
        info.spoofchk,
        info.admin_vlan,
    )


class Platform:
    """The host's side of a test run; ``on_netdev(port, netdev)`` is told of every net
    device a guest (or the PF) opens, ``dma_ref`` is the scoreboard's DMA reference."""

    def __init__(self, cfg: EnvConfig, rng: random.Random, dma_ref: ref.DmaReference, on_netdev: Callable):
        self.cfg = cfg
        self.rng = rng
        self.dma_ref = dma_ref
        self.on_netdev = on_netdev
        self.system: System | None = None
        self.slots: list[int] = []
        self.pf_port_programmed = True
        self.canary = None
        self.dead_queues: dict[int, set] = {}  # slot -> TX queues a hostile scenario stopped

    async def bring_up(self, dut) -> System:
        cfg = self.cfg
        self.system = sys_ = await build_system(dut, total_vfs=cfg.total_vfs, ari=cfg.ari, iommu=True)
        self.follow_iommu()
        self.canary = sys_.pf_dma.alloc_buffer(PAGE)
        self.canary.write(0, CANARY)
        return sys_

    def follow_iommu(self) -> None:
        """Keep the DMA reference's mappings in step with the IOMMU driver's map and unmap
        events; the PF is in pass-through from before anyone subscribed."""
        shadow, system = self.dma_ref, self.system
        shadow.attach_passthrough(int(system.pf_dev.pcie_id))
        events = system.rc.iommu.events
        events.subscribe(
            iommu_ev.DomainMap, lambda e: shadow.map(e.did, e.iova, e.phys, e.size, reference_prot(e.prot))
        )
        events.subscribe(iommu_ev.DomainUnmap, lambda e: shadow.unmap(e.did, e.iova, e.size))

    # -- VFs -----------------------------------------------------------------------------------
    async def open_pf(self) -> None:
        pf = self.system.pf
        if pf.netdev.is_open:
            await pf.netdev.stop()
        await pf.open(self.cfg.ring_size)
        self.on_netdev(device.PF_PORT, pf.netdev)

    async def enable(
        self,
        num_vfs: int,
        open_vfs: int | None = None,
        ring_size: int | None = None,
        before_attach: Callable[[VfDriver], Awaitable] | None = None,
    ) -> None:
        """``sriov_configure(num_vfs)``, then a domain and an open net device for up to
        ``open_vfs`` of them (picked at random), each driven by one VF agent.
        ``before_attach(vf)`` runs on an idle VF before any VF has a domain."""
        sys_ = self.system
        if sys_.vfs:
            await self.disable()
        if ring_size:
            self.cfg.ring_size = ring_size
        await sys_.enable_vfs(num_vfs)
        n_open = min(num_vfs, MAX_AGENTS, self.cfg.open_vfs if open_vfs is None else open_vfs)
        if n_open > self.cfg.vf_agents:  # never fewer than asked for: the stimulus would change
            raise ValueError(f"{n_open} VFs to open, but the env has {self.cfg.vf_agents} VF agents (max_open_vfs)")
        self.slots = sorted(self.rng.sample(range(num_vfs), n_open))
        if before_attach is not None:
            idle = [i for i in range(num_vfs) if i not in self.slots]
            await before_attach(sys_.vfs[self.rng.choice(idle) if idle else self.slots[0]])
        for slot in range(len(self.slots)):
            self.attach(slot)
            await self.open_vf(slot)

    async def disable(self) -> None:
        for vf in self.system.vfs:
            self.dma_ref.detach(int(vf.pdev.pcie_id))
        await self.system.disable_vfs()
        self.slots = []

    def vf(self, slot: int) -> VfDriver:
        return self.system.vfs[self.slots[slot]]

    def vf_infos(self) -> list[VfInfo]:
        """The PF driver's record of every enabled VF."""
        return self.system.pf.mailbox.vfs if self.system else []

    def vf_info(self, index: int) -> VfInfo:
        return self.system.pf.mailbox.vfs[index]

    def port_views(self) -> dict:
        """Each switch port as the PF driver configured it (the reference's input)."""
        if self.system is None:
            return {}
        pf = self.system.pf
        views = {device.PF_PORT: self._pf_port_view(pf)}
        for info in pf.mailbox.vfs:
            views[device.vf_port(info.index)] = _vf_port_view(info)
        return views

    def port_view(self, port: int) -> ref.PortView | None:
        """Switch port ``port`` as the PF driver configured it; None if no such function."""
        info = self._function(port)
        if info is None:
            return None
        return self._pf_port_view(info) if port == device.PF_PORT else _vf_port_view(info)

    def _pf_port_view(self, pf: PfDriver) -> ref.PortView:
        if self.pf_port_programmed:
            return ref.PortView(pf.mac)
        return ref.PortView(None, bam=False, rx_en=False)

    def rx_view(self, port: int) -> offref.RxView | None:
        """Function ``port``'s receive offloads as its driver configured them (the PF's from its
        net device; a VF's from the PF driver's record of its requests, within the policy);
        None if no such function."""
        info = self._function(port)
        if info is None:
            return None
        if port == device.PF_PORT:
            return netdev_rx_view(info.netdev.features, info.netdev.rss, device.PF_QUEUE_PAIRS)
        active = info.state not in (VfState.NOT_RESET, VfState.DISABLED)
        enabled = info.offloads & info.allowed_offloads if active else Offload(0)
        return offref.RxView(
            hash_types_of(info.rss_hena) if enabled & Offload.RSS else frozenset(),
            info.rss_key,
            tuple(info.rss_table),
            bool(enabled & Offload.RXCSUM),
            bool(enabled & Offload.RXVLAN),
            0,
            device.VF_QUEUE_PAIRS,
        )

    def _function(self, port: int):
        """The PF driver for ``port`` 0, its record of the VF for a VF's port; None if none."""
        if self.system is None:
            return None
        if port == device.PF_PORT:
            return self.system.pf
        vfs = self.system.pf.mailbox.vfs
        index = device.port_vf(port)
        return vfs[index] if 0 <= index < len(vfs) else None

    def pvid(self, port: int) -> int | None:
        view = self.port_view(port)
        return None if view is None else view.pvid

    def macs(self) -> dict[int, bytes]:
        """port -> unicast MAC a frame should carry to reach it."""
        out = {device.PF_PORT: self.system.pf.mac}
        for info in self.vf_infos():
            out[device.vf_port(info.index)] = info.mac
        return out

    def netdev_of(self, port: int):
        """(driver, net device) of a switch port; (None, None) for a VF that is gone."""
        if port == device.PF_PORT:
            return self.system.pf, self.system.pf.netdev
        index = device.port_vf(port)
        vf = self.system.vfs[index] if index < len(self.system.vfs) else None
        return vf, (vf.netdev if vf is not None else None)

    def hostile_queue(self, slot: int, consume: bool = True) -> int | None:
        """A VF TX queue other than 0 (the traffic queue) still running, for a scenario that may
        stop it (``consume``); None when all are used up (a VF reset gives them back)."""
        dead = self.dead_queues.setdefault(slot, set())
        for q in range(1, device.VF_QUEUE_PAIRS):
            if q not in dead:
                if consume:
                    dead.add(q)
                return q
        return None

    # -- IOMMU: the platform assigns domains ---------------------------------------------------
    def attach(self, slot: int) -> DmaDevice:
        vf = self.vf(slot)
        dev = self.system.attach_vf_domain(vf)
        self.dma_ref.attach(int(vf.pdev.pcie_id), dev.domain.did)
        return dev

    def detach(self, slot: int) -> DmaDevice:
        vf = self.vf(slot)
        self.dma_ref.detach(int(vf.pdev.pcie_id))
        return self.system.detach_vf(vf)

    def detach_pf(self) -> None:
        """Clear the PF's context entry: its DMA faults from the next request on."""
        rid = int(self.system.pf_dev.pcie_id)
        self.dma_ref.detach(rid)
        self.system.iommu_driver.detach_device(rid)

    def attach_pf_passthrough(self) -> None:
        """Give the PF its pass-through context back."""
        rid = int(self.system.pf_dev.pcie_id)
        self.system.iommu_driver.attach_passthrough(rid)
        self.dma_ref.attach_passthrough(rid)

    def iommu_map(self, slot: int, iova: int, phys: int, size: int, prot: int) -> None:
        self.system.iommu_driver.iommu_map(self.vf(slot).dma.domain, iova, phys, size, prot)

    def iommu_unmap(self, slot: int, iova: int, size: int) -> None:
        self.system.iommu_driver.iommu_unmap(self.vf(slot).dma.domain, iova, size)

    # -- guests ------------------------------------------------------------------------------
    async def open_vf(self, slot: int) -> None:
        vf = self.vf(slot)
        await vf.open(self.cfg.ring_size)
        self.on_netdev(device.vf_port(vf.vf_index), vf.netdev)

    async def reprobe(self, slot: int, resets_before: int, fresh_netdev: bool = False) -> None:
        """After a reset of the VF, make sure its guest is back.  A VF driver that saw RSTD
        recovers by itself (handshake, rings rebuilt): wait for that.  One that could not
        (the caller said ``reset_prepare``: MSI-X was off, as after an FLR, or the rings
        belong to a domain it no longer has) is probed and its rings rebuilt here, as a
        guest would.  ``fresh_netdev``: build a new net device instead of re-opening."""
        vf = self.vf(slot)
        self.dead_queues.pop(slot, None)
        if vf.ready and await wait_until(
            lambda: vf.resets > resets_before and vf.ready and not vf.recovering, timeout_ns=5_000_000, step_ns=2_000
        ):
            return
        await vf.wait_recovered()
        if not vf.ready or self.vf_info(vf.vf_index).state is VfState.NOT_RESET:
            await vf.probe()
        if fresh_netdev or vf.netdev is None:
            if vf.netdev is not None:
                vf.netdev.abandon()  # its rings are gone with the old domain
            await self.open_vf(slot)
        else:
            await vf.netdev.stop()
            await vf.netdev.open(self.cfg.ring_size)

    # -- end-of-test checks --------------------------------------------------------------------
    async def no_buffer_drops(self, port: int) -> int | None:
        """QRX_NOBUF of a port's RX queues (RSS spreads over all of them), None if the port has no
        driver any more."""
        drv, netdev = self.netdev_of(port)
        if drv is None:
            return None
        queues = netdev.num_queues if netdev is not None else 1
        return sum([await drv.read_reg(regs.QRX_NOBUF, q) for q in range(queues)])

    async def rx_diagnostics(self, port: int) -> str:
        """What the driver and the device say about a port's RX queue 0 (for a 'missing' report)."""
        drv, netdev = self.netdev_of(port)
        if netdev is None or not netdev.rx:
            return f"port {port}: no open net device"
        ring = netdev.rx[0]
        regs_ = {name: await drv.read_reg(regs.by_name(name), 0) for name in ("RDH", "RDT", "RXDCTL", "QRX_NOBUF")}
        return (
            f"port {port}: driver next_to_clean {ring.next_to_clean} next_to_use {ring.next_to_use} "
            f"done {ring.done()} napi_scheduled {netdev.napi_scheduled[0]} polls {netdev.polls[0]}; device "
            + " ".join(f"{k} {v:#x}" for k, v in regs_.items())
        )

    async def switch_counters(self) -> dict[str, int]:
        """The switch's decision counters (SW_*), as the PF driver reads them."""
        pf = self.system.pf
        return {reg.name: await pf.read_reg(reg) for reg in regs.SW_STATS}

    async def function_stats(self) -> dict[str, list[int]]:
        """Each function's statistics (STAT_*): the PF's own, each VF's through PF_VF_STATS."""
        pf = self.system.pf
        out = {"pf": [await pf.read_reg(reg) for reg in regs.STATS]}
        for index in range(len(self.system.vfs)):
            base = index * len(regs.STATS)
            out[f"vf{index}"] = [await pf.read_reg(regs.PF_VF_STATS, base + k) for k in range(len(regs.STATS))]
        return out

    def canary_intact(self) -> bool:
        return self.canary is None or self.canary.read(0, len(CANARY)) == CANARY

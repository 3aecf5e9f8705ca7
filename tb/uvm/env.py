"""The pyuvm environment: agents, monitors, scoreboard, coverage and the platform glue.

``NicEnv`` is built by pyuvm's phases; the system itself (root complex, NIC, drivers)
is async and is brought up at the start of the test's run phase by
:meth:`NicEnv.bring_up`.  The env also plays the host platform for the agents: it
attaches IOMMU domains, binds VF agents to open VFs (``slots``), and re-probes a VF
after a reset. The scoreboard's DMA reference takes which domain each requester ID
belongs to from the env (the platform's intent, so a context entry changed behind its
back shows up as an isolation break) and the mappings from the IOMMU driver's events.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from cocotb.triggers import Timer
from pyuvm import ConfigDB, uvm_env

from datasheet import descriptors as d
from datasheet import device, regs
from iommu import DMA_FROM_DEVICE, DMA_TO_DEVICE, IOMMU_READ, IOMMU_WRITE
from iommu import events as iommu_ev
from pf_driver.vf_info import VfState
from tb.system import build_system
from tb.uvm import reference as ref
from tb.uvm.agents import PfAgent, UplinkAgent, VfAgent, wait_until
from tb.uvm.coverage import CoverageCollector
from tb.uvm.monitors import DeviceMonitor, MailboxMonitor, NetdevMonitor, SwitchMonitor
from tb.uvm.probe import WaveProbe
from tb.uvm.scoreboard import Scoreboard

#: VF agents (guests with open net devices); more VFs may be enabled, they stay idle
MAX_AGENTS = 8
PAGE = 4096
LARGE_PAGES = {"2M": (2 << 20, 0x3000_0000), "1G": (1 << 30, 0x4000_0000)}   # size, IOVA used
CANARY = bytes(range(256)) * 16


@dataclass
class EnvConfig:
    """What one test run builds; chosen by the test (possibly at random) in its build phase."""
    seed: int
    total_vfs: int = 16
    num_vfs: int = 4
    open_vfs: int = 4               # VFs whose guests open their net devices (<= MAX_AGENTS)
    ring_size: int = 64
    ari: bool = True
    open_pf: bool = True
    blocked_dma: bool = False       # at VF Enable, let a VF DMA before any VF has a domain


def reference_prot(prot: int) -> int:
    return (ref.PROT_READ if prot & IOMMU_READ else 0) | (ref.PROT_WRITE if prot & IOMMU_WRITE else 0)


class NicEnv(uvm_env):
    def build_phase(self):
        self.cfg: EnvConfig = ConfigDB().get(self, "", "cfg")
        self.rng = random.Random(self.cfg.seed)
        self.device_mon = DeviceMonitor("device_mon", self)
        self.switch_mon = SwitchMonitor("switch_mon", self)
        self.netdev_mon = NetdevMonitor("netdev_mon", self)
        self.mbx_mon = MailboxMonitor("mbx_mon", self)
        self.pf_agent = PfAgent("pf_agent", self)
        self.vf_agents = [VfAgent(f"vf_agent{k}", self) for k in range(MAX_AGENTS)]
        self.uplink_agent = UplinkAgent("uplink_agent", self)
        self.scoreboard = Scoreboard("scoreboard", self)
        self.coverage = CoverageCollector("coverage", self)
        self.probe = WaveProbe("probe", self)
        self.system = None
        self.slots: list[int] = []
        self.pf_port_programmed = True
        self.canary = None
        self._serial = 0
        self.dead_queues: dict[int, set] = {}     # slot -> TX queues a hostile scenario stopped

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

    def next_serial(self) -> int:
        """Serial number for the next generated frame (per run, so a seed reproduces it)."""
        self._serial += 1
        return self._serial

    def connect_phase(self):
        tlp, sb, cov, probe = self.device_mon, self.scoreboard, self.coverage, self.probe
        for agent in (self.pf_agent, self.uplink_agent, *self.vf_agents):
            agent.driver.env = self
            agent.driver.ap_tx.connect(sb.tx_export)
            agent.driver.ap_transition.connect(sb.transition_export)
        for k, agent in enumerate(self.vf_agents):
            agent.driver.slot = k
        tlp.ap_mmio.connect(self.mbx_mon.analysis_export)
        tlp.ap_sriov.connect(cov.sriov_export)
        tlp.ap_sriov.connect(probe.sriov_export)
        tlp.ap_dma.connect(sb.dma_export)
        tlp.ap_dma.connect(cov.dma_export)
        tlp.ap_dma.connect(probe.dma_export)
        tlp.ap_iotlb.connect(cov.iotlb_export)
        tlp.ap_wb.connect(cov.wb_export)
        tlp.ap_wb.connect(sb.wb_export)
        tlp.ap_doorbell.connect(cov.doorbell_export)
        tlp.ap_doorbell.connect(probe.doorbell_export)
        tlp.ap_msi.connect(cov.msi_export)
        tlp.ap_msi.connect(probe.msi_export)
        tlp.ap_reset.connect(cov.reset_export)
        tlp.ap_reset.connect(sb.reset_export)
        tlp.ap_reset.connect(probe.reset_export)
        tlp.ap_cfg.connect(probe.cfg_export)
        self.mbx_mon.ap.connect(cov.mailbox_export)
        self.switch_mon.ap.connect(sb.switch_export)
        self.switch_mon.ap.connect(cov.switch_export)
        self.switch_mon.ap.connect(probe.switch_export)
        self.netdev_mon.ap.connect(sb.rx_export)
        self.uplink_agent.monitor.ap.connect(sb.uplink_export)
        sb.views = self.port_views
        sb.port_of_rid = tlp.port_of
        cov.port_of_rid = tlp.port_of
        self.mbx_mon.vf_state = lambda vf: self.vf_info(vf).state.value if vf < len(self.pf_vfs()) else "gone"

    # -- bring-up --------------------------------------------------------------------------
    async def bring_up(self, dut) -> None:
        cfg = self.cfg
        self.system = sys_ = await build_system(dut, total_vfs=cfg.total_vfs, ari=cfg.ari, iommu=True)
        self.follow_iommu(sys_)
        self.device_mon.attach(sys_)
        self.switch_mon.attach(sys_.nic)
        self.uplink_agent.monitor.attach(sys_.nic.uplink)
        self.probe.attach(dut, sys_.nic.uplink)
        self.canary = sys_.pf_dma.alloc_buffer(PAGE)
        self.canary.write(0, CANARY)
        if cfg.open_pf:
            await self.open_pf()
        await self.enable(cfg.num_vfs, cfg.open_vfs, cfg.ring_size)

    def follow_iommu(self, system) -> None:
        """Keep the scoreboard's DMA reference in step with the IOMMU driver's map and unmap
        events; the PF is in pass-through from before the env subscribed."""
        shadow = self.scoreboard.dma_ref
        shadow.attach_passthrough(int(system.pf_dev.pcie_id))
        events = system.rc.iommu.events
        events.subscribe(iommu_ev.DomainMap,
                         lambda e: shadow.map(e.did, e.iova, e.phys, e.size, reference_prot(e.prot)))
        events.subscribe(iommu_ev.DomainUnmap, lambda e: shadow.unmap(e.did, e.iova, e.size))

    async def open_pf(self) -> None:
        pf = self.system.pf
        if pf.netdev.is_open:
            await pf.netdev.stop()
        await pf.open(self.cfg.ring_size)
        self.netdev_mon.attach_netdev(0, pf.netdev)

    async def enable(self, num_vfs: int, open_vfs: int | None = None, ring_size: int | None = None) -> None:
        """``sriov_configure(num_vfs)``, then a domain and an open net device for up to
        ``open_vfs`` of them (picked at random), each driven by one VF agent."""
        sys_ = self.system
        if sys_.vfs:
            await self.disable()
        if ring_size:
            self.cfg.ring_size = ring_size
        await sys_.enable_vfs(num_vfs)
        self.device_mon.refresh()
        n_open = min(num_vfs, MAX_AGENTS, self.cfg.open_vfs if open_vfs is None else open_vfs)
        self.slots = sorted(self.rng.sample(range(num_vfs), n_open))
        if self.cfg.blocked_dma:
            idle = [i for i in range(num_vfs) if i not in self.slots]
            await self.unassigned_vf_dma(self.rng.choice(idle) if idle else self.slots[0])
        for slot in range(len(self.slots)):
            self.attach(slot)
            await self.open_vf(slot)

    async def disable(self) -> None:
        for vf in self.system.vfs:
            self.scoreboard.dma_ref.detach(int(vf.pdev.pcie_id))
        await self.system.disable_vfs()
        self.slots = []
        self.device_mon.refresh()

    # -- the host's view ---------------------------------------------------------------------
    def vf(self, slot: int):
        return self.system.vfs[self.slots[slot]]

    def pf_vfs(self):
        return self.system.pf.mailbox.vfs if self.system else []

    def vf_info(self, index: int):
        return self.system.pf.mailbox.vfs[index]

    def port_views(self) -> dict:
        """Each switch port as the PF driver configured it (the reference's input)."""
        if self.system is None:
            return {}
        pf = self.system.pf
        views = {0: ref.PortView(pf.mac) if self.pf_port_programmed else ref.PortView(None, bam=False, rx_en=False)}
        for info in pf.mailbox.vfs:
            views[1 + info.index] = ref.PortView.vf(
                info.state is not VfState.NOT_RESET, info.mac, info.multicast, info.vlans, info.promisc_unicast,
                info.promisc_multicast, info.spoofchk, info.admin_vlan)
        return views

    def macs(self) -> dict[int, bytes]:
        """port -> unicast MAC a frame should carry to reach it."""
        out = {0: self.system.pf.mac}
        for info in self.pf_vfs():
            out[1 + info.index] = info.mac
        return out

    # -- IOMMU: the platform assigns domains ---------------------------------------------------
    def attach(self, slot: int):
        vf = self.vf(slot)
        dev = self.system.attach_vf_domain(vf)
        self.scoreboard.dma_ref.attach(int(vf.pdev.pcie_id), dev.domain.did)
        return dev

    def detach(self, slot: int):
        vf = self.vf(slot)
        self.scoreboard.dma_ref.detach(int(vf.pdev.pcie_id))
        return self.system.detach_vf(vf)

    def iommu_map(self, slot: int, iova: int, phys: int, size: int, prot: int) -> None:
        self.system.iommu_driver.iommu_map(self.vf(slot).dma.domain, iova, phys, size, prot)

    def iommu_unmap(self, slot: int, iova: int, size: int) -> None:
        self.system.iommu_driver.iommu_unmap(self.vf(slot).dma.domain, iova, size)

    # -- guests ------------------------------------------------------------------------------
    async def open_vf(self, slot: int) -> None:
        vf = self.vf(slot)
        await vf.open(self.cfg.ring_size)
        self.netdev_mon.attach_netdev(1 + vf.vf_index, vf.netdev)

    async def reprobe(self, slot: int, resets_before: int, fresh_netdev: bool = False) -> None:
        """After a reset of the VF, make sure its guest is back.  A VF driver that saw RSTD
        recovers by itself (handshake, rings rebuilt): wait for that.  One that could not
        (``ready`` cleared by the caller: MSI-X was off, as after an FLR, or the rings
        belong to a domain it no longer has) is probed and its rings rebuilt here, as a
        guest would.  ``fresh_netdev``: build a new net device instead of re-opening."""
        vf = self.vf(slot)
        self.dead_queues.pop(slot, None)
        if vf.ready and await wait_until(lambda: vf.resets > resets_before and vf.ready
                                         and not vf.recovering, timeout_ns=5_000_000, step_ns=2_000):
            return
        await vf.wait_recovered()
        if not vf.ready or self.vf_info(vf.vf_index).state is VfState.NOT_RESET:
            await vf.probe()
        if fresh_netdev or vf.netdev is None:
            if vf.netdev is not None:
                vf.netdev.abandon()                 # its rings are gone with the old domain
            await self.open_vf(slot)
        else:
            await vf.netdev.stop()
            await vf.netdev.open(self.cfg.ring_size)

    # -- hostile DMA scenarios (each returns what the test may want to look at) ---------------
    async def unassigned_vf_dma(self, index: int) -> int:
        """A VF no domain was assigned to programs a TX ring and rings its doorbell: the
        descriptor fetch must be blocked (root entry not present on a VF bus nobody attached
        yet, without ARI; context entry not present otherwise); the queue stops."""
        vf = self.system.vfs[index]
        await vf.write_reg(regs.TDBAL, 0x10_0000, 0)
        await vf.write_reg(regs.TDBAH, 0, 0)
        await vf.write_reg(regs.TDLEN, device.RING_MIN_DESCS, 0)
        await vf.write_reg(regs.TXDCTL, 1, 0)
        await vf.write_reg(regs.TDT, 1, 0)
        await Timer(20, "us")
        ctl = await vf.read_reg(regs.TXDCTL, 0)
        await vf.write_reg(regs.TXDCTL, 0, 0)
        return ctl

    async def large_page_xmit(self, slot: int, page: str, frame: bytes, queue: int):
        size, iova = LARGE_PAGES[page]
        vf, pf_dma = self.vf(slot), self.system.pf_dma
        if page == "1G":
            buf = pf_dma.alloc_buffer(PAGE)
            phys, addr = 0, iova + buf.phys
            assert buf.phys + PAGE <= size, "host buffer above the first GiB"
        else:
            buf = pf_dma.alloc_buffer(size)
            phys, addr = buf.phys, iova
        buf.write(0, frame)
        vf.dma.domain.iova.reserve(iova, size)
        self.iommu_map(slot, iova, phys, size, IOMMU_READ)
        driver = self.vf_agents[slot].driver
        ctl = await driver.op_raw_tx([d.tx_desc(addr, len(frame))], queue, frames=[frame])
        self.iommu_unmap(slot, iova, size)
        pf_dma.free_buffer(buf)
        return ctl

    async def read_only_ring_xmit(self, slot: int, frame: bytes, queue: int, driver):
        vf = self.vf(slot)
        dev = vf.dma
        ring, data = dev.alloc_buffer(PAGE), dev.alloc_buffer(PAGE)
        ring_iova = dev.dma_map(ring, PAGE, DMA_TO_DEVICE)
        data_iova = dev.dma_map(data, PAGE, DMA_TO_DEVICE)
        data.write(0, frame)
        ring.write(0, d.tx_desc(data_iova, len(frame)))
        ctl = regs.TXDCTL
        vector = ctl.field("VECTOR").get(await vf.read_reg(ctl, queue))
        await vf.write_reg(ctl, 0, queue)
        await vf.write_reg(regs.TDBAL, ring_iova & 0xFFFFFFFF, queue)
        await vf.write_reg(regs.TDBAH, ring_iova >> 32, queue)
        await vf.write_reg(regs.TDLEN, device.RING_MIN_DESCS, queue)
        await vf.write_reg(ctl, ctl.field("ENABLE").put(ctl.field("VECTOR").put(0, vector), 1), queue)
        driver.expect_tx(1 + vf.vf_index, frame)
        await vf.write_reg(regs.TDT, 1, queue)
        await Timer(20, "us")
        return await vf.read_reg(ctl, queue)

    async def write_only_buffer_xmit(self, slot: int, frame: bytes, queue: int, driver):
        vf = self.vf(slot)
        data = vf.dma.alloc_buffer(PAGE)
        data.write(0, frame)
        iova = vf.dma.dma_map(data, PAGE, DMA_FROM_DEVICE)
        return await driver.op_raw_tx([d.tx_desc(iova, len(frame))], queue)

    async def map_unmap_xmit(self, slot: int, frame: bytes, queue: int, driver):
        vf = self.vf(slot)
        data = vf.dma.alloc_buffer(PAGE)
        data.write(0, frame)
        iova = vf.dma.dma_map(data, PAGE, DMA_TO_DEVICE)
        await driver.op_raw_tx([d.tx_desc(iova, len(frame))], queue, frames=[frame])
        vf.dma.dma_unmap(iova)
        return await driver.op_raw_tx([d.tx_desc(iova, len(frame))], queue)

    async def detached_xmit(self, slot: int, queue: int, driver):
        vf = self.vf(slot)
        async with driver.transition({1 + vf.vf_index}, "detached DMA"):
            resets = vf.resets
            vf.ready = False            # the guest handles this reset itself (its rings' domain is gone)
            self.detach(slot)
            ring = vf.netdev.tx[queue]
            await ring.post_raw([d.tx_desc(ring.data_iova, 64)])
            await Timer(20, "us")
            ctl = await vf.read_reg(regs.TXDCTL, queue)
            await vf.write_reg(regs.CTRL, regs.CTRL.field("RST").mask)       # stop whatever is left
            await vf.read_reg(regs.STATUS)
            self.attach(slot)
            await self.reprobe(slot, resets, fresh_netdev=True)
        return ctl

    # -- end-of-test checks --------------------------------------------------------------------
    def netdev_of(self, port: int):
        if port == 0:
            return self.system.pf, self.system.pf.netdev
        vf = self.system.vfs[port - 1] if port - 1 < len(self.system.vfs) else None
        return vf, (vf.netdev if vf is not None else None)

    async def account_late_drops(self) -> None:
        """For each port still owed frames, read its QRX_NOBUF: frames the queue accepted from
        the switch but then had no buffer for are dropped and counted there, not lost."""
        sb = self.scoreboard
        for port, frames in list(sb.rx_pending.items()):
            if len(frames) > sb.truncated[port]:
                drv, _netdev = self.netdev_of(port)
                if drv is not None:
                    sb.no_buffer_allowance(port, await drv.read_reg(regs.QRX_NOBUF, 0))

    async def rx_diagnostics(self, port: int) -> str:
        """What the driver and the device say about a port's RX queue 0 (for a 'missing' report)."""
        drv, netdev = self.netdev_of(port)
        if netdev is None or not netdev.rx:
            return f"port {port}: no open net device"
        ring = netdev.rx[0]
        regs_ = {name: await drv.read_reg(regs.by_name(name), 0) for name in ("RDH", "RDT", "RXDCTL", "QRX_NOBUF")}
        return (f"port {port}: driver next_to_clean {ring.next_to_clean} next_to_use {ring.next_to_use} "
                f"done {ring.done()} napi_scheduled {netdev.napi_scheduled[0]} polls {netdev.polls[0]}; device "
                + " ".join(f"{k} {v:#x}" for k, v in regs_.items()))

    def check_host_memory(self) -> None:
        if self.canary is not None and self.canary.read(0, len(CANARY)) != CANARY:
            self.scoreboard.error("isolation", "the PF's canary page was written by a device")

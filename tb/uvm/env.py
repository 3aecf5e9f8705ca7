"""The pyuvm environment: agents, monitors, scoreboard and coverage, wired together.

``NicEnv`` is built by pyuvm's phases.  The host's side of a run (the system, the VFs the
guests have open, their IOMMU domains, bringing a guest back after a reset) is a
:class:`~tb.uvm.platform.Platform` the env builds and hands to every agent; it is brought
up at the start of the test's run phase by :meth:`NicEnv.bring_up`.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator

from pyuvm import ConfigDB, uvm_env

from tb.uvm.agents import PfAgent, UplinkAgent, VfAgent
from tb.uvm.coverage import CoverageCollector
from tb.uvm.monitors import DeviceMonitor, MailboxMonitor, NetdevMonitor, SwitchMonitor
from tb.uvm.platform import MAX_AGENTS, EnvConfig, Platform
from tb.uvm.probe import WaveProbe
from tb.uvm.record import TIMING_STATS, EventRecord
from tb.uvm.scoreboard import Scoreboard

__all__ = ["MAX_AGENTS", "EnvConfig", "NicEnv"]

#: serial numbers per sequence (a frame's serial: its sequence's block, then its number there)
SERIAL_SPACE_BITS = 24


class NicEnv(uvm_env):
    def build_phase(self):
        self.cfg: EnvConfig = ConfigDB().get(self, "", "cfg")
        self.rng = random.Random(self.cfg.seed)
        self.device_mon = DeviceMonitor("device_mon", self)
        self.switch_mon = SwitchMonitor("switch_mon", self)
        self.netdev_mon = NetdevMonitor("netdev_mon", self)
        self.mbx_mon = MailboxMonitor("mbx_mon", self)
        self.pf_agent = PfAgent("pf_agent", self)
        self.vf_agents = [VfAgent(f"vf_agent{k}", self) for k in range(self.cfg.vf_agents)]
        self.uplink_agent = UplinkAgent("uplink_agent", self)
        self.scoreboard = Scoreboard("scoreboard", self)
        self.coverage = CoverageCollector("coverage", self)
        self.probe = WaveProbe("probe", self)
        self.record = EventRecord("record", self)
        self.platform: Platform | None = None  # made once the children are built (connect phase)
        self._serial_spaces = 0

    def serial_space(self) -> Iterator[int]:
        """Serial numbers for the frames of one sequence: a block of its own, handed out in
        the order sequences are made (which the seed fixes), so a frame's serial does not
        depend on how concurrent sequences interleave, which follows the fabric's timing."""
        self._serial_spaces += 1
        return itertools.count((self._serial_spaces << SERIAL_SPACE_BITS) + 1)

    def connect_phase(self):
        self.platform = Platform(self.cfg, self.rng, self.scoreboard.dma_ref, self.netdev_mon.attach_netdev)
        tlp, sb, cov, probe = self.device_mon, self.scoreboard, self.coverage, self.probe
        for agent in (self.pf_agent, self.uplink_agent, *self.vf_agents):
            agent.driver.platform = self.platform
            agent.driver.scoreboard = sb
            agent.driver.ap_tx.connect(sb.tx_export)
            agent.driver.ap_transition.connect(sb.transition_export)
        for k, agent in enumerate(self.vf_agents):
            agent.driver.slot = k
        tlp.ap_mailbox.connect(self.mbx_mon.analysis_export)
        tlp.ap_sriov.connect(cov.sriov_export)
        tlp.ap_dma.connect(sb.dma_export)
        tlp.ap_dma.connect(cov.dma_export)
        tlp.ap_iotlb.connect(cov.iotlb_export)
        tlp.ap_wb.connect(cov.wb_export)
        tlp.ap_wb.connect(sb.wb_export)
        tlp.ap_doorbell.connect(cov.doorbell_export)
        tlp.ap_msi.connect(cov.msi_export)
        tlp.ap_reset.connect(cov.reset_export)
        tlp.ap_reset.connect(sb.reset_export)
        tlp.ap_tx_offload.connect(cov.tx_offload_export)
        self.netdev_mon.ap.connect(cov.rx_export)
        self.mbx_mon.ap.connect(cov.mailbox_export)
        self.switch_mon.ap.connect(sb.switch_export)
        self.switch_mon.ap.connect(cov.switch_export)
        self.netdev_mon.ap.connect(sb.rx_export)
        self.uplink_agent.monitor.ap.connect(sb.uplink_export)
        if probe.recording:  # the harness's signals are for the waveform only
            for port, export in (
                (tlp.ap_sriov, probe.sriov_export),
                (tlp.ap_dma, probe.dma_export),
                (tlp.ap_doorbell, probe.doorbell_export),
                (tlp.ap_msi, probe.msi_export),
                (tlp.ap_reset, probe.reset_export),
                (tlp.ap_cfg, probe.cfg_export),
                (self.switch_mon.ap, probe.switch_export),
            ):
                port.connect(export)
        rec = self.record
        self.switch_mon.ap.connect(rec.switch_export)
        self.netdev_mon.ap.connect(rec.rx_export)
        self.uplink_agent.monitor.ap.connect(rec.uplink_export)
        tlp.ap_dma.connect(rec.dma_export)
        tlp.ap_reset.connect(rec.reset_export)
        sb.views = self.platform.port_views
        sb.rx_view = self.platform.rx_view
        cov.rx_view = self.platform.rx_view
        cov.port_view = self.platform.port_view
        sb.port_of_rid = tlp.port_of
        cov.port_of_rid = tlp.port_of
        platform = self.platform
        self.mbx_mon.vf_state = lambda vf: platform.vf_info(vf).state.value if vf < len(platform.vf_infos()) else "gone"

    # -- bring-up --------------------------------------------------------------------------
    async def bring_up(self, dut) -> None:
        platform = self.platform
        sys_ = await platform.bring_up(dut)
        self.device_mon.attach(sys_)
        self.switch_mon.attach(sys_.nic)
        self.uplink_agent.monitor.attach(sys_.nic.uplink)
        if self.probe.recording:
            self.probe.attach(dut, sys_.nic.uplink)
        pf_ops = self.pf_agent.driver
        if self.cfg.open_pf:
            await platform.open_pf()
        await pf_ops.op_enable(self.cfg.num_vfs, self.cfg.open_vfs, self.cfg.ring_size)

    # -- views for sequences and tests ---------------------------------------------------------
    @property
    def system(self):
        return self.platform.system

    @property
    def slots(self) -> list[int]:
        return self.platform.slots

    def vf(self, slot: int):
        return self.platform.vf(slot)

    # -- end-of-test checks --------------------------------------------------------------------
    async def account_late_drops(self) -> None:
        """For each port still owed frames, read its QRX_NOBUF: frames the queue accepted from
        the switch but then had no buffer for are dropped and counted there, not lost."""
        sb = self.scoreboard
        for port, frames in list(sb.rx_pending.items()):
            if len(frames) > sb.truncated[port]:
                dropped = await self.platform.no_buffer_drops(port)
                if dropped is not None:
                    sb.no_buffer_allowance(port, dropped)

    async def rx_diagnostics(self, port: int) -> str:
        return await self.platform.rx_diagnostics(port)

    async def record_final_state(self) -> None:
        """The end state no fabric may change, into the event record: the scoreboard's counts
        and error kinds, the switch's counters, every function's statistics, IOMMU faults."""
        sb, system = self.scoreboard, self.system
        final = self.record.final
        final["scoreboard"] = {k: v for k, v in sorted(sb.stats.items()) if k not in TIMING_STATS}
        final["error_kinds"] = sorted(sb.error_kinds())
        final["switch"] = await self.platform.switch_counters()
        final["functions"] = await self.platform.function_stats()
        final["iommu_faults"] = system.rc.iommu.faults.total

    def check_host_memory(self) -> None:
        if not self.platform.canary_intact():
            self.scoreboard.error("isolation", "the PF's canary page was written by a device")

"""Drives the HDL harness's observation inputs from the monitors, so that a waveform
(``make sim WAVES=1``) shows interrupts, doorbells, DMA faults and resets per function.

Only events write signals (never a per-clock loop).  A ``*_pulse`` input is raised
on an event and lowered 1 ns later by one shared coroutine.  Only a simulation that records
a waveform has the env connect the probe (:attr:`WaveProbe.recording`): nothing else reads
the signals, and driving them costs a regression seed about 4 % of its time.
"""

from __future__ import annotations

import cocotb
from cocotb.triggers import Timer
from pyuvm import uvm_component

from datasheet import regs
from tb.uvm.items import (
    ConfigWrite,
    DmaEvent,
    Doorbell,
    MsiEvent,
    ResetEvent,
    SwitchEvent,
)
from tb.uvm.scoreboard import imp

RESET_CODES = {"vf_flr": 1, "vf_soft": 2, "pf_reset": 3, "pf_flr": 4}
PULSE_NS = 1
#: the Verilator model's argument to record a waveform
TRACE_ARG = "--trace"


def recording_waves() -> bool:
    """Whether the simulator records a waveform: Verilator's ``--trace``, which the runner
    passes with ``waves`` (``make sim WAVES=1``)."""
    return TRACE_ARG in cocotb.argv


class WaveProbe(uvm_component):
    def build_phase(self):
        #: the simulation records a waveform: the env connects and attaches the probe
        self.recording = recording_waves()
        self.dut = None
        self.counts = {"msix": 0, "doorbell": 0, "dma_fault": 0, "switched": 0, "uplink": 0}
        self._to_clear: set[str] = set()
        self._clearing = False
        if not self.recording:  # no exports (each is a component) to leave unconnected
            return
        self.msi_export = imp(self, "msi_export", self.write_msi)
        self.doorbell_export = imp(self, "doorbell_export", self.write_doorbell)
        self.dma_export = imp(self, "dma_export", self.write_dma)
        self.reset_export = imp(self, "reset_export", self.write_reset)
        self.cfg_export = imp(self, "cfg_export", self.write_cfg)
        self.switch_export = imp(self, "switch_export", self.write_switch)
        self.sriov_export = imp(self, "sriov_export", self.write_sriov)

    def attach(self, dut, uplink=None) -> None:
        self.dut = dut
        if uplink is not None:
            uplink.on_link_change(lambda up: self._set("link_up", int(up)))

    # -- signal helpers ----------------------------------------------------------------------
    def _set(self, name: str, value: int) -> None:
        if self.dut is not None:
            getattr(self.dut, name).value = value

    def _pulse(self, name: str) -> None:
        if self.dut is None:
            return
        self._set(name, 1)
        self._to_clear.add(name)
        if not self._clearing:
            self._clearing = True
            cocotb.start_soon(self._clear())

    async def _clear(self) -> None:
        await Timer(PULSE_NS, "ns")
        for name in self._to_clear:
            self._set(name, 0)
        self._to_clear.clear()
        self._clearing = False

    def _count(self, key: str, signal: str) -> None:
        self.counts[key] += 1
        self._set(signal, self.counts[key] & 0xFFFFFFFF)

    # -- monitor streams ---------------------------------------------------------------------
    def write_msi(self, e: MsiEvent) -> None:
        self._set("msix_rid", e.rid)
        self._set("msix_vector", e.vector if e.vector is not None else 0xFF)
        self._set("last_rid", e.rid)
        self._count("msix", "msix_count")
        self._pulse("msix_pulse")

    def write_doorbell(self, e: Doorbell) -> None:
        reg = (regs.RDT if e.rx else regs.TDT).at(e.queue)
        self._set("doorbell_rid", e.rid)
        self._set("doorbell_reg", reg)
        self._set("doorbell_value", e.tail & 0xFFFF)
        self._set("last_rid", e.rid)
        self._count("doorbell", "doorbell_count")
        self._pulse("doorbell_pulse")

    def write_dma(self, e: DmaEvent) -> None:
        if e.fault_reason is None:
            return
        self._set("dma_fault_rid", e.rid)
        self._set("last_rid", e.rid)
        self._count("dma_fault", "dma_fault_count")
        self._pulse("dma_fault_pulse")

    def write_reset(self, e: ResetEvent) -> None:
        self._set("reset_kind", RESET_CODES.get(e.kind, 0xFF))
        self._set("reset_rid", e.rid)
        self._set("last_rid", e.rid)
        self._pulse("reset_pulse")

    def write_cfg(self, e: ConfigWrite) -> None:
        self._set("last_rid", e.rid)
        self._pulse("cfg_access")

    def write_switch(self, e: SwitchEvent) -> None:
        self._count("switched", "frames_switched")
        if e.uplink:
            self._count("uplink", "frames_to_uplink")

    def write_sriov(self, num_vfs: int) -> None:
        self._set("num_vfs", num_vfs)

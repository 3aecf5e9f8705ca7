"""The device core: one owner of all the NIC's state (DESIGN.md, "The device").

It holds a :class:`~model.core.slice.FunctionSlice` per function (the PF's, and one per
VF while VF Enable is set), the PF<->VF mailbox, the embedded switch, the uplink port, the
DMA engines' scheduler and the event bus, and wires them to each other explicitly: each
part gets the callables it needs at construction, and nothing reaches back through a
parent object. The PCIe shells (:mod:`model.pcie`) are the only way in from the fabric.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from datasheet import device, regs
from model import events as ev
from model.core.mailbox import MailboxUnit
from model.core.migration import MigrationEngine
from model.core.offload import rx as rx_offload
from model.core.offload.config import OffloadTables
from model.core.offload.tx import TxPermits
from model.core.pcap import PcapWriter
from model.core.regfile import SummaryBits
from model.core.scheduler import Scheduler
from model.core.slice import FunctionPort, FunctionSlice
from model.core.switch import PORT_UPLINK, Switch
from model.core.uplink import UplinkPort

if TYPE_CHECKING:
    from collections.abc import Sequence

    from model.inject import Injection
    from model.pcie.caps.msix import NicMsixCapability
    from model.pcie.vf import VirtualFunction

IMR = {f.name: f.mask for f in regs.PF_IMR.fields}
ICR = regs.PF_ICR.masks
DEFQ = regs.SW_FN_CTRL.field("DEFQ")
PVLAN_EN = regs.SW_FN_CTRL.field("PVLAN_EN")
TX_DROPS = regs.by_name("STAT_TX_DROPS")


class DeviceCore:
    def __init__(
        self,
        pf_port: FunctionPort,
        pf_msix_cap: NicMsixCapability,
        events: ev.EventBus,
        log: logging.Logger,
        total_vfs: int = device.DEFAULT_TOTAL_VFS,
        **uplink_options: Any,
    ):
        self.log = log
        self.events = events
        self.scheduler = Scheduler()
        self.pcap: PcapWriter | None = None
        self.uplink = UplinkPort(
            forward=lambda frame: self.switch.forward(frame, PORT_UPLINK),
            link_changed=self._link_changed,
            events=self.events,
            log=self.log,
            **uplink_options,
        )
        self.pf = self._slice(device.PF_PORT, None, pf_port, pf_msix_cap)
        self.vfs: list[FunctionSlice] = []
        pf_regs = self.pf.regs
        self.mailbox = MailboxUnit(pf_regs, pf_interrupt=self.pf_interrupt, events=self.events, log=self.log)
        self.switch = Switch(
            pf_regs,
            ports=lambda: 1 + len(self.vfs),
            deliver=self.deliver,
            to_uplink=self.uplink.transmit,
            tx_drop=self._tx_drop,
            capture=lambda: self.pcap,
            events=self.events,
            log=self.log,
        )
        self.offloads = OffloadTables(pf_regs)
        self.migration = MigrationEngine(
            pf_regs,
            vfs=lambda: self.vfs,
            mailbox=self.mailbox,
            port=pf_port,
            spawn=self.pf.spawn,
            filters_changed=self._port_registers_loaded,
            total_vfs=total_vfs,
            log=self.log,
        )
        self.vferr = SummaryBits(pf_regs, regs.PF_VFERR)
        self.icr = 0  # PF_ICR's latched causes (LSC, FN_ERR)
        pf_regs.bind(regs.PF_ICR, self._icr_read, self._icr_write)
        pf_regs.bind(regs.PF_VF_STATS, self._vf_stat, None)
        pf_regs.bind(regs.PF_VFRTRIG, lambda i: 0, self._vf_reset_trigger)
        self.corrupt_next: dict[int, tuple[int, Injection]] = {}  # injection point: fn -> (byte offset, Injection)
        self.misqueue_next: dict[int, Injection] = {}  # injection point: fn -> Injection

    def _slice(self, fn: int, index: int | None, port: FunctionPort, msix_cap: NicMsixCapability) -> FunctionSlice:
        return FunctionSlice(
            fn,
            index,
            port,
            msix_cap,
            port.log,
            events=self.events,
            scheduler=self.scheduler,
            transmit=self._transmit,
            tx_permits=self._tx_permits,
            on_reset=self._function_reset,
            on_error=self._function_error,
            link_up=lambda: self.uplink.link_up,
        )

    def capture(self, writer: PcapWriter | None) -> None:
        """Write every frame entering the switch to ``writer`` (a PcapWriter; None stops)."""
        self.pcap = writer

    # -- functions ---------------------------------------------------------------------------
    def function_at(self, fn: int) -> FunctionSlice | None:
        """The slice of function ``fn`` (0 = PF, 1 + i = VF i), None if it does not exist."""
        if fn == device.PF_PORT:
            return self.pf
        index = device.port_vf(fn)
        return self.vfs[index] if 0 <= index < len(self.vfs) else None

    def add_vfs(self, shells: Sequence[VirtualFunction]) -> list[FunctionSlice]:
        """VF Enable: one slice per VF shell (its bus-master port and MSI-X capability)."""
        self.vfs = [self._slice(device.vf_port(i), i, shell, shell.msix_cap) for i, shell in enumerate(shells)]
        self.mailbox.vfs_enabled(self.vfs)
        self.migration.vfs_enabled(len(self.vfs))
        self.pf.regs.set(regs.PF_NUM_VFS, len(self.vfs))
        return self.vfs

    def remove_vfs(self) -> None:
        """VF Enable cleared: every VF vanishes with its state; its rings' work is cancelled."""
        for vf in self.vfs:
            vf.queues.reset()
        self.vfs = []
        self.vferr.bits = 0
        self.mailbox.vfs_disabled()
        self.migration.vfs_enabled(0)
        self.pf.regs.set(regs.PF_NUM_VFS, 0)

    # -- interrupts and errors ------------------------------------------------------------------
    def pf_interrupt(self, cause: str) -> None:
        """Raise the PF's misc vector for ``cause`` (a PF_IMR field) if the PF enabled it."""
        if self.pf.regs.get(regs.PF_IMR) & IMR[cause]:
            self.pf.msix.signal(device.PF_MBX_VECTOR)

    def _pf_cause(self, cause: str) -> None:
        """Latch ``cause`` (a PF_ICR field) whatever PF_IMR says, then raise the misc vector for it."""
        self.icr |= ICR[cause]
        self.pf_interrupt(cause)

    def _icr_read(self, _index: int) -> int:
        return self.icr | (ICR["VFERR"] if self.vferr.bits else 0)

    def _icr_write(self, _index: int, value: int, byte_mask: int) -> None:
        self.icr &= ~(value & byte_mask & regs.PF_ICR.write_mask)

    def _function_error(self, function: FunctionSlice) -> None:
        """A function entered the error state: a VF's goes to PF_VFERR, the PF's own to
        PF_ICR.FN_ERR; the PF is interrupted."""
        if function.is_vf:
            self.vferr.set(function.index)
            self.pf_interrupt("FN_ERR")
        else:
            self._pf_cause("FN_ERR")

    def _function_reset(self, function: FunctionSlice, kind: str) -> None:
        """A function finished a software reset or FLR: the device-level consequences."""
        if function.is_vf:
            self.mailbox.vf_reset(function)
            self.migration.vf_reset(function.index)
        else:
            self.icr = 0
            self.pf.regs.set(regs.PF_NUM_VFS, len(self.vfs))
            self.mailbox.pf_reset()
            self.switch.invalidate()  # the SW_* registers went back to reset values
            self.offloads.invalidate()

    def _port_registers_loaded(self) -> None:
        """A migration LOAD rewrote a VF's SW_* and offload registers."""
        self.switch.invalidate()
        self.offloads.invalidate()

    def _vf_reset_trigger(self, i: int, value: int, byte_mask: int) -> None:
        """PF_VFRTRIG: software reset of every VF whose bit is written 1."""
        bits = value & byte_mask
        for n in range(32):
            index = 32 * i + n
            if bits >> n & 1 and index < len(self.vfs):
                self.vfs[index].software_reset()

    def _vf_stat(self, index: int) -> int:
        n, stat = divmod(index, len(regs.STATS))
        return self.vfs[n].regs.get(regs.STATS[stat]) if n < len(self.vfs) else 0

    # -- datapath: functions <-> switch <-> uplink ------------------------------------------------
    def _transmit(self, function: FunctionSlice, frame: bytes) -> bool:
        """A frame a function's TX engine sent; False if the switch dropped it at ingress."""
        return self.switch.forward(frame, function.fn)

    def _tx_permits(self, function: FunctionSlice) -> TxPermits:
        """The TX offloads FN_OFFLOAD permits the function, and its port VLAN (which overrides VLE)."""
        cfg = self.offloads.of(function.fn)
        pvlan = bool(PVLAN_EN.get(self.pf.regs.get(regs.SW_FN_CTRL, function.fn)))
        return TxPermits(cfg.txcsum, cfg.tso, cfg.txvlan, pvlan)

    def deliver(self, fn: int, frame: bytes) -> bool:
        """The switch hands a frame to function ``fn``: its receive offloads (VLAN strip, checksums,
        RSS) pick the RX queue -- the indirection table's, or SW_FN_CTRL.DEFQ without a hash."""
        function = self.function_at(fn)
        if function is None:
            return False
        rx = rx_offload.receive(frame, self.offloads.of(fn))
        armed = self.corrupt_next.get(fn)
        if armed is not None and armed[0] < len(rx.frame):
            offset, injection = self.corrupt_next.pop(fn)
            injection.fire(frame=rx.frame, fn=fn)
            rx = replace(rx, frame=rx.frame[:offset] + bytes([rx.frame[offset] ^ 0x5A]) + rx.frame[offset + 1 :])
            self.log.warning("injected corruption of a frame for function %d at byte %d", fn, offset)
        queue = rx.queue
        if queue is None:
            queue = DEFQ.get(self.pf.regs.get(regs.SW_FN_CTRL, fn))
        elif fn in self.misqueue_next:
            self.misqueue_next.pop(fn).fire(frame=rx.frame, fn=fn)
            queue = (queue + 1) % function.queues.num_queues
            self.log.warning("injected misqueue of a frame for function %d to queue %d", fn, queue)
        return function.queues.deliver(queue, rx)

    def _tx_drop(self, fn: int) -> None:
        function = self.function_at(fn)
        if function is not None:
            function.regs.add(TX_DROPS, 1)

    def _link_changed(self, up: bool) -> None:
        for function in (self.pf, *self.vfs):
            function.show_link(up)
        self._pf_cause("LSC")

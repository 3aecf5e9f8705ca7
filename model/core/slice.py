"""One function's slice of the device core: everything that function's BARs reach.

A :class:`FunctionSlice` owns the function's BAR0 register file, its MSI-X table and PBA,
its queue engine and its error state. Its PCIe shell (:mod:`model.pcie`) maps BAR0 and
the MSI-X BAR onto :meth:`FunctionSlice.bar_read` / :meth:`FunctionSlice.bar_write` and
nothing else, so a VF's window can only reach its own slice.

The slice reaches the world through its shell's bus-master interface (``port``: DMA,
MSI-X messages, Bus Master Enable) and the device core through the callables it is
given (``transmit``, ``tx_permits``, ``on_reset``, ``on_error``, ``link_up``).

Faults stay in the function (``docs/security.md``): every coroutine the slice starts runs
under :meth:`spawn`'s guard and every BAR access under :meth:`bar_read`/:meth:`bar_write`'s;
an unexpected exception in either puts the function in the error state
(:meth:`function_error`) instead of escaping into the simulation.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

import cocotb

from datasheet import device, regs
from datasheet.regs import FnError
from model import events as ev
from model.core.msix import MsixTable
from model.core.queues import DmaPort, QueueEngine
from model.core.regfile import RegisterFile
from model.core.scheduler import Scheduler
from simtask import start_eagerly

if TYPE_CHECKING:
    import logging

    from model.core.offload.tx import TxPermits
    from model.pcie.caps.msix import NicMsixCapability

STATUS_FN_ERR = regs.STATUS.field("FN_ERR")
LINK_UP = regs.STATUS.field("LINK_UP")
ERR_CAUSE = regs.FN_ERROR.field("CAUSE")
ERR_EVENTS = regs.FN_ERROR.field("EVENTS")
RST = regs.CTRL.field("RST")
#: the byte enables of a whole dword (a driver's aligned 32-bit access)
DWORD_LANES = 0xF


class FunctionPort(DmaPort, Protocol):
    """What a slice needs of its PCIe shell."""

    @property
    def rid(self) -> int: ...

    async def send_msi(self, addr: int, data: int) -> None: ...


class FunctionSlice:
    def __init__(
        self,
        fn: int,
        index: int | None,
        port: FunctionPort,
        msix_cap: NicMsixCapability,
        log: logging.Logger,
        *,
        events: ev.EventBus,
        scheduler: Scheduler,
        transmit: Callable[[FunctionSlice, bytes], bool],
        tx_permits: Callable[[FunctionSlice], TxPermits],
        on_reset: Callable[[FunctionSlice, str], None],
        on_error: Callable[[FunctionSlice], None],
        link_up: Callable[[], bool],
    ):
        self.fn = fn
        self.index = index  # VF index, None for the PF
        self.is_vf = index is not None
        self.port = port
        self.log = log
        self._on_reset, self._on_error, self._link_up = on_reset, on_error, link_up
        self._mmio_write = events.topic(ev.MmioWrite)
        self._error_topic = events.topic(ev.FunctionError)
        self._reset_topic = events.topic(ev.Reset)
        vectors = device.VF_MSIX_VECTORS if self.is_vf else device.PF_MSIX_VECTORS
        queue_pairs = device.VF_QUEUE_PAIRS if self.is_vf else device.PF_QUEUE_PAIRS
        self.regs = RegisterFile(regs.registers_for(self.is_vf), log)
        self.regs.on_write(regs.CTRL, self._ctrl_written)
        self.msix = MsixTable(
            fn, msix_cap, port.send_msi, lambda: port.bus_master_enable, self.start, events, log, self.regs.bad_access
        )
        self.queues = QueueEngine(
            fn,
            self.regs,
            queue_pairs,
            vectors,
            port=port,
            transmit=lambda frame: transmit(self, frame),
            tx_permits=lambda: tx_permits(self),
            signal=self.msix.signal,
            spawn=self.spawn,
            scheduler=scheduler,
            events=events,
            on_error=self.function_error,
            log=log,
        )
        self.strap()

    # -- the guard ----------------------------------------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Start ``coro`` as a task of this function: an exception it raises is the function's error."""
        cocotb.start_soon(self._guarded(coro))

    def start(self, coro: Coroutine[Any, Any, None]) -> None:
        """:meth:`spawn`, eagerly: ``coro`` runs at once, up to the first thing it waits for, and
        only then continues as a task (as asyncio's eager task factory starts a task).  A
        message write is a posted request the function issues when it signals, and on the
        transaction-level fabric it completes without waiting: then it costs no task."""
        start_eagerly(self._guarded(coro))

    async def _guarded(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        except Exception as exc:  # noqa: BLE001
            self.function_error(FnError.TASK, f"{type(exc).__name__}: {exc}")

    def function_error(self, cause: FnError, detail: str) -> None:
        """Enter the error state: queues stopped and refusing to start until a function reset,
        STATUS.FN_ERR and FN_ERROR set, the PF told (PF_VFERR + its misc vector for a VF)."""
        rf = self.regs
        value = rf.get(regs.FN_ERROR)
        if not ERR_CAUSE.get(value):
            value = ERR_CAUSE.put(value, cause)
        value = ERR_EVENTS.put(value, min(ERR_EVENTS.get(value) + 1, ERR_EVENTS.mask >> ERR_EVENTS.lsb))
        rf.set(regs.FN_ERROR, value)
        rf.set(regs.STATUS, STATUS_FN_ERR.put(rf.get(regs.STATUS), 1))
        rid = self.port.rid
        self.log.error("function %04x entered the error state (%s): %s", rid, cause.name, detail)
        self.queues.fail()
        self._on_error(self)
        if self._error_topic:
            self._error_topic.emit(ev.FunctionError(self.fn, rid, int(cause), detail))

    # -- BAR windows ----------------------------------------------------------------------
    def bar_read(self, bar: int, offset: int, length: int) -> bytes:
        target = self.regs.read if bar == device.REG_BAR else self.msix.read
        try:
            return target(offset, length)
        except Exception as exc:  # noqa: BLE001 -- never let a BAR access fault escape into the fabric
            self.function_error(FnError.ACCESS, f"BAR{bar} read at {offset:#x}: {type(exc).__name__}: {exc}")
            return bytes(length)

    def bar_write(self, bar: int, offset: int, data: bytes) -> None:
        if self._mmio_write:
            self._emit_mmio(bar, offset, data)
        target = self.regs.write if bar == device.REG_BAR else self.msix.write
        try:
            target(offset, data)
        except Exception as exc:  # noqa: BLE001
            self.function_error(FnError.ACCESS, f"BAR{bar} write at {offset:#x}: {type(exc).__name__}: {exc}")

    def _emit_mmio(self, bar: int, addr: int, data: bytes) -> None:
        """One :class:`~model.events.MmioWrite` per dword the write touches, with its byte enables."""
        emit, fn = self._mmio_write.emit, self.fn
        if not (addr | len(data)) & 3:  # a driver's access: aligned dwords, every lane
            if len(data) == 4:
                emit(ev.MmioWrite(fn, bar, addr, int.from_bytes(data, "little"), DWORD_LANES))
                return
            for dword, value in zip(range(addr, addr + len(data), 4), struct.unpack(f"<{len(data) >> 2}I", data)):
                emit(ev.MmioWrite(fn, bar, dword, value, DWORD_LANES))
            return
        for dword in range(addr & ~3, addr + len(data), 4):
            lanes = bytes(data[max(dword, addr) - addr : min(dword + 4, addr + len(data)) - addr])
            shift = max(addr - dword, 0)
            value = int.from_bytes(bytes(shift) + lanes, "little")
            emit(ev.MmioWrite(fn, bar, dword, value, ((1 << len(lanes)) - 1) << shift))

    # -- resets -----------------------------------------------------------------------------
    def _ctrl_written(self, old: int, new: int) -> None:
        if RST.get(new):
            self.software_reset()
            self.regs.set(regs.CTRL, RST.put(self.regs.get(regs.CTRL), 0))

    def software_reset(self, kind: str = "soft") -> None:
        """CTRL.RST (or PF_VFRTRIG): the function's device state back to reset; config space kept."""
        self.log.info("function %s reset", kind)
        self.regs.reset()
        self.queues.reset()
        self.strap()
        self._on_reset(self, kind)
        if self._reset_topic:
            self._reset_topic.emit(ev.Reset(self.fn, kind))

    def flr(self) -> None:
        """The device half of a Function Level Reset: MSI-X table and PBA, then the device state."""
        self.msix.reset()
        self.software_reset("flr")

    def strap(self) -> None:
        """Hardware-owned register values after reset: FUNC_INFO and STATUS.LINK_UP."""
        rf = self.regs
        if self.is_vf:
            info = regs.FUNC_INFO
            rf.set(info, info.field("VF_INDEX").put(info.field("IS_VF").put(0, 1), self.index))
        self.show_link(self._link_up())

    def show_link(self, up: bool) -> None:
        self.regs.set(regs.STATUS, LINK_UP.put(self.regs.get(regs.STATUS), int(up)))

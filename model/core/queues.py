"""Queue engine of one PCIe function: TX/RX descriptor rings, doorbells, interrupt moderation.

Each function (PF or VF) owns ``n`` queue pairs whose registers sit in its own
BAR0 (``datasheet.regs`` TDBAL..QERR_COUNT, EITR). All descriptor and buffer
DMA is issued by that function through its :class:`DmaPort`, so it carries the
function's Requester ID and the IOMMU translates it with that function's domain.

Containment by construction (``docs/security.md``):

* Enabling a ring takes a :class:`RingRun`: a snapshot of its geometry (base, length,
  vector) plus the device's working state (head, fetch pointer, prefetched
  descriptors, the frame being assembled, RX frames waiting). The engine works only
  on runs, never on the ring registers; a doorbell hands the run its new tail.
* A function reset, an FLR, disabling the ring or an error stop *cancels* the run.
  Every DMA of a run goes through :meth:`QueueEngine._dma_read` / ``_dma_write``,
  which refuse to start for a cancelled run and raise :class:`Cancelled` when the run
  was cancelled while the request was in flight, so a cancelled run stops at its next
  await and publishes nothing: no head update, no write-back, no frame. (Killing the
  coroutine instead would leak cocotbext-pcie's completion tags.)
* Every exception a memory request raises (IOMMU fault / UR, bus mastering off, an
  address the fabric cannot route) becomes that queue's ``DMA_FAULT``: the queue
  stops, ``QERR_COUNT`` and ``STAT_{TX,RX}_ERRORS`` count it, its vector is raised.
* Anything else a turn raises is a fault of the model itself: the turn's guard hands it
  to the function (``on_error``), which enters the error state; nothing propagates.

Work is scheduled by the device's :class:`~model.scheduler.Scheduler`: one turn is at
most ``QUEUE_BUDGET`` descriptors; descriptors are fetched ``DESC_FETCH_BATCH`` at a
time and written back in place (DD set) with one DMA write per batch.

Bad input, each logged and counted in QERR_COUNT, never touching other queues: enabling
with a bad ring base/length is refused (ERR=BAD_RING); a tail beyond the ring stops the
queue (BAD_TAIL); a doorbell on a disabled queue is ignored (DISABLED_DOORBELL, shown
unless another cause already is). Zero-length or oversized TX descriptors complete with
ERR_LEN and the frame is not sent. RX buffer writes are posted: a faulting one is not
seen by the device (as on real hardware); the IOMMU records it and the data is lost.

Offloads (:mod:`model.core.offload`): a TX chain (an optional context descriptor, then data
descriptors up to EOP) is judged by :func:`~model.core.offload.tx.plan` before any of its
buffers is read; a refused one completes with ERR_LEN or ERR_OFFLOAD, anything else is read
and turned into the frames the switch gets (checksums, TSO segments, VLAN tag). A received
frame arrives from the device core with its receive offloads done (:class:`RxResult`); its
EOP write-back carries the info word (RSS hash, type, stripped tag) and the offload status.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from cocotb.triggers import Timer
from cocotb.utils import get_sim_time

from datasheet import descriptors as d
from datasheet import device, regs
from datasheet.descriptors import QueueError
from datasheet.migration import RING_WORDS
from datasheet.regs import FnError
from model import events as ev
from model.core.offload import tx as tx_offload
from model.core.scheduler import Scheduler

if TYPE_CHECKING:
    import logging

    from datasheet.regs import Register
    from model.core.offload.rx import RxResult
    from model.core.regfile import BoundRead, BoundWrite, RegisterFile
    from model.inject import Injection

ENABLE = regs.TXDCTL.field("ENABLE")
VECTOR = regs.TXDCTL.field("VECTOR")
ERR = regs.TXDCTL.field("ERR")
STAT = {r.name[len("STAT_") :]: r for r in regs.STATS}


class DmaFault(Exception):
    """A DMA request of the function failed (IOMMU fault / UR, bus mastering off, bad address)."""


class Cancelled(Exception):
    """The ring's run was cancelled (reset, disable, error stop) while it was working."""


class InjectedFault(Exception):
    """Raised inside a turn by the ``engine_fault`` injection point (verification only)."""


class DmaPort(Protocol):
    """How the function reaches host memory: its bus-master interface on the fabric."""

    @property
    def bus_master_enable(self) -> bool: ...

    async def dma_read(self, addr: int, length: int) -> bytes: ...

    async def dma_write(self, addr: int, data: bytes) -> None: ...


class RingState:
    """Register state of one ring (TX or RX half of a queue pair)."""

    def __init__(self, index: int, rx: bool):
        self.index = index
        self.rx = rx
        self.base_lo = self.base_hi = self.length = 0
        self.head = self.tail = 0
        self.ctl = 0
        self.run: RingRun | None = None

    @property
    def name(self) -> str:
        return f"{'RX' if self.rx else 'TX'}{self.index}"

    @property
    def base(self) -> int:
        return self.base_hi << 32 | self.base_lo

    @property
    def enabled(self) -> bool:
        return bool(ENABLE.get(self.ctl))

    @property
    def vector(self) -> int:
        return VECTOR.get(self.ctl)

    def valid_geometry(self) -> bool:
        return device.ring_geometry_error(self.base, self.length) is None


class RingRun:
    """The device's working state of one enabled ring, over a snapshot of its geometry."""

    __slots__ = (
        "engine",
        "ring",
        "base",
        "length",
        "vector",
        "tail",
        "head",
        "fetch",
        "cache",
        "staged",
        "fifo",
        "cancelled",
        "queued",
        "active",
        "again",
        "turn_number",
    )

    def __init__(self, engine: QueueEngine, ring: RingState):
        self.engine = engine
        self.ring = ring
        self.base, self.length, self.vector = ring.base, ring.length, ring.vector
        self.tail = self.head = self.fetch = 0
        self.cache: collections.deque = collections.deque()  # prefetched, not yet used
        self.staged: list = []  # TX: descriptors of a frame in progress
        self.fifo: collections.deque[RxResult] = collections.deque()  # RX: frames awaiting buffers
        self.cancelled = self.queued = self.active = self.again = False
        self.turn_number = 0  # the scheduler's count at this turn

    def free(self) -> int:
        """Descriptors the driver has handed over and the device has not used."""
        return (self.tail - self.head) % self.length

    def posted(self) -> int:
        """Descriptors the driver has handed over and the device has not fetched."""
        return (self.tail - self.fetch) % self.length

    def turn(self) -> Coroutine[Any, Any, bool]:
        return self.engine.turn(self)


class QueueEngine:
    def __init__(
        self,
        fn: int,
        rf: RegisterFile,
        num_queues: int,
        num_vectors: int,
        *,
        port: DmaPort,
        transmit: Callable[[bytes], bool],
        tx_permits: Callable[[], tx_offload.TxPermits],
        signal: Callable[[int], None],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        scheduler: Scheduler,
        events: ev.EventBus,
        on_error: Callable[[FnError, str], None],
        log: logging.Logger,
    ):
        self.fn = fn
        self.rf = rf
        self.log = log
        self.num_queues = num_queues
        self.num_vectors = num_vectors
        self.port = port
        self.transmit = transmit
        self.tx_permits = tx_permits
        self.signal = signal
        self.spawn = spawn
        self.scheduler = scheduler
        self.on_error = on_error
        self.tx = [RingState(q, rx=False) for q in range(num_queues)]
        self.rx = [RingState(q, rx=True) for q in range(num_queues)]
        self.in_error = False
        self.inject_fault: Injection | None = None  # engine_fault injection point: its next turn raises
        # live migration (model.core.migration): a quiesced direction starts no new frame
        self.tx_quiesced = self.rx_quiesced = False
        self._doorbell = events.topic(ev.Doorbell)
        self._fetched = events.topic(ev.DescriptorFetch)
        self._writeback = events.topic(ev.Writeback)
        self._stopped = events.topic(ev.QueueStopped)
        self._turn = events.topic(ev.Turn)
        self._delivery = events.topic(ev.Delivery)
        self._tx_offload = events.topic(ev.TxOffload)
        self._clear_counters()
        self._bind(rf)

    def _clear_counters(self) -> None:
        self.qerr = [0] * self.num_queues
        self.rx_nobuf = [0] * self.num_queues
        self.eitr = [0] * self.num_vectors
        self.last_irq = [-1e30] * self.num_vectors
        self.irq_scheduled = [False] * self.num_vectors
        self.irqs_raised = [0] * self.num_vectors
        self.irq_epoch = 0

    # -- registers -------------------------------------------------------------------
    def _bind(self, rf: RegisterFile) -> None:
        for reg, rings in ((regs.TDH, self.tx), (regs.RDH, self.rx)):  # RO: writes never reach here
            rf.bind(reg, self._reader(reg, lambda q, rings=rings: rings[q].head), None)
        fields = {
            regs.TDBAL: (self.tx, "base_lo"),
            regs.TDBAH: (self.tx, "base_hi"),
            regs.TDLEN: (self.tx, "length"),
            regs.RDBAL: (self.rx, "base_lo"),
            regs.RDBAH: (self.rx, "base_hi"),
            regs.RDLEN: (self.rx, "length"),
        }
        for reg, (rings, attr) in fields.items():
            rf.bind(
                reg,
                self._reader(reg, lambda q, rings=rings, attr=attr: getattr(rings[q], attr)),
                self._writer(reg, lambda q, v, rings=rings, attr=attr: self._set_geometry(rings[q], attr, v)),
            )
        for reg, rings in ((regs.TDT, self.tx), (regs.RDT, self.rx)):
            rf.bind(
                reg,
                self._reader(reg, lambda q, rings=rings: rings[q].tail),
                self._writer(reg, lambda q, v, rings=rings: self._doorbell_write(rings[q], v)),
            )
        for reg, rings in ((regs.TXDCTL, self.tx), (regs.RXDCTL, self.rx)):
            rf.bind(
                reg,
                self._reader(reg, lambda q, rings=rings: rings[q].ctl),
                self._writer(reg, lambda q, v, rings=rings, reg=reg: self._control(rings[q], v & reg.write_mask)),
            )
        rf.bind(regs.QRX_NOBUF, self._reader(regs.QRX_NOBUF, lambda q: self.rx_nobuf[q]), None)
        rf.bind(regs.QERR_COUNT, self._reader(regs.QERR_COUNT, lambda q: self.qerr[q]), None)
        rf.bind(
            regs.EITR,
            self._reader(regs.EITR, lambda v: self.eitr[v], self.num_vectors),
            self._writer(regs.EITR, self._set_eitr, self.num_vectors),
        )

    def _reader(self, reg: Register, get: Callable[[int], int], limit: int | None = None) -> BoundRead:
        """Bus read of element ``i`` of ``reg``; elements past ``limit`` are unimplemented."""

        def read(i: int) -> int:
            if i >= (self.num_queues if limit is None else limit):
                self.rf.unimplemented(reg.at(i), f"read of {reg.name}[{i}] beyond this function's allotment")
                return 0
            return get(i)

        return read

    def _writer(self, reg: Register, put: Callable[[int, int], None], limit: int | None = None) -> BoundWrite:
        def write(i: int, value: int, byte_mask: int) -> None:
            if i >= (self.num_queues if limit is None else limit):
                self.rf.unimplemented(reg.at(i), f"write to {reg.name}[{i}] beyond this function's allotment")
                return
            put(i, value & byte_mask)

        return write

    def _set_eitr(self, vector: int, value: int) -> None:
        self.eitr[vector] = value & regs.EITR.write_mask

    def _set_geometry(self, ring: RingState, attr: str, value: int) -> None:
        if ring.enabled:
            self._count_bad(ring, f"{attr} written while enabled: ignored")
            return
        setattr(ring, attr, value)

    def _control(self, ring: RingState, value: int) -> None:
        enable = bool(ENABLE.get(value))
        vector = VECTOR.get(value)
        if vector >= self.num_vectors:
            self._count_bad(ring, f"vector {vector} beyond the function's {self.num_vectors}")
            vector = 0
        if enable and not ring.enabled:
            if self.in_error:
                ring.ctl = VECTOR.put(ERR.put(0, QueueError.FN_ERROR), vector)
                self._refuse(ring, QueueError.FN_ERROR, "the function is in the error state: enable refused")
                return
            if not ring.valid_geometry():
                ring.ctl = VECTOR.put(ERR.put(0, QueueError.BAD_RING), vector)
                self._refuse(
                    ring, QueueError.BAD_RING, f"base {ring.base:#x} / length {ring.length} invalid: enable refused"
                )
                return
            ring.ctl = VECTOR.put(ENABLE.put(0, 1), vector)
            ring.head = ring.tail = 0
            ring.run = RingRun(self, ring)
            return
        if not enable and ring.enabled:
            self._cancel(ring)  # a disabled queue stops mid-frame: nothing more is sent
        ring.ctl = VECTOR.put(ENABLE.put(0, int(enable)), vector)

    def _doorbell_write(self, ring: RingState, tail: int) -> None:
        if self._doorbell:
            self._doorbell.emit(ev.Doorbell(self.fn, ring.index, ring.rx, tail, self.scheduler.turns))
        run = ring.run
        if run is None:
            self.qerr[ring.index] += 1
            if not ERR.get(ring.ctl):
                ring.ctl = ERR.put(ring.ctl, QueueError.DISABLED_DOORBELL)
            self.log.warning("%s: doorbell (tail %d) on a disabled queue: ignored", ring.name, tail)
            return
        if tail >= run.length:
            self._stop(run, QueueError.BAD_TAIL, f"tail {tail} beyond ring length {run.length}")
            return
        ring.tail = run.tail = tail
        if (not ring.rx or run.fifo) and not self._quiesced(ring.rx):
            self.scheduler.kick(run)

    def _count_bad(self, ring: RingState, why: str) -> None:
        self.qerr[ring.index] += 1
        self.log.warning("%s: %s", ring.name, why)

    def _refuse(self, ring: RingState, error: QueueError, why: str) -> None:
        self._count_bad(ring, why)
        if self._stopped:
            self._stopped.emit(ev.QueueStopped(self.fn, ring.index, ring.rx, int(error), why))

    def _cancel(self, ring: RingState) -> None:
        run, ring.run = ring.run, None
        if run is not None:
            run.cancelled = True
            run.fifo.clear()

    def _stop(self, run: RingRun, error: QueueError, why: str) -> None:
        """Stop the ring ``run`` belongs to (if it still does) with ``error`` and raise its vector."""
        ring = run.ring
        if ring.run is not run:
            return
        self._cancel(ring)
        ring.ctl = ERR.put(ENABLE.put(ring.ctl, 0), error)
        self._refuse(ring, error, why)
        self.raise_irq(run.vector)

    def reset(self) -> None:
        """Function reset: queues stopped and cleared, in-flight work cancelled."""
        for ring in self.tx + self.rx:
            self._cancel(ring)
            ring.__init__(ring.index, ring.rx)
        self.in_error = False
        self.inject_fault = None
        self.tx_quiesced = self.rx_quiesced = False
        epoch = self.irq_epoch + 1
        self._clear_counters()
        self.irq_epoch = epoch

    def fail(self) -> None:
        """The function entered the error state: every queue stops with FN_ERROR."""
        self.in_error = True
        for ring in self.tx + self.rx:
            if ring.run is not None:
                self._stop(ring.run, QueueError.FN_ERROR, "the function entered the error state")

    # -- live migration (model.core.migration) ------------------------------------------------
    def _quiesced(self, rx: bool) -> bool:
        return self.rx_quiesced if rx else self.tx_quiesced

    def quiesce(self, tx: bool, rx: bool) -> None:
        """Start no new TX frame (``tx``) / RX frame (``rx``): a turn in progress finishes the frame
        it is on (its write-back included) and ends; RX frames arriving meanwhile are dropped."""
        self.tx_quiesced, self.rx_quiesced = tx, rx
        if not tx or not rx:
            self._kick_all()

    def busy(self) -> bool:
        """A DMA turn of this function is running (quiescing waits until none is)."""
        return any(ring.run is not None and ring.run.active for ring in self.tx + self.rx)

    def drop_waiting_rx(self) -> int:
        """RX quiesced and drained: frames still waiting for buffers are dropped and counted."""
        dropped = 0
        for ring in self.rx:
            if ring.run is not None and ring.run.fifo:
                dropped += len(ring.run.fifo)
                ring.run.fifo.clear()
        if dropped:
            self.count("RX_DROPS", dropped)
        return dropped

    def _kick_all(self) -> None:
        for ring in self.tx + self.rx:
            run = ring.run
            if run is not None and not self._quiesced(ring.rx) and (run.fifo if ring.rx else run.posted() or run.cache):
                self.scheduler.kick(run)

    def save(self) -> list[int]:
        """The QUEUES section (datasheet.migration): ring registers with the device's head, the
        per-queue counters and EITR. Descriptors fetched but not completed are not saved: the
        device that loads the state fetches again from the head."""
        words = [self.num_queues]
        for q in range(self.num_queues):
            for ring in (self.tx[q], self.rx[q]):
                words += [ring.base_lo, ring.base_hi, ring.length, ring.ctl, ring.head, ring.tail]
            words += [self.qerr[q], self.rx_nobuf[q]]
        return [*words, self.num_vectors, *self.eitr]

    def load(self, words: list[int]) -> None:
        """Apply a QUEUES section checked by the caller (sizes match this engine): every ring stops,
        takes the saved registers, and an enabled one gets a run at the saved head (fetch = head,
        nothing cached), quiesced like the rest of the function until resumed. A blob's contents
        are untrusted: an enabled ring whose geometry, head or tail is invalid is stopped with
        BAD_RING, as an enable with that geometry would be."""
        pos = 1
        for q in range(self.num_queues):
            self.qerr[q], self.rx_nobuf[q] = words[pos + 2 * RING_WORDS : pos + 2 * RING_WORDS + 2]
            for ring in (self.tx[q], self.rx[q]):
                self._cancel(ring)
                ring.base_lo, ring.base_hi, ring.length, ring.ctl, ring.head, ring.tail = words[pos : pos + RING_WORDS]
                pos += RING_WORDS
                if VECTOR.get(ring.ctl) >= self.num_vectors:
                    self._count_bad(ring, f"loaded with vector {VECTOR.get(ring.ctl)}: vector 0")
                    ring.ctl = VECTOR.put(ring.ctl, 0)
                if ring.enabled and ring.valid_geometry() and ring.head < ring.length and ring.tail < ring.length:
                    run = ring.run = RingRun(self, ring)
                    run.head = run.fetch = ring.head
                    run.tail = ring.tail
                elif ring.enabled:
                    ring.ctl = ERR.put(ENABLE.put(ring.ctl, 0), QueueError.BAD_RING)
                    where = f"base {ring.base:#x}, length {ring.length}, head {ring.head}, tail {ring.tail}"
                    self._refuse(ring, QueueError.BAD_RING, f"loaded enabled with {where}: stopped")
            pos += 2
        self.eitr = [v & regs.EITR.write_mask for v in words[pos + 1 : pos + 1 + self.num_vectors]]

    # -- statistics --------------------------------------------------------------------
    def count(self, name: str, n: int = 1) -> None:
        self.rf.add(STAT[name], n)

    # -- interrupts with moderation ---------------------------------------------------------
    def raise_irq(self, vector: int) -> None:
        """Signal ``vector``, at most once per EITR interval (later events coalesce)."""
        if self.irq_scheduled[vector]:
            return
        now = get_sim_time("ns")
        wait = self.last_irq[vector] + self.eitr[vector] * 1000 - now
        if wait <= 0:
            self._fire(vector, now)
        else:
            self.irq_scheduled[vector] = True
            self.spawn(self._fire_later(vector, wait, self.irq_epoch))

    def _fire(self, vector: int, now: float) -> None:
        self.last_irq[vector] = now
        self.irqs_raised[vector] += 1
        self.signal(vector)

    async def _fire_later(self, vector: int, wait: float, epoch: int) -> None:
        await Timer(max(math.ceil(wait * 1000), 1), "ps")  # never early
        if epoch == self.irq_epoch:  # a function reset meanwhile drops it
            self.irq_scheduled[vector] = False
            self._fire(vector, get_sim_time("ns"))

    # -- DMA: every request of a run goes through these two ---------------------------------
    async def _dma_read(self, run: RingRun, addr: int, length: int) -> bytes:
        if run.cancelled:
            raise Cancelled()
        if not self.port.bus_master_enable:
            raise DmaFault(f"read of {length} bytes at {addr:#x}: bus mastering disabled")
        failure = None
        try:
            data = await self.port.dma_read(addr, length)
        except Exception as exc:  # noqa: BLE001 -- any failure of a memory request is a DMA fault of this queue
            failure = exc
        if run.cancelled:
            raise Cancelled()
        if failure is not None:
            raise DmaFault(f"read of {length} bytes at {addr:#x}: {failure}")
        return bytes(data)

    async def _dma_write(self, run: RingRun, addr: int, data: bytes) -> None:
        if run.cancelled:
            raise Cancelled()
        if not self.port.bus_master_enable:
            raise DmaFault(f"write at {addr:#x}: bus mastering disabled")
        failure = None
        try:
            await self.port.dma_write(addr, data)
        except Exception as exc:  # noqa: BLE001
            failure = exc
        if run.cancelled:
            raise Cancelled()
        if failure is not None:
            raise DmaFault(f"write of {len(data)} bytes at {addr:#x}: {failure}")

    # -- a turn of the DMA engine ------------------------------------------------------------
    async def turn(self, run: RingRun) -> bool:
        """One turn for ``run``; True if it has more work. Never raises."""
        if self._quiesced(run.ring.rx):
            return False  # resume() kicks it again
        try:
            if self.inject_fault is not None:
                self.inject_fault, injection = None, self.inject_fault
                injection.fire(fn=self.fn)
                raise InjectedFault(f"injected fault in {run.ring.name}")
            more, done = await (self._rx_turn(run) if run.ring.rx else self._tx_turn(run))
            if self._turn:
                self._turn.emit(ev.Turn(self.fn, run.ring.index, run.ring.rx, run.turn_number, done))
            return more
        except Cancelled:
            return False
        except DmaFault as exc:
            self._stop(run, QueueError.DMA_FAULT, str(exc))
            self.count("RX_ERRORS" if run.ring.rx else "TX_ERRORS")
            return False
        except Exception as exc:  # noqa: BLE001 -- the guard: a fault of the model, contained in this function
            self.on_error(FnError.ENGINE, f"{run.ring.name}: {type(exc).__name__}: {exc}")
            return False

    async def _fetch(self, run: RingRun) -> bool:
        """Prefetch up to a batch of posted descriptors into ``run.cache``; False if none."""
        first = run.fetch
        n = min(run.posted(), run.length - first, device.DESC_FETCH_BATCH)
        if n == 0:
            return False
        raw = await self._dma_read(run, run.base + first * d.DESC_SIZE, n * d.DESC_SIZE)
        run.cache.extend(d.parse_read(raw[i * d.DESC_SIZE : (i + 1) * d.DESC_SIZE]) for i in range(n))
        run.fetch = (first + n) % run.length
        if self._fetched:
            self._fetched.emit(ev.DescriptorFetch(self.fn, run.ring.index, run.ring.rx, first, n))
        return True

    async def _complete(self, run: RingRun, done: Sequence[tuple[int, int, int]]) -> None:
        """Write back ``done`` -- (bytes 0-7, length, status) per descriptor, starting at the
        head -- in place and advance the head."""
        if not done:
            return
        out = b"".join(word.to_bytes(8, "little") + d.writeback(length, status) for word, length, status in done)
        first = run.head
        split = min(len(done), run.length - first) * d.DESC_SIZE
        await self._dma_write(run, run.base + first * d.DESC_SIZE, out[:split])
        if split < len(out):  # the span wraps the ring
            await self._dma_write(run, run.base, out[split:])
        run.head = run.ring.head = (first + len(done)) % run.length
        if self._writeback:
            for k, (_, length, status) in enumerate(done):
                self._writeback.emit(
                    ev.Writeback(self.fn, run.ring.index, run.ring.rx, (first + k) % run.length, length, status)
                )

    # -- TX -------------------------------------------------------------------------------
    async def _turn_writing_back(self, run: RingRun, work: Callable[[list], Awaitable[int]]) -> int:
        """Run a turn's ``work(written)``, which returns the descriptors it processed and owes
        their write-backs through :meth:`_owe`; then write back what is still owed and raise
        the queue's vector if anything was done. A DMA fault writes back what was owed first."""
        written: list[tuple[int, int, int]] = []
        try:
            done = await work(written)
        except DmaFault:
            await self._complete_best_effort(run, written)
            raise
        await self._complete(run, written)
        if done:
            self.raise_irq(run.vector)
        return done

    async def _owe(self, run: RingRun, written: list, entries: Sequence[tuple[int, int, int]]) -> None:
        """Owe the write-backs ``entries``; write them back once ``WB_BATCH`` are owed."""
        written += entries
        if len(written) >= device.WB_BATCH:
            batch = written[:]
            written.clear()
            await self._complete(run, batch)

    async def _tx_turn(self, run: RingRun) -> tuple[bool, int]:
        async def work(written: list) -> int:
            done = 0
            while done < device.QUEUE_BUDGET and not (self.tx_quiesced and not run.staged):
                if not run.cache and not await self._fetch(run):
                    break
                desc = run.cache.popleft()
                run.staged.append(desc)
                ends = desc[2] & d.TX_CMD_EOP.mask and not desc[2] & d.TX_CMD_CTX.mask
                if not ends and len(run.staged) < device.TX_MAX_FRAME_DESCS:
                    continue
                frame, run.staged = run.staged, []
                try:
                    results = await self._transmit(run, frame)
                except DmaFault:  # its buffer read faulted: its descriptors come back ERR_DMA
                    written += [(desc[0], 0, d.STATUS_DD.mask | d.STATUS_ERR_DMA.mask) for desc in frame]
                    raise
                done += len(frame)
                await self._owe(run, written, results)
            return done

        done = await self._turn_writing_back(run, work)
        return bool(run.cache) or run.posted() > 0, done

    async def _complete_best_effort(self, run: RingRun, done: list[tuple[int, int, int]]) -> None:
        """Before a DMA fault stops the queue: write back what the turn completed (best effort)."""
        try:
            await self._complete(run, done)
        except DmaFault:
            pass

    async def _transmit(self, run: RingRun, descs: Sequence[tuple[int, int, int, int]]) -> list[tuple[int, int, int]]:
        """Send one frame made of ``descs`` (offloads applied); return each descriptor's write-back."""
        plan = tx_offload.plan(descs, self.tx_permits())
        if plan.error:
            self.qerr[run.ring.index] += 1
            self.count("TX_ERRORS")
            self.log.warning("%s: bad frame (%s): not sent", run.ring.name, plan.reason)
            self._publish_tx_offload(run, plan, 0)
            return [(desc[0], 0, d.STATUS_DD.mask | plan.error) for desc in descs]
        data = b"".join([await self._dma_read(run, addr, length) for addr, length in plan.buffers])
        frames = tx_offload.apply(plan, data)
        delivered = [self.transmit(frame) for frame in frames]
        for frame, ok in zip(frames, delivered):
            if ok:
                self.count("TX_PACKETS")
                self.count("TX_BYTES", len(frame))
        self._publish_tx_offload(run, plan, len(frames))
        status = d.STATUS_DD.mask | (0 if all(delivered) else d.STATUS_DROPPED.mask)
        return [(desc[0], 0 if desc[2] & d.TX_CMD_CTX.mask else desc[1], status) for desc in descs]

    def _publish_tx_offload(self, run: RingRun, plan: tx_offload.TxPlan, segments: int) -> None:
        if self._tx_offload and plan.asks_offload:
            self._tx_offload.emit(
                ev.TxOffload(
                    self.fn,
                    run.ring.index,
                    plan.cmd,
                    plan.context,
                    plan.length,
                    segments,
                    plan.vlan,
                    plan.vlan_overridden,
                    None if plan.offload_error is None else int(plan.offload_error),
                    plan.error,
                )
            )

    # -- RX -------------------------------------------------------------------------------
    def deliver(self, queue: int, rx: RxResult) -> bool:
        """A frame for this function from the switch, after the receive offloads (``rx``), for
        RX queue ``queue`` (queue 0 if beyond the allotment); False if dropped for lack of buffers
        or because the function's RX is quiesced for migration (counted in STAT_RX_DROPS only)."""
        q = queue if queue < self.num_queues else 0
        run = self.rx[q].run
        accepted = run is not None and run.free() > len(run.fifo) and not self.rx_quiesced
        if accepted:
            run.fifo.append(rx)
            self.scheduler.kick(run)
        else:
            if not self.rx_quiesced:
                self.rx_nobuf[q] += 1
            self.count("RX_DROPS")
        if self._delivery:
            vlan = rx.vlan if rx.status & d.STATUS_VP.mask else None
            self._delivery.emit(
                ev.Delivery(self.fn, q, rx.frame, accepted, rx.rss_hash, int(rx.rss_type), vlan, rx.status)
            )
        return accepted

    async def _rx_turn(self, run: RingRun) -> tuple[bool, int]:
        async def work(written: list) -> int:
            done = 0
            while run.fifo and done < device.QUEUE_BUDGET and not self.rx_quiesced:
                rx = run.fifo.popleft()
                frame = rx.frame
                used, pos = [], 0
                while pos < len(frame) or not used:
                    if not run.cache and not await self._fetch(run):
                        break  # out of buffers mid-frame: truncate
                    addr, size, _, _ = run.cache.popleft()
                    chunk = frame[pos : pos + size]
                    if chunk:
                        await self._dma_write(run, addr, chunk)
                    used.append((0, len(chunk), d.STATUS_DD.mask))
                    pos += len(chunk)
                if not used:
                    self.rx_nobuf[run.ring.index] += 1
                    self.count("RX_DROPS")
                    continue
                _, length, status = used[-1]
                status |= d.STATUS_EOP.mask | rx.status | (d.STATUS_TRUNC.mask if pos < len(frame) else 0)
                used[-1] = (rx.info_word, length, status)
                done += len(used)
                if pos < len(frame):
                    self.count("RX_ERRORS")
                self.count("RX_PACKETS")
                self.count("RX_BYTES", pos)
                await self._owe(run, written, used)
            return done

        done = await self._turn_writing_back(run, work)
        return bool(run.fifo), done

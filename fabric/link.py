"""The TLP fabric's link: cocotbext-pcie's ``SimPort`` pair, with an idle timer that sleeps.

A stock port wakes every 10 us of simulated time (``fc_idle_timer_steps``) to send
flow-control updates, whether or not anything moves: a 100 ms spec wait costs ~20,000
wake-ups.  :class:`SleepingSimPort` runs the same timer, on the same 10 us grid, only
while the link carries something (a TLP queued, unacknowledged, received or holding
credits); an idle link sleeps until the next TLP is queued or arrives.  Credits still
flow as before: a receiver that releases credits sends its UpdateFC at once
(``start_fc_update_timer``), which is what a blocked transmitter waits for; the idle
timer only repeats updates the other side already has (PCIe 6.0 §2.6.1.2 refreshes them
for links that can lose DLLPs, which a simulated link cannot).

The bridges and devices of cocotbext-pcie build their stock ``SimPort`` in their
constructors; :func:`swap_port` puts another port in its place (same flow-control
credits, same link speed and width) before either has run, and :func:`retire` keeps the
replaced one silent.  A port hands up what it receives as :class:`~fabric.tlp.CheckedTlp`
(cheaper copy, type look-ups and checks, same results), and spends fewer scheduler rounds per
packet than the stock one, with the same packets at the same simulated times: its
transmitter wakes on one event, the packets in flight share one coroutine, and credits it
has are taken without waiting on an event that is already set.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

import cocotb
from cocotb.queue import QueueEmpty, QueueFull
from cocotb.triggers import Event, NullTrigger, Timer
from cocotb.utils import get_sim_time
from cocotbext.pcie.core.dllp import Dllp, DllpType, FcType
from cocotbext.pcie.core.port import Port, SimPort

from simtask import start_eagerly

from .tlp import CheckedTlp


class FcDllps(NamedTuple):
    """The flow-control DLLPs of one credit type (PCIe 6.0 §3.4.2) and where they come from."""

    init_fc1: DllpType
    init_fc2: DllpType
    update_fc: DllpType
    hdr: str  # the header and data credit counters of a channel (``fc_ch.ph`` ...)
    data: str
    due: str  # when the channel's next UpdateFC of the type is due (``fc_ch.next_fc_p_tx`` ...)
    after: FcType  # the type initialised next


#: each credit type's DLLPs, in the order flow control initialises and updates them
FC_DLLPS = {
    FcType.P: FcDllps(
        DllpType.INIT_FC1_P, DllpType.INIT_FC2_P, DllpType.UPDATE_FC_P, "ph", "pd", "next_fc_p_tx", FcType.NP
    ),
    FcType.NP: FcDllps(
        DllpType.INIT_FC1_NP, DllpType.INIT_FC2_NP, DllpType.UPDATE_FC_NP, "nph", "npd", "next_fc_np_tx", FcType.CPL
    ),
    FcType.CPL: FcDllps(
        DllpType.INIT_FC1_CPL, DllpType.INIT_FC2_CPL, DllpType.UPDATE_FC_CPL, "cplh", "cpld", "next_fc_cpl_tx", FcType.P
    ),
}
#: a timer interval past any simulation (2**62 ps is 53 days)
FOREVER_STEPS = 1 << 62
#: flight timers a port keeps, by length (:meth:`SleepingSimPort.flight`)
WIRE_TIMERS = 64


def fc_init_of(port: Port) -> list[list[int]]:
    """The initial credit allocation of each virtual channel of ``port`` (``fc_init``)."""
    return [[c.rx_initial_allocation for c in (ch.ph, ch.pd, ch.nph, ch.npd, ch.cplh, ch.cpld)] for ch in port.fc_state]


def retire(port: Port) -> None:
    """Silence a stock port that was replaced before it ran: it sends no InitFC (its link
    never trains) and its idle timer sleeps past any simulation; its other coroutines wait
    on events nobody sets."""
    port.fc_initialized = True
    port.fc_idle_timer_steps = FOREVER_STEPS


def swap_port(old: Port, new: Port, install: Callable[[Any], None]) -> Port:
    """Install ``new`` in place of ``old`` (``install`` is the owner's ``set_port`` /
    ``set_downstream_port``), with ``old``'s link speed and width; retire ``old``."""
    new.max_link_speed = old.max_link_speed
    new.max_link_width = old.max_link_width
    install(new)
    retire(old)
    return new


class LatencyTimer:
    """One of a port's latency timers (PCIe 6.0 §3.6.3.1 ACK/NAK, §3.4.2 UpdateFC): started,
    it calls ``fire`` once ``steps()`` simulation steps later; started again while it runs, it
    carries on (``Port.start_ack_latency_timer`` ...). The stock port starts a task for each
    run, this one long-lived coroutine waits for the next start (the same steps, a task less
    per TLP); stopping it ends the run in progress (the stock ``kill``)."""

    def __init__(self, steps: Callable[[], int], fire: Callable[[], None]):
        self.steps = steps
        self.fire = fire
        self.running = False
        self.started = Event()
        self._timer: Timer | None = None  # the last run's, awaited again while its length holds
        self._timer_steps = 0
        self.task = cocotb.start_soon(self._run())

    def start(self) -> None:
        if not self.running:
            self.running = True
            self.started.set()

    def stop(self) -> None:
        if self.running:
            self.task.cancel()
            self.running = False
            self.started.clear()
            self.task = cocotb.start_soon(self._run())

    async def _run(self) -> None:
        while True:
            await self.started.wait()
            self.started.clear()
            await self._timer_of(max(self.steps(), 1))
            self.running = False
            self.fire()

    def _timer_of(self, steps: int) -> Timer:
        """A ``Timer`` of ``steps`` steps: the last one again if it has that length (a fired
        ``Timer`` can be awaited again; only this coroutine awaits it)."""
        if self._timer_steps != steps:
            self._timer, self._timer_steps = Timer(steps, "step"), steps
        return self._timer


class TransmitQueue:
    """A port's transmit queue (``Port.tx_queue``, a cocotb ``Queue(1)``) with the same
    behaviour: a FIFO whose full state makes a sender wait on an event of its own, the first
    waiting sender still there woken when the transmitter takes a packet, and a sender that
    finds the queue full again queues up again. cocotb's ``Queue`` knows a waiting sender by
    the task it runs in (a sender whose task has ended is skipped); a sender started eagerly
    (:mod:`simtask`) runs in another coroutine's task, which may end first, so here a
    sender is skipped when its own wait ends without its turn (cancelled or killed)."""

    def __init__(self, maxsize: int = 1):
        self.maxsize = maxsize
        self.items: deque[Any] = deque()
        self.putters: deque[tuple[Event, list[bool]]] = deque()  # (its turn, [gone])

    def qsize(self) -> int:
        return len(self.items)

    def empty(self) -> bool:
        return not self.items

    def full(self) -> bool:
        return 0 < self.maxsize <= len(self.items)

    async def put(self, item: Any) -> None:
        while self.full():
            turn, gone = Event(), [False]
            self.putters.append((turn, gone))
            try:
                await turn.wait()
            except BaseException:
                gone[0] = True
                raise
        self.items.append(item)

    def put_nowait(self, item: Any) -> None:
        if self.full():
            raise QueueFull()
        self.items.append(item)

    def get_nowait(self) -> Any:
        if not self.items:
            raise QueueEmpty()
        item = self.items.popleft()
        while self.putters:
            turn, gone = self.putters.popleft()
            if not gone[0]:
                turn.set()
                break
        return item


class WakingEvent(Event):
    """An ``Event`` that also sets ``wakes`` when it is set."""

    def __init__(self, wakes: Event):
        super().__init__()
        self.wakes = wakes

    def set(self, data: object | None = None) -> None:
        super().set(data)
        self.wakes.set()


class SleepingSimPort(SimPort):
    """A ``SimPort`` whose flow-control idle timer runs only while the link is busy."""

    def __init__(self, fc_init: list[list[int]]):
        super().__init__(fc_init=fc_init)
        # the transmitter's three reasons to wake, each also setting the one event it waits on
        self.tx_wake = Event()
        self.tx_queue_sync, self.send_ack, self.send_fc = (WakingEvent(self.tx_wake) for _ in range(3))
        self.traffic = Event()  # set when a TLP is queued or arrives
        self.tx_queue = TransmitQueue(1)
        self._grid_origin = get_sim_time("step")
        self.idle_wakeups = 0  # idle timer expiries (what a stock port does every 10 us)
        self.wire: deque[tuple[int, Any]] = deque()  # in flight to the other port: (arrival step, packet)
        self.receiving = False  # a received TLP is being handed up (the stock receive task's work)
        self.ack_latency_timer = LatencyTimer(lambda: self.max_latency_timer_steps, self._ack_latency_expired)
        self.fc_update_timer = LatencyTimer(lambda: self.max_latency_timer_steps, self.send_fc.set)
        self._on_wire = Event()
        self.tx_timers: dict[int, Timer] = {}  # the transmitter's, by duration (serialising)
        self.wire_timers: dict[int, Timer] = {}  # the wire's link delay (flight)
        cocotb.start_soon(self._run_wire())

    def busy(self) -> bool:
        """Something is on this side of the link: queued or unacknowledged TLPs, received
        TLPs not yet handed up or still holding flow-control credits."""
        return (
            not self.tx_queue.empty()
            or not self.retry_buffer.empty()
            or not self.rx_queue.empty()
            or any(ch.rx_release_fc_dict for ch in self.fc_state)
        )

    async def send(self, pkt: Any) -> None:
        """``Port.send``; when the link is initialised and has the credits, they are taken at
        once: the stock flow-control gate waits on its already-set ``initialized`` event first,
        which suspends the sender for a scheduler round even then. A sender that finds the
        transmit queue full waits its turn (:class:`TransmitQueue`)."""
        self.traffic.set()
        pkt.release_fc()
        channel = self.fc_state[self.classify_tlp_vc(pkt)]
        credit_type, dc = pkt.get_fc_type(), pkt.get_data_credits()
        if channel.initialized.is_set() and channel.tx_has_credit(credit_type, dc):
            channel.tx_consume_fc(credit_type, dc)
        else:
            await channel.tx_tlp_fc_gate(pkt)
        await self.tx_queue.put(pkt)
        self.tx_queue_sync.set()

    async def ext_recv(self, pkt: Any) -> None:
        """``Port.ext_recv``; a TLP in sequence is taken as the stock port takes it (sequence
        number, ACK timer, flow-control credits, receive queue), its copy made as a
        :class:`~fabric.tlp.CheckedTlp` (the same fields; its type and checks looked up in
        tables). DLLPs, duplicates and TLPs out of sequence take the stock path."""
        if isinstance(pkt, Dllp) or pkt.seq != self.next_recv_seq:
            if not isinstance(pkt, Dllp):
                self.traffic.set()
            await super().ext_recv(pkt)
            return
        self.traffic.set()
        self.log.debug("Receive TLP %s", pkt)
        self.next_recv_seq = (self.next_recv_seq + 1) & 0xFFF
        self.nak_scheduled = False
        self.start_ack_latency_timer()
        tlp = CheckedTlp.copy_of(pkt)
        self.fc_state[self.classify_tlp_vc(tlp)].rx_process_tlp_fc(tlp)
        self.rx_queue.put_nowait(tlp)
        if not self.receiving:
            self.receiving = True
            start_eagerly(self._receive())

    async def _run_receive(self) -> None:
        """The stock receive task is not needed: :meth:`_receive` does its work."""

    async def _receive(self) -> None:
        """``Port._run_receive``: hand each received TLP up in turn (``rx_handler``), started
        eagerly by the TLP's arrival (:func:`simtask.start_eagerly`) instead of by a task
        waiting on the receive queue; a TLP that arrives while one is still being handed up
        waits in the queue, as before."""
        try:
            while not self.rx_queue.empty():
                tlp = self.rx_queue.get_nowait()
                if self.rx_handler is None:
                    raise Exception("Receive handler not set")  # cocotbext-pcie's own exception
                await self.rx_handler(tlp)
        finally:
            self.receiving = False

    def start_ack_latency_timer(self) -> None:
        self.ack_latency_timer.start()

    def stop_ack_latency_timer(self) -> None:
        self.ack_latency_timer.stop()

    def _ack_latency_expired(self) -> None:
        """``Port._run_ack_latency_timer``'s end: ACK what arrived, unless a NAK is due."""
        if not self.nak_scheduled:
            self.send_ack.set()

    def start_fc_update_timer(self) -> None:
        self.fc_update_timer.start()

    def stop_fc_update_timer(self) -> None:
        self.fc_update_timer.stop()

    async def _run_transmit(self) -> None:
        """``Port._run_transmit``: the same packets in the same order (:meth:`next_packet`),
        waiting for work on :attr:`tx_wake` instead of ``First`` of its three events, which
        starts and cancels three tasks on every wake-up (several per TLP)."""
        await NullTrigger()
        while True:
            while (
                self.tx_queue.empty()
                and not self.send_ack.is_set()
                and not self.send_fc.is_set()
                and self.fc_initialized
            ):
                self.tx_queue_sync.clear()
                self.tx_wake.clear()
                await self.tx_wake.wait()
            pkt = self.next_packet()
            if pkt:
                await self.handle_tx(pkt)

    def next_packet(self) -> Any:
        """What ``Port._run_transmit`` sends next (its body, unchanged): an ACK/NAK, a flow-control
        update or initialisation DLLP, else the next queued TLP (numbered and kept for replay)."""
        pkt = None
        if self.send_ack.is_set():
            self.send_ack.clear()
            if self.nak_scheduled:
                pkt = Dllp.create_nak((self.next_recv_seq - 1) & 0xFFF)
            else:
                pkt = Dllp.create_ack((self.next_recv_seq - 1) & 0xFFF)
        elif self.send_fc.is_set() or (not self.fc_initialized and self.tx_queue.empty()):
            if self.send_fc.is_set():
                pkt = self._fc_update()
            if not self.fc_initialized and not pkt:
                pkt = self._fc_init()
            if not pkt:
                self.send_fc.clear()  # no more DLLPs to send
        if pkt is not None:
            self.log.debug("Send DLLP %s", pkt)
        elif not self.tx_queue.empty():
            pkt = self.tx_queue.get_nowait()
            pkt.seq = self.next_transmit_seq
            self.log.debug("Send TLP %s", pkt)
            self.next_transmit_seq = (self.next_transmit_seq + 1) & 0xFFF
            self.retry_buffer.put_nowait(pkt)
        return pkt

    def _fc_update(self) -> Dllp | None:
        """The next UpdateFC DLLP due on an active, initialised virtual channel, if any."""
        for fc_ch in self.fc_state:
            if not fc_ch.active or not fc_ch.fi2:
                continue
            sim_time = get_sim_time()
            for fc in FC_DLLPS.values():
                if getattr(fc_ch, fc.due) <= sim_time:
                    setattr(fc_ch, fc.due, sim_time + self.fc_update_steps)
                    return self._fc_dllp(fc.update_fc, fc_ch, fc)
        return None

    def _fc_init(self) -> Dllp:
        """The next InitFC1/InitFC2 DLLP of flow-control initialisation (PCIe 6.0 §3.4)."""
        fc_ch = self.fc_state[self.fc_init_vc]
        fc = FC_DLLPS[self.fc_init_type]
        pkt = self._fc_dllp(fc.init_fc2 if fc_ch.fi1 else fc.init_fc1, fc_ch, fc)
        self.fc_init_type = fc.after
        if fc.after == FcType.P:
            for k in range(8):  # the next active VC that has not finished initialisation
                vc = (self.fc_init_vc + 1 + k) % 8
                if self.fc_state[vc].active and not self.fc_state[vc].fi2:
                    self.fc_init_vc = vc
                    break
        # flow control is initialised once every active VC is
        self.fc_initialized = all(not ch.active or ch.fi2 for ch in self.fc_state)
        return pkt

    def _fc_dllp(self, kind: DllpType, fc_ch: Any, fc: FcDllps) -> Dllp:
        """A flow-control DLLP of ``kind`` advertising the credits ``fc_ch`` allocated to ``fc``'s type."""
        pkt = Dllp()
        pkt.vc = self.fc_init_vc
        pkt.type = kind
        pkt.hdr_fc = getattr(fc_ch, fc.hdr).rx_credits_allocated
        pkt.data_fc = getattr(fc_ch, fc.data).rx_credits_allocated
        return pkt

    async def handle_tx(self, pkt: Any) -> None:
        """``SimPort.handle_tx``: the packet's serialisation time on this side, then the link
        delay to the other port. The stock port starts a task per packet for the delay; here
        the packets in flight travel in order on one coroutine (:meth:`_run_wire`), each
        arriving at the step the stock task would deliver it."""
        await self.serialising(max(int(pkt.get_wire_size() * self.symbol_period * self.time_scale), 1))
        if self.other is None:
            raise Exception("Port not connected")  # cocotbext-pcie's own exception
        self.wire.append((get_sim_time("step") + max(self.link_delay_steps, 1), pkt))
        self._on_wire.set()

    def serialising(self, steps: int) -> Timer:
        """The transmitter's timer of ``steps`` steps: one per packet size, awaited again for
        each packet of that size (a fired ``Timer`` can be; only the transmitter awaits these)."""
        timer = self.tx_timers.get(steps)
        if timer is None:
            timer = self.tx_timers[steps] = Timer(steps, "step")
        return timer

    def flight(self, steps: int) -> Timer:
        """The wire's timer of ``steps`` steps, kept and awaited again by length (the link
        delay's: a packet that found the wire empty; shorter ones: what is left of a packet's
        flight when the one before it arrives, up to :data:`WIRE_TIMERS` lengths); only the
        wire's coroutine awaits them."""
        timer = self.wire_timers.get(steps)
        if timer is None:
            timer = Timer(steps, "step")
            if len(self.wire_timers) < WIRE_TIMERS:
                self.wire_timers[steps] = timer
        return timer

    async def _run_wire(self) -> None:
        """Deliver each packet in flight to the other port at its arrival step."""
        while True:
            while not self.wire:
                self._on_wire.clear()
                await self._on_wire.wait()
            arrival, pkt = self.wire[0]
            now = get_sim_time("step")
            if arrival > now:
                await self.flight(arrival - now)
            self.wire.popleft()
            await self.other.ext_recv(pkt)

    async def _run_fc_update_idle_timer(self) -> None:
        period = max(self.fc_idle_timer_steps, 1)
        while True:
            if self.busy():
                await Timer(period, "step")
            else:
                self.traffic.clear()
                await self.traffic.wait()
                # resume on the grid the stock timer keeps: the next multiple of the period
                now = get_sim_time("step")
                await Timer(period - (now - self._grid_origin) % period, "step")
            self.idle_wakeups += 1
            self.send_fc.set()


def sleeping_twin(port: Port) -> SleepingSimPort:
    """A :class:`SleepingSimPort` with ``port``'s flow-control credits."""
    return SleepingSimPort(fc_init_of(port))

"""The uplink port: the NIC's Ethernet link to a link partner played by the testbench.

Direction names are the NIC's: *receive* is partner -> NIC (:meth:`UplinkPort.send`
puts a frame on the wire towards the NIC), *transmit* is NIC -> partner (the switch
calls :meth:`UplinkPort.transmit`; the partner takes frames with :meth:`UplinkPort.recv`).

* The wire into the NIC is serialised: each frame occupies it for preamble + SFD
  (8 bytes), the frame padded to 60 bytes, FCS (4) and the inter-frame gap (12)
  at the link speed; one Timer per frame. Frames sent concurrently queue behind
  each other in call order.
* The NIC's side is not timed: a transmitted frame is queued for the partner at
  once, up to ``tx_depth`` frames (a partner that never reads costs bounded
  memory; overflow is dropped and counted).
* Link down: frames in either direction are dropped and counted, including a
  frame on the wire when the link goes down. :meth:`set_link` tells the device core
  (``link_changed``), which shows it in every function's STATUS.LINK_UP and raises the
  PF's misc vector when PF_IMR.LSC is set. The link starts up.

Frames are published as :class:`~model.events.UplinkReceive` and
:class:`~model.events.UplinkTransmit` events.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cocotb.queue import Queue
from cocotb.triggers import SimTimeoutError, Timer, with_timeout
from cocotb.utils import get_sim_time

from datasheet import device
from model import events as ev

if TYPE_CHECKING:
    import logging

#: bytes a frame occupies on the wire besides its own: preamble + SFD, FCS, inter-frame gap
WIRE_OVERHEAD = 8 + 4 + 12
MIN_FRAME_NO_FCS = 60
TX_DEPTH = 4096


def sim_time_ps() -> int:
    return round(get_sim_time("ps"))


async def sleep_ps(ps: int) -> None:
    await Timer(ps, "ps")


@dataclass
class UplinkCounters:
    rx_frames: int = 0  # partner -> NIC, handed to the switch
    rx_link_down: int = 0  # partner -> NIC, dropped: link down
    tx_frames: int = 0  # NIC -> partner, queued for the partner
    tx_link_down: int = 0  # NIC -> partner, dropped: link down
    tx_overflow: int = 0  # NIC -> partner, dropped: partner's queue full


class UplinkPort:
    """``forward(frame)`` hands a received frame to the switch; ``link_changed(up)`` tells the
    device core the link went up or down; ``now_ps()`` and ``sleep_ps(ps)`` are the clock
    (the simulator's by default)."""

    def __init__(
        self,
        *,
        forward: Callable[[bytes], None],
        link_changed: Callable[[bool], None],
        events: ev.EventBus,
        log: logging.Logger,
        speed_mbps: int = device.UPLINK_SPEED_MBPS,
        tx_depth: int = TX_DEPTH,
        now_ps: Callable[[], int] = sim_time_ps,
        sleep: Callable[[int], Awaitable[None]] = sleep_ps,
    ):
        if speed_mbps <= 0:
            raise ValueError(f"link speed {speed_mbps} Mb/s")
        self._forward, self._link_changed = forward, link_changed
        self._now_ps, self._sleep = now_ps, sleep
        self.log = log
        self.speed_mbps = speed_mbps
        self.link_up = True
        self.counters = UplinkCounters()
        self._to_partner: Queue[bytes] = Queue(maxsize=tx_depth)
        self._wire_free_ps = 0  # sim time (ps) the receive wire is busy until
        self._callbacks: list[Callable[[bool], None]] = []
        self._received = events.topic(ev.UplinkReceive)
        self._transmitted = events.topic(ev.UplinkTransmit)

    # -- link state ---------------------------------------------------------------------
    def on_link_change(self, callback: Callable[[bool], None]) -> Callable[[bool], None]:
        """Call ``callback(up)`` after every link change; returns it (usable as a decorator)."""
        self._callbacks.append(callback)
        return callback

    def set_link(self, up: bool) -> None:
        up = bool(up)
        if up == self.link_up:
            return
        self.link_up = up
        self.log.info("uplink: link %s", "up" if up else "down")
        self._link_changed(up)
        for callback in self._callbacks:
            callback(up)

    # -- partner -> NIC ------------------------------------------------------------------
    def wire_time_ps(self, length: int) -> int:
        bits = 8 * (max(length, MIN_FRAME_NO_FCS) + WIRE_OVERHEAD)
        return -(-bits * 1_000_000 // self.speed_mbps)  # ceil: bits / (Mb/s) in ps

    async def send(self, frame: bytes) -> bool:
        """The partner sends ``frame``; returns when it has reached the switch (False: link down)."""
        frame = bytes(frame)
        if self.link_up:
            now = self._now_ps()
            self._wire_free_ps = max(now, self._wire_free_ps) + self.wire_time_ps(len(frame))
            await self._sleep(self._wire_free_ps - now)
        if self._received:
            self._received.emit(ev.UplinkReceive(frame, self.link_up))
        if not self.link_up:
            self.counters.rx_link_down += 1
            return False
        self.counters.rx_frames += 1
        self._forward(frame)
        return True

    # -- NIC -> partner ------------------------------------------------------------------
    def transmit(self, frame: bytes) -> bool:
        """The switch sends ``frame`` out of the uplink; False if dropped (link down, queue full)."""
        sent = self.link_up and not self._to_partner.full()
        if self._transmitted:
            self._transmitted.emit(ev.UplinkTransmit(bytes(frame), sent))
        if not self.link_up:
            self.counters.tx_link_down += 1
        elif not sent:
            self.counters.tx_overflow += 1
        else:
            self.counters.tx_frames += 1
            self._to_partner.put_nowait(bytes(frame))
        return sent

    @property
    def pending(self) -> int:
        """Frames the NIC sent that the partner has not received yet."""
        return self._to_partner.qsize()

    def recv_nowait(self) -> bytes | None:
        return None if self._to_partner.empty() else self._to_partner.get_nowait()

    async def recv(self, timeout_ns: float | None = None) -> bytes | None:
        """The next frame the NIC sent; None if none arrives within ``timeout_ns``."""
        if timeout_ns is None or not self._to_partner.empty():
            return await self._to_partner.get()
        try:
            return await with_timeout(self._to_partner.get(), timeout_ns, "ns", round_mode="ceil")
        except SimTimeoutError:
            return None

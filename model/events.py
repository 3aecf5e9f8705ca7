"""What the device did, as typed events: the model's observation interface.

Monitors, coverage, scoreboards and tools subscribe here instead of wrapping model
methods. Publishing costs one truth test when nobody listens::

    bus = EventBus()
    bus.subscribe(Doorbell, lambda ev: print(ev))
    topic = bus.topic(Doorbell)          # held by the publisher
    if topic:                            # false while nobody listens
        topic.emit(Doorbell(fn=1, queue=0, rx=False, tail=5))

Callbacks run synchronously, in subscription order, and must not await: an observer
cannot change the order of events in the simulation. An exception raised by a
callback is logged and the callback is dropped; the device carries on.

``fn`` in every event is the function index of the device: 0 for the PF, 1 + i for
VF i (the same numbering as the embedded switch's ports, ``datasheet.device``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, TypeVar

log = logging.getLogger("cocotb.nic.events")

E = TypeVar("E")


class Topic:
    """The subscribers of one event type; truthy while there is at least one."""

    __slots__ = ("kind", "callbacks")

    def __init__(self, kind: type):
        self.kind = kind
        self.callbacks: list[Callable] = []

    def __bool__(self) -> bool:
        return bool(self.callbacks)

    def emit(self, event) -> None:
        for callback in tuple(self.callbacks):
            try:
                callback(event)
            except Exception:  # an observer's bug must not break the device
                log.exception("event observer %r failed on %s; unsubscribed", callback, event)
                self.callbacks.remove(callback)


class EventBus:
    """Topics by event type."""

    def __init__(self):
        self._topics: dict[type, Topic] = {}

    def topic(self, kind: type) -> Topic:
        topic = self._topics.get(kind)
        if topic is None:
            topic = self._topics[kind] = Topic(kind)
        return topic

    def subscribe(self, kind: type[E], callback: Callable[[E], None]) -> Callable[[], None]:
        """Call ``callback(event)`` for every event of type ``kind``; returns the unsubscribe function."""
        topic = self.topic(kind)
        topic.callbacks.append(callback)
        return lambda: callback in topic.callbacks and topic.callbacks.remove(callback)


# -- the events ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ConfigWrite:
    """A configuration write reached function ``fn`` (dword ``offset``, ``byte_enable`` lanes)."""
    fn: int
    rid: int
    offset: int
    value: int
    byte_enable: int


@dataclass(frozen=True, slots=True)
class MmioWrite:
    """A memory write to BAR ``bar`` of function ``fn``, one event per dword touched."""
    fn: int
    bar: int
    offset: int
    value: int
    byte_enable: int


@dataclass(frozen=True, slots=True)
class Doorbell:
    """A tail write to queue ``queue`` (``rx`` ring or TX) of function ``fn``; ``turns`` is how
    many DMA engine turns the device had started when it arrived (see :class:`Turn`)."""
    fn: int
    queue: int
    rx: bool
    tail: int
    turns: int


@dataclass(frozen=True, slots=True)
class DescriptorFetch:
    """``count`` descriptors read from slot ``first`` of a ring."""
    fn: int
    queue: int
    rx: bool
    first: int
    count: int


@dataclass(frozen=True, slots=True)
class Writeback:
    """One descriptor written back in place: ``length`` bytes, ``status`` bits."""
    fn: int
    queue: int
    rx: bool
    slot: int
    length: int
    status: int


@dataclass(frozen=True, slots=True)
class Turn:
    """A DMA engine gave ring (``queue``, ``rx``) of function ``fn`` one turn: ``number`` counts
    the device's turns, ``descriptors`` is how many the ring completed in it."""
    fn: int
    queue: int
    rx: bool
    number: int
    descriptors: int


@dataclass(frozen=True, slots=True)
class QueueStopped:
    """A queue stopped or refused to start; ``error`` is its QueueError, ``why`` the detail."""
    fn: int
    queue: int
    rx: bool
    error: int
    why: str


@dataclass(frozen=True, slots=True)
class SwitchDecision:
    """One frame through the embedded switch: where it went and which counters moved.

    ``deliveries`` holds (port, frame as delivered, accepted by the port's RX queue);
    ``uplink`` holds (frame, sent) when the switch handed it to the uplink; ``reason``
    names the ingress drop (``DROP_SPOOF``...) or None.
    """
    src: int
    frame: bytes
    deliveries: tuple
    uplink: tuple
    counters: frozenset
    reason: str | None


@dataclass(frozen=True, slots=True)
class Delivery:
    """A frame offered to RX queue ``queue`` of function ``fn``; ``accepted`` False: no buffer."""
    fn: int
    queue: int
    frame: bytes
    accepted: bool


@dataclass(frozen=True, slots=True)
class UplinkTransmit:
    """A frame the NIC sent out of the uplink; ``sent`` False: dropped (link down, queue full)."""
    frame: bytes
    sent: bool


@dataclass(frozen=True, slots=True)
class UplinkReceive:
    """A frame from the link partner; ``accepted`` False: dropped because the link was down."""
    frame: bytes
    accepted: bool


@dataclass(frozen=True, slots=True)
class Interrupt:
    """MSI-X vector ``vector`` of function ``fn``: ``outcome`` is sent, held (pending bit set:
    masked, or Bus Master Enable clear) or dropped (MSI-X disabled, vector out of range)."""
    fn: int
    vector: int
    outcome: str
    why: str = ""


@dataclass(frozen=True, slots=True)
class Reset:
    """Function ``fn`` was reset: ``kind`` is flr, soft (CTRL.RST or PF_VFRTRIG) or vf_disable."""
    fn: int
    kind: str


@dataclass(frozen=True, slots=True)
class FunctionError:
    """Function ``fn`` entered (or stayed in) the error state; ``cause`` is its FnError."""
    fn: int
    rid: int
    cause: int
    detail: str


@dataclass(frozen=True, slots=True)
class MailboxViolation:
    """A side wrote a mailbox buffer it did not hold (``side`` vf or pf), or the PF took the
    buffer back from a VF with RVFU (``side`` rvfu)."""
    fn: int
    side: str

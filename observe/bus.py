"""Topics by event type; publishing costs one truth test when nobody listens::

    bus = EventBus()
    bus.subscribe(Doorbell, print)
    topic = bus.topic(Doorbell)          # held by the publisher
    if topic:                            # false while nobody listens
        topic.emit(Doorbell(...))

Callbacks run synchronously, in subscription order, and must not await: an observer
cannot change the order of events in the simulation. An exception raised by a
callback is logged, recorded in :attr:`EventBus.failures` (a test should check it is
empty) and the callback is dropped; the publisher carries on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger("cocotb.observe")

E = TypeVar("E")


class Topic:
    """The subscribers of one event type; truthy while there is at least one."""

    __slots__ = ("kind", "callbacks", "failures")

    def __init__(self, kind: type, failures: list):
        self.kind = kind
        self.callbacks: tuple[Callable, ...] = ()
        self.failures = failures

    def __bool__(self) -> bool:
        return bool(self.callbacks)

    def emit(self, event: object) -> None:
        # the tuple is replaced, never changed, on (un)subscribing: a callback that
        # unsubscribes (or subscribes) during the emit does not change this emit's list
        for callback in self.callbacks:
            try:
                callback(event)
            except Exception as exc:  # an observer's bug must not break the publisher
                log.exception("event observer %r failed on %s; unsubscribed", callback, event)
                self.failures.append((callback, event, exc))
                self.remove(callback)

    def add(self, callback: Callable) -> None:
        self.callbacks = (*self.callbacks, callback)

    def remove(self, callback: Callable) -> None:
        """Drop the first subscription of ``callback``, if it has one."""
        callbacks = list(self.callbacks)
        if callback in callbacks:
            callbacks.remove(callback)
            self.callbacks = tuple(callbacks)


class EventBus:
    """Topics by event type."""

    def __init__(self):
        self._topics: dict[type, Topic] = {}
        self.failures: list[tuple] = []  # (callback, event, exception) of failed observers

    def topic(self, kind: type) -> Topic:
        topic = self._topics.get(kind)
        if topic is None:
            topic = self._topics[kind] = Topic(kind, self.failures)
        return topic

    def subscribe(self, kind: type[E], callback: Callable[[E], None]) -> Callable[[], None]:
        """Call ``callback(event)`` for every event of type ``kind``; returns the unsubscribe function."""
        topic = self.topic(kind)
        topic.add(callback)
        return lambda: topic.remove(callback)

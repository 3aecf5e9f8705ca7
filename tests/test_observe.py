"""The event bus (observe/) without a simulator."""

from dataclasses import dataclass

from observe import EventBus


@dataclass(frozen=True)
class Ping:
    n: int


@dataclass(frozen=True)
class Pong:
    n: int


def test_topics_are_false_until_someone_subscribes_and_deliver_in_order():
    bus = EventBus()
    ping = bus.topic(Ping)
    assert not ping
    seen = []
    unsubscribe = bus.subscribe(Ping, lambda e: seen.append(("a", e.n)))
    bus.subscribe(Ping, lambda e: seen.append(("b", e.n)))
    assert ping and not bus.topic(Pong)
    ping.emit(Ping(1))
    unsubscribe()
    ping.emit(Ping(2))
    assert seen == [("a", 1), ("b", 1), ("b", 2)]


def test_a_failing_observer_is_recorded_and_dropped_and_the_others_still_run():
    bus = EventBus()
    seen = []

    def broken(event):
        raise RuntimeError("observer bug")

    bus.subscribe(Ping, broken)
    bus.subscribe(Ping, seen.append)
    bus.topic(Ping).emit(Ping(1))
    bus.topic(Ping).emit(Ping(2))
    assert seen == [Ping(1), Ping(2)]
    assert len(bus.failures) == 1 and bus.failures[0][1] == Ping(1)


def test_subscribing_or_unsubscribing_during_an_emit_counts_from_the_next_one():
    bus = EventBus()
    seen = []
    late = []

    def once(event):
        seen.append(("once", event.n))
        unsubscribe()
        bus.subscribe(Ping, late.append)

    unsubscribe = bus.subscribe(Ping, once)
    bus.subscribe(Ping, lambda e: seen.append(("always", e.n)))
    bus.topic(Ping).emit(Ping(1))
    bus.topic(Ping).emit(Ping(2))
    assert seen == [("once", 1), ("always", 1), ("always", 2)]
    assert late == [Ping(2)]
    unsubscribe()  # a second time: nothing left to drop

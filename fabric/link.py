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
(cheaper type look-ups and checks, same results).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cocotb.triggers import Event, Timer
from cocotb.utils import get_sim_time
from cocotbext.pcie.core.dllp import Dllp
from cocotbext.pcie.core.port import Port, SimPort

from .tlp import CheckedTlp

#: a timer interval past any simulation (2**62 ps is 53 days)
FOREVER_STEPS = 1 << 62


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


class SleepingSimPort(SimPort):
    """A ``SimPort`` whose flow-control idle timer runs only while the link is busy."""

    def __init__(self, fc_init: list[list[int]]):
        super().__init__(fc_init=fc_init)
        self.traffic = Event()  # set when a TLP is queued or arrives
        self._grid_origin = get_sim_time("step")
        self.idle_wakeups = 0  # idle timer expiries (what a stock port does every 10 us)

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
        self.traffic.set()
        await super().send(pkt)

    async def ext_recv(self, pkt: Any) -> None:
        if not isinstance(pkt, Dllp):
            self.traffic.set()
        await super().ext_recv(pkt)

    async def _run_receive(self) -> None:
        """``SimPort._run_receive``, each TLP handed up as a :class:`~fabric.tlp.CheckedTlp`
        (the same TLP, its type and checks looked up in tables)."""
        while True:
            tlp = await self.rx_queue.get()
            if self.rx_handler is None:
                raise Exception("Receive handler not set")  # cocotbext-pcie's own exception
            tlp.__class__ = CheckedTlp
            await self.rx_handler(tlp)

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

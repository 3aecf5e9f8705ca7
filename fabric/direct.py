"""The fast fabric's link for whole TLPs: handed to the other side, no link layer.

Configuration, memory and interrupt requests never reach it on the fast fabric (see
:mod:`fabric.transaction`); everything else does: messages (ERR_COR/NONFATAL/FATAL,
PME...), raw requests a test builds by hand and their completions.  Each port hands
what it is sent to the other side's receive handler, a copy per TLP (the sender keeps its
own, as a real link's retry buffer does), in zero simulated time and before ``send``
returns: no serialisation, no link delay, no data link layer ACKs, no flow control.  So a
TLP arrives before anything its sender does next, which keeps PCIe's ordering (PCIe 6.0
§2.4.1: a completion does not pass a posted request, e.g. a function's error Message
reaches the root port before the completion of the configuration read that follows it).
"""

from __future__ import annotations

import logging
from typing import Any

from cocotbext.pcie.core.tlp import Tlp


class DirectPort:
    """One end of a direct link; the interface of cocotbext-pcie's ``SimPort`` that bridges
    and devices use (``send``, ``connect``, ``rx_handler``, ``parent``, link width/speed)."""

    def __init__(self):
        self.log = logging.getLogger("cocotb.pcie.DirectPort")
        self.parent = None
        self.rx_handler = None
        self.other: DirectPort | None = None
        self.max_link_speed = self.max_link_width = None
        self.cur_link_speed = self.cur_link_width = None
        self.delivered = 0

    def connect(self, other: DirectPort) -> None:
        if self.other is not None or other.other is not None:
            raise RuntimeError("already connected")
        self.other, other.other = other, self
        for a, b in ((self, other), (other, self)):
            a.cur_link_speed = min(filter(None, (a.max_link_speed, b.max_link_speed)), default=None)
            a.cur_link_width = min(filter(None, (a.max_link_width, b.max_link_width)), default=None)

    async def send(self, tlp: Any) -> None:
        if self.other is None:
            raise RuntimeError("port not connected")
        tlp.release_fc()
        await self.other.receive(Tlp(tlp))

    async def receive(self, tlp: Tlp) -> None:
        """Hand ``tlp`` to this side's receive handler."""
        if self.rx_handler is None:
            raise RuntimeError("receive handler not set")
        self.delivered += 1
        await self.rx_handler(tlp)

"""The link partner of several NICs: one learning Ethernet bridge (IEEE 802.1D: forward by the
source addresses seen, flood what is unknown) joining their uplinks and a host station.

After a live migration the VF's MAC is behind another uplink; the bridge learns it from the
first frame with that source address, which is why the VMM announces the MAC (a RARP, as
QEMU's ``announce-self``) from the destination.
"""

from __future__ import annotations

from collections.abc import Callable

import cocotb
from cocotb.queue import Queue

from model.core.uplink import UplinkPort

HOST = "host"
BROADCAST = b"\xff" * 6


class LearningBridge:
    """``uplinks`` by port name; ``host_macs`` are the station's own addresses: frames for them
    land in :attr:`host_rx`. ``stop()`` ends the forwarding tasks."""

    def __init__(self, uplinks: dict[str, UplinkPort], host_macs: set[bytes]):
        self.uplinks = uplinks
        self.host_macs = set(host_macs)
        self.fdb: dict[bytes, str] = {mac: HOST for mac in host_macs}
        self.host_rx: Queue[bytes] = Queue()
        self.forwarded: dict[str, int] = dict.fromkeys([*uplinks, HOST], 0)
        self.flooded = 0
        self.taps: list[Callable[[str, bytes], None]] = []  # (ingress port, frame) of every frame
        self._tasks = [cocotb.start_soon(self._ingress(name, port)) for name, port in uplinks.items()]

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()

    async def _ingress(self, name: str, port: UplinkPort) -> None:
        while True:
            frame = await port.recv()
            if frame is not None:
                await self.forward(name, frame)

    async def host_send(self, frame: bytes) -> None:
        """The host station sends ``frame`` into the bridge."""
        await self.forward(HOST, frame)

    async def forward(self, ingress: str, frame: bytes) -> None:
        dst, src = frame[0:6], frame[6:12]
        for tap in self.taps:
            tap(ingress, frame)
        if not src[0] & 1:
            self.fdb[src] = ingress
        egress = self.fdb.get(dst)
        if dst == BROADCAST or dst[0] & 1 or egress is None:
            self.flooded += 1
            targets = [p for p in (*self.uplinks, HOST) if p != ingress]
        else:
            targets = [] if egress == ingress else [egress]
        for port in targets:
            self.forwarded[port] += 1
            if port == HOST:
                if dst in self.host_macs or dst == BROADCAST:
                    self.host_rx.put_nowait(frame)
            else:
                await self.uplinks[port].send(frame)

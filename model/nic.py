"""The NIC: its device core, its PCIe shells and the device on the link.

Typical use (see README)::

    nic = Nic(total_vfs=64)
    root_port.connect(nic.device)           # a cocotbext-pcie root port
    nic.events.subscribe(Doorbell, print)   # what it does (model.events)

``nic.pf`` / ``nic.vfs`` are the PCIe shells (config space, BAR decode; each shell's
``slice`` is its state in the core); ``nic.core`` owns everything else: the mailbox, the
switch, the uplink (``nic.uplink``), the DMA engines.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from datasheet import device, pci
from model.core import DeviceCore
from model.core.pcap import PcapWriter
from model.events import EventBus
from model.inject import InjectionPoints
from model.pcie.device import NicDevice
from model.pcie.pf import PhysicalFunction
from model.pcie.vf import VirtualFunction

if TYPE_CHECKING:
    import os

    from cocotbext.pcie.core.bridge import SwitchDownstreamPort
    from cocotbext.pcie.core.port import SimPort

    from model.core.switch import Switch
    from model.core.uplink import UplinkPort
    from model.pcie.function import NicFunction


class Nic:
    def __init__(self, total_vfs: int = device.DEFAULT_TOTAL_VFS):
        self.log = logging.getLogger("cocotb.nic")
        self.events = EventBus()
        self.pf = PhysicalFunction(total_vfs, sriov_owner=self, events=self.events)
        self.core = DeviceCore(self.pf, self.pf.msix_cap, events=self.events, log=self.log, total_vfs=total_vfs)
        self.pf.map_slice(self.core.pf)
        self.device = NicDevice(self.pf)
        self.inject = InjectionPoints(self.core)

    # -- wiring and parts ------------------------------------------------------------------------
    def connect(self, port: SwitchDownstreamPort | SimPort) -> None:
        self.device.connect(port)

    @property
    def vfs(self) -> list[VirtualFunction]:
        return self.device.vfs

    @property
    def uplink(self) -> UplinkPort:
        return self.core.uplink

    @property
    def switch(self) -> Switch:
        return self.core.switch

    def function_at(self, fn: int) -> NicFunction | None:
        """The PCIe shell of function ``fn`` (0 = PF, 1 + i = VF i), None if it does not exist."""
        if fn == device.PF_PORT:
            return self.pf
        index = device.port_vf(fn)
        return self.vfs[index] if 0 <= index < len(self.vfs) else None

    # -- capture -----------------------------------------------------------------------------------
    def open_pcap(self, path: str | os.PathLike, nanosecond: bool = False) -> PcapWriter:
        """Capture every frame entering the switch to ``path`` (libpcap), replacing any open capture."""
        self.close_pcap()
        writer = PcapWriter(path, nanosecond=nanosecond)
        self.core.capture(writer)
        return writer

    def close_pcap(self) -> None:
        if self.core.pcap is not None:
            self.core.pcap.close()
            self.core.capture(None)

    # -- SR-IOV lifecycle (the SR-IOV capability calls these) ---------------------------------------
    async def sriov_vf_enable(self, num_vfs: int) -> None:
        """VF Enable 0->1: NumVFs VF shells at their Routing IDs, each over a new slice
        (SR-IOV 1.1 §3.3.3.1)."""
        shells = [VirtualFunction(i, self.device.vf_bar_lookup, self.events, self.pf) for i in range(num_vfs)]
        for shell, slice_ in zip(shells, self.core.add_vfs(shells)):
            shell.map_slice(slice_)
        self.device.set_vfs(shells)
        self.log.info(
            "VF Enable: %d VFs, RIDs %s..%s",
            num_vfs,
            *(pci.rid_str(self.device.vf_rid(i)) for i in (0, max(num_vfs - 1, 0))),
        )

    async def sriov_vf_disable(self) -> None:
        """VF Enable 1->0: every VF vanishes with its state."""
        self.log.info("VF Enable cleared: removing %d VFs", len(self.vfs))
        self.device.set_vfs([])
        self.core.remove_vfs()

"""A real device core for unit tests of the switch and the uplink: every part of model/core is the
real one, wired as in the NIC; only the PCIe shells are stand-ins (:class:`FakeShell`: a
requester ID, Bus Master Enable, an MSI-X capability, no fabric behind them).

:class:`CoreRig` records, from the core's own events, which functions the switch handed each
frame to (``delivered``) and what it sent to the uplink (``uplinked``).
"""

from __future__ import annotations

import logging

from datasheet import device, regs
from model import events as ev
from model.core import DeviceCore
from model.pcie.caps import NicMsixCapability

LOG = logging.getLogger("test.nic")
FN_CTRL = {f.name: f for f in regs.SW_FN_CTRL.fields}
VALID = regs.SW_VLAN.field("VALID").mask


class FakeShell:
    """What a slice needs of its PCIe shell, with nothing behind it."""

    def __init__(self, rid: int, vectors: int):
        self.rid = rid
        self.bus_master_enable = False
        self.log = LOG
        self.msix_cap = NicMsixCapability(vectors, on_control_change=lambda: None)

    async def dma_read(self, addr: int, length: int) -> bytes:
        raise RuntimeError("no fabric in a unit test")

    async def dma_write(self, addr: int, data: bytes) -> None:
        raise RuntimeError("no fabric in a unit test")

    async def send_msi(self, addr: int, data: int) -> None:
        raise RuntimeError("no fabric in a unit test")


class CoreRig:
    def __init__(self, num_vfs: int = 4, **uplink_options):
        self.events = ev.EventBus()
        pf = FakeShell(0x0100, device.PF_MSIX_VECTORS)
        self.core = DeviceCore(pf, pf.msix_cap, self.events, LOG, **uplink_options)
        self.core.add_vfs([FakeShell(0x0101 + i, device.VF_MSIX_VECTORS) for i in range(num_vfs)])
        self.switch, self.uplink = self.core.switch, self.core.uplink
        self.pf, self.vfs = self.core.pf, self.core.vfs
        self.delivered: list[tuple[int, bytes]] = []
        self.uplinked: list[bytes] = []
        self.decisions: list[ev.SwitchDecision] = []
        self.interrupts: list[ev.Interrupt] = []
        self.events.subscribe(ev.SwitchDecision, self._decision)
        self.events.subscribe(ev.Interrupt, self.interrupts.append)

    def _decision(self, decision: ev.SwitchDecision) -> None:
        self.decisions.append(decision)
        self.delivered += [(fn, frame) for fn, frame, _accepted in decision.deliveries]
        self.uplinked += [frame for frame, _sent in decision.uplink]

    def function(self, fn: int):
        return self.core.function_at(fn)

    def take(self) -> tuple[list[tuple[int, bytes]], list[bytes]]:
        """(deliveries, uplink frames) since the last call."""
        out = self.delivered, self.uplinked
        self.delivered, self.uplinked = [], []
        return out


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def bus_write(rig: CoreRig, reg: regs.Register, index: int, value: int) -> None:
    """A PF driver's MMIO write to BAR0 (goes through write masks and hooks)."""
    rig.pf.regs.write(reg.at(index), value.to_bytes(4, "little"))


def program(
    rig: CoreRig, fn: int, addr: bytes | None = None, multicast=(), vlans=(), pvid: int | None = None, **flags: bool
) -> None:
    """Program switch port ``fn``; ``flags`` are SW_FN_CTRL bits (BAM and RX_EN default on)."""
    flags = {"BAM": True, "RX_EN": True, "PVLAN_EN": pvid is not None, **{k.upper(): v for k, v in flags.items()}}
    ctrl = FN_CTRL["PVID"].put(0, pvid or 0)
    for name, on in flags.items():
        ctrl = FN_CTRL[name].put(ctrl, int(on))
    lo, hi = regs.sw_mac_words(addr) if addr else (0, 0)
    bus_write(rig, regs.SW_MAC_LO, fn, lo)
    bus_write(rig, regs.SW_MAC_HI, fn, hi)
    for k in range(device.SW_MC_PER_FN):
        lo, hi = regs.sw_mac_words(multicast[k]) if k < len(multicast) else (0, 0)
        bus_write(rig, regs.SW_MC_LO, fn * device.SW_MC_PER_FN + k, lo)
        bus_write(rig, regs.SW_MC_HI, fn * device.SW_MC_PER_FN + k, hi)
    for k in range(device.SW_VLANS_PER_FN):
        bus_write(rig, regs.SW_VLAN, fn * device.SW_VLANS_PER_FN + k, VALID | vlans[k] if k < len(vlans) else 0)
    bus_write(rig, regs.SW_FN_CTRL, fn, ctrl)


def counters(rig: CoreRig) -> dict[str, int]:
    """Non-zero SW_* counters."""
    return {k: v for k, v in rig.switch.counters().items() if v}

"""A NIC stand-in for unit tests of the switch and the uplink: real register files, fake datapath.

The PF and VFs carry real :class:`RegisterFile` s built from the datasheet; the switch is
the real one; ``rx_deliver`` records ``(port, frame)`` and refuses ports in ``refuse``;
the uplink records what it is asked to transmit (replace it with a real ``UplinkPort``
where a test needs one).
"""

from __future__ import annotations

import logging

from datasheet import device, regs
from model.regfile import RegisterFile
from model.switch import Switch

LOG = logging.getLogger("test.nic")
F = {f.name: f for f in regs.SW_FN_CTRL.fields}
VALID = regs.SW_MAC_HI.field("VALID").mask


class FakeMsix:
    def __init__(self):
        self.fired: list[int] = []

    def signal(self, vector: int) -> str:
        self.fired.append(vector)
        return "sent"


class FakeFunction:
    def __init__(self, index: int | None = None):
        self.is_vf = index is not None
        self.index = index
        self.regs = RegisterFile(regs.registers_for(self.is_vf), LOG)
        self.msix = FakeMsix()


class FakeUplink:
    def __init__(self):
        self.sent: list[bytes] = []

    def transmit(self, frame: bytes) -> bool:
        self.sent.append(frame)
        return True


class FakeNic:
    def __init__(self, num_vfs: int = 4):
        self.log = LOG
        self.pf = FakeFunction()
        self.vfs = [FakeFunction(i) for i in range(num_vfs)]
        self.uplink = FakeUplink()
        self.pcap = None
        self.delivered: list[tuple[int, bytes]] = []
        self.refuse: set[int] = set()
        self.switch = Switch(self)

    def pf_interrupt(self, cause: str) -> None:
        if self.pf.regs.get(regs.PF_IMR) & regs.PF_IMR.field(cause).mask:
            self.pf.msix.signal(device.PF_MBX_VECTOR)

    def rx_deliver(self, port: int, frame: bytes) -> bool:
        if port in self.refuse:
            return False
        self.delivered.append((port, frame))
        return True

    def function(self, port: int) -> FakeFunction:
        return self.pf if port == 0 else self.vfs[port - 1]

    def take(self) -> tuple[list[tuple[int, bytes]], list[bytes]]:
        """(deliveries, uplink frames) since the last call."""
        out = self.delivered, self.uplink.sent
        self.delivered, self.uplink.sent = [], []
        return out


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def bus_write(nic: FakeNic, reg: regs.Register, index: int, value: int) -> None:
    """A PF driver's MMIO write to BAR0 (goes through write masks and hooks)."""
    nic.pf.regs.write(reg.at(index), value.to_bytes(4, "little"))


def _addr_words(addr: bytes) -> tuple[int, int]:
    return int.from_bytes(addr[:4], "little"), VALID | int.from_bytes(addr[4:], "little")


def program(nic: FakeNic, fn: int, addr: bytes | None = None, multicast=(), vlans=(), pvid: int | None = None,
            **flags: bool) -> None:
    """Program switch port ``fn``; ``flags`` are SW_FN_CTRL bits (BAM and RX_EN default on)."""
    flags = {"BAM": True, "RX_EN": True, "PVLAN_EN": pvid is not None, **{k.upper(): v for k, v in flags.items()}}
    ctrl = F["PVID"].put(0, pvid or 0)
    for name, on in flags.items():
        ctrl = F[name].put(ctrl, int(on))
    lo, hi = _addr_words(addr) if addr else (0, 0)
    bus_write(nic, regs.SW_MAC_LO, fn, lo)
    bus_write(nic, regs.SW_MAC_HI, fn, hi)
    for k in range(device.SW_MC_PER_FN):
        lo, hi = _addr_words(multicast[k]) if k < len(multicast) else (0, 0)
        bus_write(nic, regs.SW_MC_LO, fn * device.SW_MC_PER_FN + k, lo)
        bus_write(nic, regs.SW_MC_HI, fn * device.SW_MC_PER_FN + k, hi)
    for k in range(device.SW_VLANS_PER_FN):
        bus_write(nic, regs.SW_VLAN, fn * device.SW_VLANS_PER_FN + k, VALID | vlans[k] if k < len(vlans) else 0)
    bus_write(nic, regs.SW_FN_CTRL, fn, ctrl)


def counters(nic: FakeNic) -> dict[str, int]:
    """Non-zero SW_* counters."""
    return {k: v for k, v in nic.switch.counters().items() if v}

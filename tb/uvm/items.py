"""Transactions of the environment: the operations sequences ask agents to perform
(:class:`NicOp`) and the observations monitors publish (the frozen dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass, field

from pyuvm import uvm_sequence_item

#: requester kind of a function, as coverage and the scoreboard name it
PF_KIND, VF_KIND = "pf", "vf"


class NicOp(uvm_sequence_item):
    """One driver-level operation: ``op`` names the agent driver's ``op_<name>`` method,
    ``args`` are its keyword arguments; the driver leaves its return value in ``result``
    (or the exception it raised in ``error``)."""

    def __init__(self, op: str, **args):
        super().__init__(f"op_{op}")
        self.op = op
        self.args = args
        self.result = None
        self.error: BaseException | None = None

    def __str__(self) -> str:
        shown = {k: (f"<{len(v)} bytes>" if isinstance(v, (bytes, bytearray)) else v) for k, v in self.args.items()}
        return f"{self.op}({', '.join(f'{k}={v}' for k, v in shown.items())})"


# -- observations -----------------------------------------------------------------------
@dataclass(frozen=True)
class MmioWrite:
    """A host write to a function's BAR0 that crossed the link (one dword)."""

    time: float
    rid: int
    port: int  # switch port of the function: 0 PF, 1 + i VF i
    offset: int
    value: int


@dataclass(frozen=True)
class ConfigWrite:
    time: float
    rid: int
    offset: int  # dword-aligned config offset
    value: int
    byte_enable: int


@dataclass(frozen=True)
class MsiEvent:
    time: float
    rid: int
    port: int | None
    vector: int | None  # function's MSI-X vector number, None if unknown
    moderated: bool  # EITR of that vector was non-zero when it fired


@dataclass(frozen=True)
class DmaEvent:
    """One upstream memory request translated (or blocked) by the IOMMU."""

    time: float
    rid: int
    iova: int
    length: int
    is_write: bool
    phys: int | None  # host address of the first byte, None if blocked
    fault_reason: str | None  # FaultReason name when blocked
    fault_record: object = None


@dataclass(frozen=True)
class IotlbFill:
    time: float
    did: int
    page_shift: int


@dataclass(frozen=True)
class Writeback:
    """A descriptor the device wrote back into a ring (seen as an upstream MWr)."""

    time: float
    rid: int
    port: int
    rx: bool
    queue: int
    slot: int
    length: int
    status: int


@dataclass(frozen=True)
class TxOffloadEvent:
    """A TX frame that asked for an offload, and what the device made of it."""

    time: float
    port: int
    cmd: int  # VLE / IXSM / TXSM / TSE of its first data descriptor
    context: object  # datasheet.descriptors.TxContext or None
    length: int
    segments: int  # frames it became (0: refused)
    vlan_overridden: bool  # VLE ignored for the port VLAN
    error: int | None  # OffloadError


@dataclass(frozen=True)
class Doorbell:
    time: float
    rid: int
    port: int
    rx: bool
    queue: int
    tail: int
    previous: int
    ring_len: int

    @property
    def wrapped(self) -> bool:
        return self.tail < self.previous


@dataclass(frozen=True)
class ResetEvent:
    """A reset that crossed the link: ``kind`` vf_flr, vf_soft or pf_reset."""

    time: float
    kind: str
    rid: int
    port: int
    traffic_in_flight: bool


@dataclass(frozen=True)
class MailboxEvent:
    """A VF request and the PF's reply, reconstructed from the mailbox registers' MMIO."""

    time: float
    vf: int
    opcode: int
    payload: tuple
    reply: str  # "ACK", "NACK", or "NOTIFY" for a PF->VF message
    error: int | None  # MbxError of a NACK
    vf_state: str  # PF driver's view of the VF when it rang REQ


@dataclass
class SwitchEvent:
    """One frame through the embedded switch, as observed at its ports and counters."""

    time: float
    src: int
    frame: bytes
    counters: frozenset  # SW_* counters the frame incremented (reference names)
    deliveries: list = field(default_factory=list)  # (port, bytes, accepted)
    uplink: list = field(default_factory=list)  # (bytes, sent) handed to the uplink port


@dataclass(frozen=True)
class RxFrame:
    """A frame a function's net device received (NAPI handed it to the stack)."""

    time: float
    port: int
    queue: int
    frame: bytes
    info: object = None  # datasheet.descriptors.RxInfo: what the write-back reported


@dataclass(frozen=True)
class UplinkFrame:
    time: float
    frame: bytes


@dataclass(frozen=True)
class TxFrame:
    """A frame a driver queued for transmission (ring accepted it) or the partner sent."""

    time: float
    port: int
    frame: bytes


@dataclass(frozen=True)
class Transition:
    """Agents tell the scoreboard which ports are being reconfigured or reset."""

    time: float
    ports: frozenset
    begin: bool
    why: str

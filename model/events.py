"""What the device did, as typed events: the model's observation interface.

Monitors, coverage, scoreboards and tools subscribe to ``nic.events`` (an
:class:`observe.EventBus`) instead of wrapping model methods::

    nic.events.subscribe(Doorbell, lambda ev: print(ev))

``fn`` in every event is the function index of the device: 0 for the PF, 1 + i for
VF i (the same numbering as the embedded switch's ports, ``datasheet.device``).
"""

from __future__ import annotations

from dataclasses import dataclass

from observe import EventBus, Topic

__all__ = ["EventBus", "Topic"]


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
    """A frame offered to RX queue ``queue`` of function ``fn`` after its receive offloads;
    ``accepted`` False: no buffer, or the function's RX is quiesced (migration STOP).
    ``rss_hash`` / ``rss_type`` (an RssType), ``vlan`` (the TCI of a stripped tag, None if none)
    and ``status`` (the RX offload status bits) are what its write-back reports."""

    fn: int
    queue: int
    frame: bytes
    accepted: bool
    rss_hash: int = 0
    rss_type: int = 0
    vlan: int | None = None
    status: int = 0


@dataclass(frozen=True, slots=True)
class TxOffload:
    """A TX frame of function ``fn`` that asked for an offload (a context descriptor, or VLE, IXSM,
    TXSM, TSE in ``cmd``): ``context`` its context descriptor (a TxContext) or None, ``length``
    its bytes, ``segments`` the frames it became (0: refused), ``vlan`` the tag inserted,
    ``vlan_overridden`` VLE ignored for the port VLAN, ``error`` the OffloadError that refused it
    (None if accepted or refused for its length: ``status`` is the write-back error bit)."""

    fn: int
    queue: int
    cmd: int
    context: object
    length: int
    segments: int
    vlan: int | None
    vlan_overridden: bool
    error: int | None
    status: int


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
    masked, Bus Master Enable clear, or the VF stopped for migration) or dropped (MSI-X disabled,
    vector out of range)."""

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


@dataclass(frozen=True, slots=True)
class AerError:
    """Function ``fn`` detected an error and logged it in its AER capability (PCIe Base 6.0 §6.2):
    ``error`` is Linux's name of the status bit (``UnsupReq``, ``CmpltAbrt``...), ``severity``
    correctable, advisory (Advisory Non-Fatal), nonfatal or fatal; ``message`` the Message it
    sent (``ERR_COR``, ``ERR_NONFATAL``, ``ERR_FATAL``), or None and ``why`` (masked, reporting
    disabled); ``logged``: the TLP header went to the Header Log."""

    fn: int
    rid: int
    error: str
    severity: str
    message: str | None
    why: str = ""
    logged: bool = False

"""What the remapping hardware did, and what the host's IOMMU driver changed, as typed events
on ``iommu.events`` (an :class:`observe.EventBus`): every translation with its outcome, IOTLB
fills and invalidations, every recorded fault and interrupt request; each context change and
each page-table map and unmap the driver made. The root ports publish the error Messages they
receive (:class:`AerMessage`) on their root complex's ``events``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .faults import FaultRecord


@dataclass(frozen=True, slots=True)
class Translation:
    """A DMA request of ``length`` bytes at ``iova`` from ``source_id``: ``chunks`` are the host
    (address, length) pieces it maps to, empty when it was blocked (``fault``)."""

    source_id: int
    iova: int
    length: int
    is_write: bool
    chunks: tuple
    fault: FaultRecord | None

    @property
    def phys(self) -> int | None:
        """Host address of the first byte, None if blocked."""
        return self.chunks[0][0] if self.chunks else None


@dataclass(frozen=True, slots=True)
class IotlbFill:
    """A page walk filled the IOTLB: domain ``did``, page of 2**``shift`` bytes at ``iova``."""

    did: int
    iova: int
    shift: int


@dataclass(frozen=True, slots=True)
class IotlbInvalidate:
    """Software invalidated the IOTLB: ``did`` None is global; ``addr``/``am`` a page range."""

    did: int | None
    addr: int | None = None
    am: int | None = None


@dataclass(frozen=True, slots=True)
class Fault:
    """A fault was recorded in the fault log (or counted as overflow / suppressed)."""

    record: FaultRecord
    logged: bool


@dataclass(frozen=True, slots=True)
class MsiRequest:
    """A write from ``source_id`` reached the interrupt window: ``vector`` is the host vector it
    raised (its data in compatibility format, its IRTE's with remapping on), or None and ``why``
    when it raised nothing."""

    source_id: int
    address: int
    data: bytes
    vector: int | None
    why: str = ""

    @property
    def delivered(self) -> bool:
        return self.vector is not None


@dataclass(frozen=True, slots=True)
class AcsViolation:
    """A root port refused a request from ``requester_id`` (ACS Source Validation): its
    requester ID is not on the port's secondary bus range."""

    requester_id: int
    address: int
    is_write: bool


@dataclass(frozen=True, slots=True)
class AerMessage:
    """Root port ``port`` received error Message ``message`` (ERR_COR, ERR_NONFATAL, ERR_FATAL)
    from ``source_id``; ``interrupt``: it raised the Advanced Error Interrupt (the first of its
    kind since the host last cleared Root Error Status, with reporting enabled)."""

    port: int
    source_id: int
    message: str
    interrupt: bool


@dataclass(frozen=True, slots=True)
class ContextChange:
    """The driver pointed ``rid``'s context entry at domain ``did`` (pass-through or translated),
    or cleared it (``did`` None)."""

    rid: int
    did: int | None
    passthrough: bool = False


@dataclass(frozen=True, slots=True)
class DomainMap:
    """``iommu_map``: [iova, iova+size) of domain ``did`` now reaches [phys, phys+size) with ``prot``."""

    did: int
    iova: int
    phys: int
    size: int
    prot: int


@dataclass(frozen=True, slots=True)
class DomainUnmap:
    """``iommu_unmap``: [iova, iova+size) of domain ``did`` is no longer mapped."""

    did: int
    iova: int
    size: int

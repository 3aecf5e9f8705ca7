"""DMA-remapping faults: reasons, records and the bounded primary fault log (VT-d §7)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum

from observe import EventBus

from .events import Fault

log = logging.getLogger("iommu.faults")


class FaultReason(Enum):
    """Why a request was blocked; ``code()`` gives the VT-d fault-reason (FR) value (§7.1.3)."""

    ROOT_ENTRY_NOT_PRESENT = "root entry not present"  # 1h
    CONTEXT_ENTRY_NOT_PRESENT = "context entry not present"  # 2h
    CONTEXT_ENTRY_INVALID = "invalid context entry (AW/TT)"  # 3h
    ADDRESS_BEYOND_AW = "address beyond address width"  # 4h
    WRITE_DENIED = "write to a page without W"  # 5h
    READ_DENIED = "read from a page without R"  # 6h
    SLPTE_NOT_PRESENT = "second-level entry not present"  # 6h (read) / 5h (write)
    SLPTE_ACCESS_ERROR = "second-level entry fetch failed"  # 7h
    ROOT_TABLE_ACCESS_ERROR = "root entry fetch failed"  # 8h
    CONTEXT_TABLE_ACCESS_ERROR = "context entry fetch failed"  # 9h
    ROOT_ENTRY_RESERVED = "reserved bit set in root entry"  # Ah
    CONTEXT_ENTRY_RESERVED = "reserved bit set in context entry"  # Bh
    SLPTE_RESERVED = "reserved bit set in second-level entry"  # Ch
    # interrupt remapping (§7.1.2)
    IR_REQUEST_RESERVED = "interrupt request with reserved fields set or not one dword"  # 20h
    IR_INDEX_BEYOND = "interrupt index beyond the remapping table"  # 21h
    IR_NOT_PRESENT = "interrupt remapping entry not present"  # 22h
    IR_TABLE_ACCESS_ERROR = "interrupt remapping table fetch failed"  # 23h
    IR_ENTRY_RESERVED = "reserved bit set in interrupt remapping entry"  # 24h
    IR_COMPAT_BLOCKED = "compatibility-format interrupt blocked"  # 25h
    IR_SOURCE_ID = "interrupt request failed source-id validation"  # 26h

    @property
    def is_interrupt(self) -> bool:
        return self.name.startswith("IR_")

    def code(self, is_write: bool) -> int:
        """The FR field hardware would log for this reason."""
        if self is FaultReason.SLPTE_NOT_PRESENT:
            return _FR_CODES[FaultReason.WRITE_DENIED if is_write else FaultReason.READ_DENIED]
        return _FR_CODES[self]


_FR_CODES = {
    reason: code
    for code, reason in enumerate(
        [
            None,
            FaultReason.ROOT_ENTRY_NOT_PRESENT,
            FaultReason.CONTEXT_ENTRY_NOT_PRESENT,
            FaultReason.CONTEXT_ENTRY_INVALID,
            FaultReason.ADDRESS_BEYOND_AW,
            FaultReason.WRITE_DENIED,
            FaultReason.READ_DENIED,
            FaultReason.SLPTE_ACCESS_ERROR,
            FaultReason.ROOT_TABLE_ACCESS_ERROR,
            FaultReason.CONTEXT_TABLE_ACCESS_ERROR,
            FaultReason.ROOT_ENTRY_RESERVED,
            FaultReason.CONTEXT_ENTRY_RESERVED,
            FaultReason.SLPTE_RESERVED,
        ]
    )
    if reason is not None
}
_FR_CODES.update(
    {
        reason: 0x20 + k
        for k, reason in enumerate(
            [
                FaultReason.IR_REQUEST_RESERVED,
                FaultReason.IR_INDEX_BEYOND,
                FaultReason.IR_NOT_PRESENT,
                FaultReason.IR_TABLE_ACCESS_ERROR,
                FaultReason.IR_ENTRY_RESERVED,
                FaultReason.IR_COMPAT_BLOCKED,
                FaultReason.IR_SOURCE_ID,
            ]
        )
    }
)


@dataclass(frozen=True)
class FaultRecord:
    """One primary fault record (§10.4.14): source ID, faulting address, direction, reason.

    ``level`` is the paging level whose entry faulted (0 where no SL entry was involved). For
    an interrupt-remapping fault ``address`` holds the interrupt index (the FI field) and
    ``is_write`` is true (an interrupt request is a write).
    """

    source_id: int
    address: int
    is_write: bool
    reason: FaultReason
    level: int = 0

    @property
    def fault_reason(self) -> int:
        return self.reason.code(self.is_write)

    def __str__(self) -> str:
        rid = self.source_id
        source = f"{rid >> 8:02x}:{(rid >> 3) & 0x1F:02x}.{rid & 7}"
        if self.reason.is_interrupt:
            return (
                f"INTR-REMAP fault: request from {source} index {self.address:#x}: {self.reason.value} "
                f"[FR {self.fault_reason:#x}]"
            )
        kind = "write" if self.is_write else "read"
        at = f" (level {self.level})" if self.level else ""
        return (
            f"DMAR fault: {kind} from {source} addr {self.address:#x}: {self.reason.value}{at} "
            f"[FR {self.fault_reason:#x}]"
        )


class FaultLog:
    """Fault recording registers with primary-fault overflow (§7.2.1).

    At most ``capacity`` records are kept; a fault arriving while the log is full
    sets ``overflow`` and is only counted (``dropped``) until software calls
    ``clear()``.  Every fault, logged or not, is a :class:`~iommu.events.Fault` event
    (``logged`` says which): that stands for the fault-event interrupt.
    """

    def __init__(self, capacity: int = 16, events: EventBus | None = None):
        self._fault = (events or EventBus()).topic(Fault)
        self.capacity = capacity
        self.records: list[FaultRecord] = []
        self.overflow = False
        self.dropped = 0  # faults lost to overflow
        self.suppressed = 0  # faults from contexts with FPD set (§9.3)
        self.total = 0

    def report(self, record: FaultRecord, fpd: bool = False) -> None:
        self.total += 1
        logged = not fpd and len(self.records) < self.capacity
        if self._fault:
            self._fault.emit(Fault(record, logged))
        if fpd:
            self.suppressed += 1
            return
        if not logged:
            self.overflow = True
            self.dropped += 1
            return
        self.records.append(record)
        log.warning("%s", record)

    def clear(self) -> list[FaultRecord]:
        """Software reads and clears all records and the overflow flag."""
        records, self.records = self.records, []
        self.overflow = False
        return records

"""Interrupt remapping hardware (VT-d §5.1): every interrupt request a device sends is checked
against the interrupt remapping table (IRT) in host memory before it is delivered.

A request is a write to the interrupt window. With remapping enabled (GCMD.IRE):

* a compatibility-format request (address bit 4, IF, clear) is blocked unless software
  allowed them (GCMD.CFI), fault 25h;
* a remappable-format request names an IRTE by its handle (+ subhandle): an index beyond
  the table (21h), a non-present entry (22h), an unreadable table (23h), reserved bits
  (24h) and a requester that fails the entry's source-id validation (26h, SVT/SQ/SID,
  §9.10) are blocked; so is a request that is not one aligned dword (20h);
* a request that passes is delivered to the host vector the entry names.

Every blocked request is recorded in the same fault log as DMA faults. The hardware reads
the entry from memory on every request (no interrupt entry cache is modelled), so a
changed entry takes effect at once.
"""

from __future__ import annotations

from .faults import FaultLog, FaultReason, FaultRecord
from .memory import HostMemory, HostMemoryError
from .vtd_format import (
    IRTE_FPD,
    IRTE_HI_RSVD,
    IRTE_HI_SID_MASK,
    IRTE_HI_SQ_SHIFT,
    IRTE_HI_SVT_SHIFT,
    IRTE_LO_RSVD,
    IRTE_P,
    IRTE_SIZE,
    MSI_ADDR_IF,
    MSI_ADDR_RSVD,
    SQ_IGNORE,
    SVT_BUS,
    SVT_NONE,
    SVT_RID,
    irte_vector,
    remappable_index,
    unpack_entry128,
)


class InterruptRemapper:
    """IRTA_REG (``table_address``, ``entries``), GCMD.IRE (``enabled``) and GCMD.CFI
    (``compat_allowed``) of one remapping unit, set by :meth:`enable`, and the check of
    each request."""

    def __init__(self, memory: HostMemory, faults: FaultLog):
        self.memory = memory
        self.faults = faults
        self.table_address = 0
        self.entries = 0
        self.enabled = False
        self.compat_allowed = False
        self.remapped = 0
        self.blocked = 0

    def enable(self, table_address: int, entries: int, compat_allowed: bool = False) -> None:
        """IRTA_REG (table, size), GCMD.SIRTP, then GCMD.IRE; GCMD.CFI if ``compat_allowed``."""
        self.table_address, self.entries = table_address, entries
        self.compat_allowed = compat_allowed
        self.enabled = True

    def remap(self, source_id: int, address: int, value: int | None) -> int | None:
        """The host vector a request writing dword ``value`` at ``address`` raises, or None
        when it is blocked (and recorded). ``value`` None: the write was not one whole dword."""
        index = 0
        try:
            if value is None or address & MSI_ADDR_RSVD:
                raise _Blocked(FaultReason.IR_REQUEST_RESERVED)
            if not address & MSI_ADDR_IF:
                if self.compat_allowed:
                    return value  # compatibility format: data is the vector
                raise _Blocked(FaultReason.IR_COMPAT_BLOCKED)
            index = remappable_index(address, value)
            if index >= self.entries:
                raise _Blocked(FaultReason.IR_INDEX_BEYOND)
            try:
                lo, hi = unpack_entry128(self.memory.read(self.table_address + index * IRTE_SIZE, IRTE_SIZE))
            except HostMemoryError:
                raise _Blocked(FaultReason.IR_TABLE_ACCESS_ERROR) from None
            if not lo & IRTE_P:
                raise _Blocked(FaultReason.IR_NOT_PRESENT, bool(lo & IRTE_FPD))
            if lo & IRTE_LO_RSVD or hi & IRTE_HI_RSVD:
                raise _Blocked(FaultReason.IR_ENTRY_RESERVED, bool(lo & IRTE_FPD))
            if not _source_valid(source_id, hi):
                raise _Blocked(FaultReason.IR_SOURCE_ID, bool(lo & IRTE_FPD))
        except _Blocked as blocked:
            self.blocked += 1
            self.faults.report(FaultRecord(source_id, index, True, blocked.reason), fpd=blocked.fpd)
            return None
        self.remapped += 1
        return irte_vector(lo)


class _Blocked(Exception):
    def __init__(self, reason: FaultReason, fpd: bool = False):
        super().__init__(reason)
        self.reason, self.fpd = reason, fpd


def _source_valid(rid: int, hi: int) -> bool:
    """Source-id validation of an IRTE's high qword (§9.10: SVT, SQ, SID)."""
    sid = hi & IRTE_HI_SID_MASK
    svt = (hi >> IRTE_HI_SVT_SHIFT) & 3
    if svt == SVT_NONE:
        return True
    if svt == SVT_RID:
        ignore = SQ_IGNORE[(hi >> IRTE_HI_SQ_SHIFT) & 3]
        return rid & ~ignore == sid & ~ignore
    if svt == SVT_BUS:
        return sid >> 8 <= rid >> 8 <= sid & 0xFF
    return False  # SVT 11b is reserved

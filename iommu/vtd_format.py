"""VT-d translation-structure formats: every bit position and mask, in one place.

Legacy-mode root and context entries and second-level paging entries after the
Intel VT-d specification rev 3.x, chapter 9.  The hardware walker
(:mod:`iommu.remapping`) decodes with these names and the software driver
(:mod:`iommu.driver`) encodes with them; neither repeats a number.
"""

from __future__ import annotations

import struct

# -- pages and tables ------------------------------------------------------
PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PAGE_MASK = PAGE_SIZE - 1
TABLE_SIZE = PAGE_SIZE  # every translation table is one 4 KiB page

# -- root entry (§9.1), 16 bytes, indexed by bus number ----------------------
ROOT_ENTRY_SIZE = 16
ROOT_ENTRIES = 256
RE_P = 1 << 0  # present
RE_LO_RSVD = 0xFFE  # bits 11:1
RE_CTP_MASK = 0xFFFF_FFFF_FFFF_F000  # context-table pointer, bits 63:12
RE_HI_RSVD = (1 << 64) - 1  # upper qword reserved in legacy mode


def root_entry_addr(root_table: int, rid: int) -> int:
    """Address of the root entry for requester ID ``rid`` (indexed by its bus, §3.4.2)."""
    return root_table + (rid >> 8) % ROOT_ENTRIES * ROOT_ENTRY_SIZE


# -- context entry (§9.3), 16 bytes, indexed by devfn ------------------------
CONTEXT_ENTRY_SIZE = 16
CONTEXT_ENTRIES = 256
CE_P = 1 << 0  # present
CE_FPD = 1 << 1  # fault processing disable
CE_TT_SHIFT = 2
CE_TT_MASK = 0x3 << CE_TT_SHIFT  # translation type, bits 3:2
CE_LO_RSVD = 0xFF0  # bits 11:4
CE_SLPTPTR_MASK = 0xFFFF_FFFF_FFFF_F000  # second-level page-table pointer, bits 63:12
CE_HI_AW_MASK = 0x7  # address width, bits 66:64
CE_HI_DID_SHIFT = 8
CE_HI_DID_MASK = 0xFFFF << CE_HI_DID_SHIFT  # domain identifier, bits 87:72
CE_HI_RSVD = (1 << 7) | (((1 << 64) - 1) & ~((1 << 24) - 1))  # bit 71, bits 127:88


def context_entry_addr(context_table: int, rid: int) -> int:
    """Address of the context entry for ``rid`` (indexed by its device:function)."""
    return context_table + (rid & (CONTEXT_ENTRIES - 1)) * CONTEXT_ENTRY_SIZE


TT_UNTRANSLATED = 0b00  # untranslated requests translated through SL tables
TT_DEVICE_TLB = 0b01  # as 00 plus translated requests (needs ECAP.DT; not supported)
TT_PASS_THROUGH = 0b10  # untranslated requests pass through (needs ECAP.PT)
TT_RESERVED = 0b11

AW_39 = 1  # 3-level table
AW_48 = 2  # 4-level table
AW_57 = 3  # 5-level table (not supported here)
SUPPORTED_AW = frozenset({AW_39, AW_48})  # CAP.SAGAW


def aw_bits(aw: int) -> int:
    """Input-address width in bits for context-entry AW value ``aw`` (§9.3)."""
    return 30 + 9 * aw


def aw_levels(aw: int) -> int:
    """Number of second-level table levels for AW value ``aw`` (§3.7)."""
    return aw + 2


# -- second-level paging entries (§9.8), 8 bytes -----------------------------
SLPTE_SIZE = 8
SLPT_ENTRIES = 512
SLPT_INDEX_BITS = 9
SLPT_INDEX_MASK = SLPT_ENTRIES - 1
SL_R = 1 << 0  # read
SL_W = 1 << 1  # write
SL_RW = SL_R | SL_W  # an entry with R = W = 0 is not present
SL_PS = 1 << 7  # page size: 2 MiB leaf at level 2, 1 GiB leaf at level 3
SL_A = 1 << 8  # accessed: set by hardware in a leaf when SLADE is on (VT-d 3.x §3.6.2)
SL_D = 1 << 9  # dirty: set by hardware in a leaf on a write when SLADE is on
HAW = 48  # host address width modelled
SL_ADDR_MASK = ((1 << HAW) - 1) & ~PAGE_MASK  # address bits (HAW-1):12
SL_RSVD_HAW = ((1 << 52) - 1) & ~((1 << HAW) - 1)  # bits 51:HAW must be zero
LARGE_PAGE_LEVELS = frozenset({2, 3})  # CAP.SLLPS: 2 MiB and 1 GiB


def level_shift(level: int) -> int:
    """log2 of the span one entry covers at ``level`` (1 = 4 KiB PTE)."""
    return PAGE_SHIFT + SLPT_INDEX_BITS * (level - 1)


def slpte_offset(iova: int, level: int) -> int:
    """Byte offset in the level-``level`` table of the entry for ``iova``."""
    return ((iova >> level_shift(level)) & SLPT_INDEX_MASK) * SLPTE_SIZE


def slpte_reserved(level: int, leaf: bool) -> int:
    """Reserved-bit mask of a present SL entry (§9.8): PS in the top level,
    address bits below a large page's size."""
    mask = SL_RSVD_HAW
    if level not in LARGE_PAGE_LEVELS and level != 1:
        mask |= SL_PS
    if leaf and level > 1:
        mask |= ((1 << level_shift(level)) - 1) & ~PAGE_MASK
    return mask


# -- encoders (software side) -----------------------------------------------
def root_entry(ctp: int) -> bytes:
    """A present root entry pointing to the context table at ``ctp``."""
    return struct.pack("<QQ", (ctp & RE_CTP_MASK) | RE_P, 0)


def context_entry(slptptr: int, did: int, tt: int = TT_UNTRANSLATED, aw: int = AW_48, fpd: bool = False) -> bytes:
    """A present legacy-mode context entry (§9.3)."""
    lo = (slptptr & CE_SLPTPTR_MASK) | (tt << CE_TT_SHIFT) | CE_P | (CE_FPD if fpd else 0)
    hi = (aw & CE_HI_AW_MASK) | ((did << CE_HI_DID_SHIFT) & CE_HI_DID_MASK)
    return struct.pack("<QQ", lo, hi)


def slpte(addr: int, prot: int, leaf_level: int = 0) -> int:
    """An SL entry for ``addr`` with permission bits ``prot`` (SL_R/SL_W);
    ``leaf_level`` 2 or 3 sets PS for a large page."""
    return (addr & SL_ADDR_MASK) | (prot & SL_RW) | (SL_PS if leaf_level in LARGE_PAGE_LEVELS else 0)


def unpack_entry128(raw: bytes) -> tuple[int, int]:
    """(low qword, high qword) of a 16-byte root or context entry."""
    return struct.unpack("<QQ", raw)


def pack_u64(value: int) -> bytes:
    return value.to_bytes(SLPTE_SIZE, "little")


def unpack_u64(raw: bytes) -> int:
    return int.from_bytes(raw, "little")


# -- interrupt remapping (§5.1, §9.10) ----------------------------------------------------------
IRTE_SIZE = 16
IRTE_P = 1 << 0  # present
IRTE_FPD = 1 << 1  # fault processing disable
IRTE_V_SHIFT = 16  # vector, bits 23:16
IRTE_V_MASK = 0xFF << IRTE_V_SHIFT
IRTE_DST_SHIFT = 32  # destination ID, bits 63:32 (x2APIC mode: all 32 bits)
IRTE_LO_RSVD = (0xF << 12) | (0xFF << 24)  # bits 15:12 (IM = 0: remapped format), 31:24
IRTE_HI_SID_MASK = 0xFFFF  # source-id, bits 79:64
IRTE_HI_SQ_SHIFT = 16  # source-id qualifier, bits 81:80
IRTE_HI_SVT_SHIFT = 18  # source validation type, bits 83:82
IRTE_HI_RSVD = ((1 << 64) - 1) & ~((1 << 20) - 1)
SVT_NONE = 0b00  # no source validation
SVT_RID = 0b01  # requester ID must equal SID under the SQ mask
SVT_BUS = 0b10  # requester's bus must be in [SID[15:8], SID[7:0]]
#: SQ: which function-number bits of the requester ID are ignored when comparing with SID
SQ_IGNORE = {0b00: 0b000, 0b01: 0b100, 0b10: 0b110, 0b11: 0b111}

# IRTA_REG (§10.4.29): table address bits 63:12, EIME bit 11, S bits 3:0 = log2(entries) - 1
IRTA_S_MASK = 0xF
IRTA_MAX_S = 15  # 65536 entries

# remappable-format MSI address (§5.1.2.2): window | handle[14:0] << 5 | IF | SHV | handle[15] << 2
MSI_ADDR_IF = 1 << 4  # interrupt format: 1 = remappable
MSI_ADDR_SHV = 1 << 3  # subhandle valid: the data's low 16 bits are added to the handle
MSI_ADDR_HANDLE_SHIFT = 5
MSI_ADDR_HANDLE_HI = 1 << 2
MSI_ADDR_RSVD = 0x3  # bits 1:0


def irte(vector: int, sid: int, sq: int = 0b00, svt: int = SVT_RID, fpd: bool = False) -> bytes:
    """A present remapped-format IRTE delivering host vector ``vector`` (V = its low 8 bits,
    destination ID = the rest: this host has one interrupt controller whose vectors are
    numbered by the root complex's MSI region) to requests that pass source validation."""
    lo = IRTE_P | (IRTE_FPD if fpd else 0) | (vector & 0xFF) << IRTE_V_SHIFT | (vector >> 8) << IRTE_DST_SHIFT
    hi = (sid & IRTE_HI_SID_MASK) | (sq & 3) << IRTE_HI_SQ_SHIFT | (svt & 3) << IRTE_HI_SVT_SHIFT
    return struct.pack("<QQ", lo, hi)


def irte_vector(lo: int) -> int:
    """The host vector an IRTE's low qword names (see :func:`irte`)."""
    return (lo & IRTE_V_MASK) >> IRTE_V_SHIFT | (lo >> IRTE_DST_SHIFT) << 8


def remappable_msi(window: int, index: int) -> tuple[int, int]:
    """(address, data) of a remappable-format message for IRTE ``index`` (SHV clear)."""
    addr = window | (index & 0x7FFF) << MSI_ADDR_HANDLE_SHIFT | MSI_ADDR_IF
    if index >> 15 & 1:
        addr |= MSI_ADDR_HANDLE_HI
    return addr, 0


def remappable_index(addr: int, data: int) -> int:
    """interrupt_index of a remappable-format request (§5.1.2.3)."""
    handle = (addr >> MSI_ADDR_HANDLE_SHIFT) & 0x7FFF | (0x8000 if addr & MSI_ADDR_HANDLE_HI else 0)
    return handle + (data & 0xFFFF) if addr & MSI_ADDR_SHV else handle

"""VF live migration: the per-VF migration engine's states, commands and errors, and the
format of the device-state blob it saves and loads.

The PF drives a migration engine through ``PF_MIG_*`` registers (``datasheet.regs``), as a
Linux VFIO variant driver (mlx5, hisi_acc) drives its device's: a command names a VF and an
operation (set its migration state, save its state to a PF buffer, load it from one); the
engine moves the blob by DMA under the PF's requester ID and reports DONE or an error code
in ``PF_MIG_STATUS``. The device implements four states per VF (:class:`MigState`); the
driver builds VFIO's v2 states on them (``docs/migration.md``).

The blob is opaque to software above the PF driver but self-describing: a versioned header
(magic, format version, the compatibility record, CRC-32 over the whole blob) and a list of
typed sections, each a sequence of little-endian dwords (:class:`Section`). Sections flagged
HOST are written by the PF driver (its policy for the VF) and never read by the device.
"""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass, field

from datasheet import device, regs

MAGIC = b"SRMG"
#: format version (major, minor): a blob of another major version is refused
FORMAT_VERSION = (1, 0)


class MigState(enum.IntEnum):
    """The device's migration state of one VF (``PF_MIG_STATE[n]``)."""

    RUNNING = 0  # normal operation
    RUNNING_P2P = 1  # TX quiesced: no new descriptor is fetched, frames in flight finish; RX goes on
    STOP = 2  # TX and RX quiesced: no DMA, no interrupt; RX frames for the VF are counted dropped
    RESUMING = 3  # stopped and accepting LOAD


#: the device's legal state arcs (SET_STATE); anything else is refused with BAD_ARC
DEVICE_ARCS: dict[MigState, frozenset[MigState]] = {
    MigState.RUNNING: frozenset({MigState.RUNNING_P2P}),
    MigState.RUNNING_P2P: frozenset({MigState.RUNNING, MigState.STOP}),
    MigState.STOP: frozenset({MigState.RUNNING_P2P, MigState.RESUMING}),
    MigState.RESUMING: frozenset({MigState.STOP}),
}


class MigOp(enum.IntEnum):
    """``PF_MIG_CMD.OP``. A command written while another runs is ignored (and logged): the
    driver waits for BUSY to clear."""

    SET_STATE = 1  # move VF ``VF`` to state ``TARGET`` (one arc of DEVICE_ARCS)
    SAVE = 2  # VF in STOP: write its blob to PF_MIG_ADDR (at most PF_MIG_LEN bytes); PF_MIG_LEN = its size
    LOAD = 3  # VF in RESUMING: read PF_MIG_LEN bytes at PF_MIG_ADDR, check them, then apply them


class MigError(enum.IntEnum):
    """``PF_MIG_STATUS.ERR``: why a command was refused. A refused command changes nothing."""

    NONE = 0
    BAD_VF = 1  # no such VF (VF Enable clear, or index beyond NumVFs)
    BAD_ARC = 2  # SET_STATE to a state not reachable from the current one in one arc
    BAD_STATE = 3  # SAVE outside STOP, LOAD outside RESUMING
    BAD_OP = 4  # unknown operation or target state
    VF_ERROR = 5  # the VF is in the error state (FN_ERR): it cannot leave RUNNING; reset it first
    NO_SPACE = 6  # SAVE: the blob is larger than PF_MIG_LEN
    DMA_FAULT = 7  # the blob's DMA failed (PF_MIG_ADDR not reachable)
    BAD_MAGIC = 8  # LOAD: not a blob (magic, header size or total length wrong)
    BAD_VERSION = 9  # LOAD: another major format version, or a newer minor one
    BAD_CRC = 10  # LOAD: the CRC-32 does not match: corrupted or tampered with
    INCOMPATIBLE = 11  # LOAD: saved by a device of another configuration (queues, vectors, TotalVFs, register map)
    MALFORMED = 12  # LOAD: a section is unknown, missing, repeated or of the wrong length


class SectionType(enum.IntEnum):
    REGS = 1  # (offset, value) pairs of the VF's BAR0 storage registers (MIGRATED_REGS)
    QUEUES = 2  # queue pairs: per ring base lo/hi, length, control, head, tail; QERR, QRX_NOBUF; EITR
    MSIX = 3  # MSI-X table (4 dwords per entry) and the PBA (2 dwords)
    MAILBOX = 4  # mailbox buffer (16 dwords) and flags (MBX_FLAGS)
    SWITCH = 5  # the VF's switch port: SW_FN_CTRL, SW_MAC_LO/HI, SW_MC_LO/HI, SW_VLAN
    OFFLOAD = 6  # the VF's FN_OFFLOAD, RSS_KEY, RSS_RETA
    PF_POLICY = 0x80  # HOST: the PF driver's policy for the VF (UTF-8 JSON), never read by the device


#: Section.flags: written by the PF driver, skipped by the device
SECTION_HOST = 1 << 0

#: the sections every blob the device saves holds, once each, in this order
DEVICE_SECTIONS = (
    SectionType.REGS,
    SectionType.QUEUES,
    SectionType.MSIX,
    SectionType.MAILBOX,
    SectionType.SWITCH,
    SectionType.OFFLOAD,
)

#: MAILBOX flags dword: the VF-visible bits at their VF_MAILBOX positions, plus the PF's
#: pending REQ/ACK summary bits of this VF
MBX_FLAGS = {"VFU": 2, "PFU": 3, "PFSTS": 4, "PFACK": 5, "RSTI": 6, "RSTD": 7, "REQ_PENDING": 16, "ACK_PENDING": 17}

#: dwords per queue pair in QUEUES: TX and RX (base lo, base hi, length, control, head, tail), QERR, QRX_NOBUF
RING_WORDS = 6
QUEUE_PAIR_WORDS = 2 * RING_WORDS + 2

HEADER = struct.Struct("<4sHHHHIIHHHHIHH")
HEADER_SIZE = HEADER.size
SECTION_HEADER = struct.Struct("<HHI")
CRC_OFFSET = 16  # the CRC-32 field's offset in the header


class BlobError(Exception):
    """A blob that cannot be loaded; ``error`` is the device's status code for it."""

    def __init__(self, error: MigError, why: str):
        super().__init__(f"{error.name}: {why}")
        self.error = error


@dataclass(frozen=True)
class Compat:
    """What a blob needs of the device that loads it (the header's compatibility record)."""

    queue_pairs: int = device.VF_QUEUE_PAIRS
    msix_vectors: int = device.VF_MSIX_VECTORS
    total_vfs: int = device.DEFAULT_TOTAL_VFS
    reg_map_version: int = device.REG_MAP_VERSION


@dataclass
class Section:
    type: int
    payload: bytes
    flags: int = 0

    @classmethod
    def of_words(cls, kind: SectionType, words: list[int]) -> Section:
        return cls(int(kind), b"".join((w & 0xFFFFFFFF).to_bytes(4, "little") for w in words))

    @property
    def words(self) -> list[int]:
        return [int.from_bytes(self.payload[k : k + 4], "little") for k in range(0, len(self.payload) - 3, 4)]


@dataclass
class Blob:
    compat: Compat
    vf_index: int
    sections: list[Section] = field(default_factory=list)
    version: tuple[int, int] = FORMAT_VERSION

    def section(self, kind: SectionType) -> Section | None:
        return next((s for s in self.sections if s.type == kind), None)

    def device_part(self) -> Blob:
        """The blob without the PF driver's HOST sections (what the device loads)."""
        return Blob(self.compat, self.vf_index, [s for s in self.sections if not s.flags & SECTION_HOST], self.version)

    def pack(self) -> bytes:
        """The bytes of the blob, CRC-32 (IEEE 802.3, zlib's) over all of them with the CRC field zero."""
        body = b""
        for s in self.sections:
            padded = s.payload + bytes(-len(s.payload) % 4)
            body += SECTION_HEADER.pack(s.type, s.flags, len(s.payload)) + padded
        c = self.compat
        header = HEADER.pack(
            MAGIC,
            self.version[0],
            self.version[1],
            HEADER_SIZE,
            len(self.sections),
            HEADER_SIZE + len(body),
            0,
            c.queue_pairs,
            c.msix_vectors,
            c.total_vfs,
            self.vf_index,
            c.reg_map_version,
            0,
            0,
        )
        raw = bytearray(header + body)
        struct.pack_into("<I", raw, CRC_OFFSET, zlib.crc32(raw))
        return bytes(raw)

    @classmethod
    def parse(cls, raw: bytes) -> Blob:
        """Check and decode a blob: magic and lengths, version, CRC, then the section list;
        raises :class:`BlobError` with the status code a device reports for it."""
        if len(raw) < HEADER_SIZE:
            raise BlobError(MigError.BAD_MAGIC, f"{len(raw)} bytes: shorter than the {HEADER_SIZE}-byte header")
        (magic, major, minor, hsize, count, total, crc, qp, vec, tvfs, vf, rmv, _r1, _r2) = HEADER.unpack_from(raw)
        if magic != MAGIC or hsize != HEADER_SIZE or total != len(raw):
            raise BlobError(
                MigError.BAD_MAGIC, f"magic {magic!r}, header size {hsize}, total length {total} of {len(raw)} bytes"
            )
        if major != FORMAT_VERSION[0] or minor > FORMAT_VERSION[1]:
            raise BlobError(MigError.BAD_VERSION, f"format {major}.{minor}, this device reads {FORMAT_VERSION[0]}.x")
        zeroed = bytearray(raw)
        struct.pack_into("<I", zeroed, CRC_OFFSET, 0)
        if zlib.crc32(zeroed) != crc:
            raise BlobError(MigError.BAD_CRC, f"CRC-32 {zlib.crc32(zeroed):#010x}, header says {crc:#010x}")
        sections, pos = [], HEADER_SIZE
        for _ in range(count):
            if pos + SECTION_HEADER.size > len(raw):
                raise BlobError(MigError.MALFORMED, "section table runs past the blob")
            kind, flags, length = SECTION_HEADER.unpack_from(raw, pos)
            pos += SECTION_HEADER.size
            if pos + length > len(raw):
                raise BlobError(MigError.MALFORMED, f"section {kind} of {length} bytes runs past the blob")
            sections.append(Section(kind, bytes(raw[pos : pos + length]), flags))
            pos += length + (-length % 4)
        if pos != len(raw):
            raise BlobError(MigError.MALFORMED, f"{len(raw) - pos} bytes after the last section")
        return cls(Compat(qp, vec, tvfs, rmv), vf, sections, (major, minor))


#: the VF BAR0 registers whose values REGS carries (the rest are the queue engine's, the
#: mailbox's, strapped by hardware or constant)
MIGRATED_REGS = (
    regs.SCRATCH,
    regs.FN_ERROR,
    regs.ERR_STATUS,
    regs.ERR_UNIMPL_COUNT,
    regs.ERR_LAST_OFFSET,
    *regs.STATS,
)
#: the PF registers of one VF's switch port and offloads, with the elements per function
SWITCH_REGS = (
    (regs.SW_FN_CTRL, 1),
    (regs.SW_MAC_LO, 1),
    (regs.SW_MAC_HI, 1),
    (regs.SW_MC_LO, device.SW_MC_PER_FN),
    (regs.SW_MC_HI, device.SW_MC_PER_FN),
    (regs.SW_VLAN, device.SW_VLANS_PER_FN),
)
OFFLOAD_REGS = (
    (regs.FN_OFFLOAD, 1),
    (regs.RSS_KEY, device.RSS_KEY_SIZE // 4),
    (regs.RSS_RETA, device.RSS_RETA_SIZE // regs.RETA_PER_WORD),
)


def section_words(kind: SectionType, compat: Compat) -> int:
    """The dwords a device section holds on a device of configuration ``compat``."""
    return {
        SectionType.REGS: 2 * len(MIGRATED_REGS),
        SectionType.QUEUES: 1 + compat.queue_pairs * QUEUE_PAIR_WORDS + 1 + compat.msix_vectors,
        SectionType.MSIX: 1 + 4 * compat.msix_vectors + 2,
        SectionType.MAILBOX: 16 + 1,
        SectionType.SWITCH: sum(n for _, n in SWITCH_REGS),
        SectionType.OFFLOAD: sum(n for _, n in OFFLOAD_REGS),
    }[kind]

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


class VfioMigState(enum.IntEnum):
    """``enum vfio_device_mig_state`` (include/uapi/linux/vfio.h), same values: the states the PF
    driver offers userspace for each VF, as a VFIO migration variant driver does."""

    ERROR = 0
    STOP = 1
    RUNNING = 2
    STOP_COPY = 3
    RESUMING = 4
    RUNNING_P2P = 5
    PRE_COPY = 6
    PRE_COPY_P2P = 7


_V = VfioMigState
#: the single arcs a v2 driver with P2P and PRE_COPY implements (vfio.h, "The FSM takes actions
#: on the arcs between FSM states"); userspace asks for one state at a time
VFIO_ARCS: dict[VfioMigState, frozenset[VfioMigState]] = {
    _V.RUNNING: frozenset({_V.RUNNING_P2P, _V.PRE_COPY}),
    _V.RUNNING_P2P: frozenset({_V.RUNNING, _V.STOP, _V.PRE_COPY_P2P}),
    _V.STOP: frozenset({_V.RUNNING_P2P, _V.STOP_COPY, _V.RESUMING}),
    _V.STOP_COPY: frozenset({_V.STOP}),
    _V.RESUMING: frozenset({_V.STOP}),
    _V.PRE_COPY: frozenset({_V.RUNNING, _V.PRE_COPY_P2P}),
    _V.PRE_COPY_P2P: frozenset({_V.PRE_COPY, _V.RUNNING_P2P, _V.STOP_COPY}),
    _V.ERROR: frozenset(),
}
#: the device state behind each VFIO state
DEVICE_STATE = {
    _V.RUNNING: MigState.RUNNING,
    _V.PRE_COPY: MigState.RUNNING,
    _V.RUNNING_P2P: MigState.RUNNING_P2P,
    _V.PRE_COPY_P2P: MigState.RUNNING_P2P,
    _V.STOP: MigState.STOP,
    _V.STOP_COPY: MigState.STOP,
    _V.RESUMING: MigState.RESUMING,
}
#: what the PF driver does on entering each VFIO state (besides moving the device state)
VFIO_ACTIONS = {
    _V.RUNNING: "the VF runs",
    _V.PRE_COPY: "the VF runs; the VMM copies guest memory and reads the IOMMU's dirty bits "
    "(the device has no pre-copy data: its state is small)",
    _V.RUNNING_P2P: "TX quiesced, RX runs",
    _V.PRE_COPY_P2P: "TX quiesced, RX runs, pre-copy goes on",
    _V.STOP: "quiesced, RX counted dropped, interrupts held",
    _V.STOP_COPY: "SAVE: the blob (plus the PF_POLICY section) is ready to be read",
    _V.RESUMING: "the VF waits for a blob; leaving to STOP checks and loads it (a refused blob fails the "
    "arc and changes nothing)",
    _V.ERROR: "not entered by this driver: a failed arc leaves the state unchanged",
}


class MigOp(enum.IntEnum):
    """``PF_MIG_CMD.OP``. A command written while another runs is ignored (and logged): the
    driver waits for BUSY to clear."""

    SET_STATE = 1
    SAVE = 2
    LOAD = 3


class MigError(enum.IntEnum):
    """``PF_MIG_STATUS.ERR``: why a command was refused. A refused command changes nothing."""

    NONE = 0
    BAD_VF = 1
    BAD_ARC = 2
    BAD_STATE = 3
    BAD_OP = 4
    VF_ERROR = 5
    NO_SPACE = 6
    DMA_FAULT = 7
    BAD_MAGIC = 8
    BAD_VERSION = 9
    BAD_CRC = 10
    INCOMPATIBLE = 11
    MALFORMED = 12
    POLICY = 13


class SectionType(enum.IntEnum):
    REGS = 1
    QUEUES = 2
    MSIX = 3
    MAILBOX = 4
    SWITCH = 5
    OFFLOAD = 6
    PF_POLICY = 0x80


#: what each section holds (dwords, little-endian, unless said otherwise)
SECTION_DOCS = {
    SectionType.REGS: "(offset, value) pairs of the VF's BAR0 registers in MIGRATED_REGS, in that order",
    SectionType.QUEUES: "queue pairs n; per pair: TX then RX (base low, base high, length, TXDCTL/RXDCTL, head, "
    "tail), QERR_COUNT, QRX_NOBUF; vectors m; EITR[0..m-1]",
    SectionType.MSIX: "vectors m; per entry: address low, address high, data, vector control; the PBA (2 dwords)",
    SectionType.MAILBOX: "the 16-dword buffer; flags (MBX_FLAGS)",
    SectionType.SWITCH: "the VF's switch port: SW_FN_CTRL, SW_MAC_LO, SW_MAC_HI, SW_MC_LO[8], SW_MC_HI[8], SW_VLAN[8]",
    SectionType.OFFLOAD: "the VF's FN_OFFLOAD, RSS_KEY[10], RSS_RETA[8]",
    SectionType.PF_POLICY: "HOST: the PF driver's policy for the VF, UTF-8 JSON (MAC, VLAN, trust, spoof check, "
    "promiscuous modes, link state, offloads allowed and enabled, RSS, rings): written by the PF driver, "
    "never read by the device",
}


#: what each command does
OP_DOCS = {
    MigOp.SET_STATE: "move VF `VF` to state `TARGET`: one arc of the table below",
    MigOp.SAVE: "VF in STOP: write its blob at `PF_MIG_ADDR` (at most `PF_MIG_LEN` bytes); "
    "`PF_MIG_LEN` then holds its length",
    MigOp.LOAD: "VF in RESUMING: read `PF_MIG_LEN` bytes at `PF_MIG_ADDR`, check all of them, then apply them",
}


#: the cause of each error
ERROR_DOCS = {
    MigError.NONE: "no error",
    MigError.BAD_VF: "no such VF (VF Enable clear, or the index is beyond NumVFs)",
    MigError.BAD_ARC: "SET_STATE to a state that is not one arc away",
    MigError.BAD_STATE: "SAVE outside STOP, LOAD outside RESUMING",
    MigError.BAD_OP: "unknown operation or target state",
    MigError.VF_ERROR: "the VF is in the error state (`STATUS.FN_ERR`): it cannot leave RUNNING; reset it",
    MigError.NO_SPACE: "SAVE: the blob is larger than `PF_MIG_LEN`",
    MigError.DMA_FAULT: "the blob's DMA failed (the PF's Bus Master Enable, an unreachable address)",
    MigError.BAD_MAGIC: "LOAD: not a blob (magic, header size or total length)",
    MigError.BAD_VERSION: "LOAD: another major format version, or a newer minor one",
    MigError.BAD_CRC: "LOAD: the CRC-32 does not match (corrupted or tampered with)",
    MigError.INCOMPATIBLE: "LOAD: saved by a device of another configuration (queue pairs, vectors, TotalVFs, "
    "register map)",
    MigError.MALFORMED: "LOAD: a section unknown, missing, repeated, out of order or of the wrong length",
    MigError.POLICY: "the PF driver refused the blob before LOAD: its PF_POLICY is unreadable, names a MAC "
    "that is not a unicast address, that another function of this PF uses or that differs from the SWITCH "
    "section's, or a VLAN out of range (never reported by the device)",
}

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

#: the header, in order: (field, struct format, meaning)
HEADER_FIELDS = (
    ("magic", "4s", "`SRMG`"),
    ("major", "H", "format version, major: another one is refused (BAD_VERSION)"),
    ("minor", "H", "format version, minor: a newer one than the device reads is refused"),
    ("header_size", "H", "bytes of this header"),
    ("sections", "H", "number of sections that follow"),
    ("total_length", "I", "bytes of the whole blob"),
    ("crc32", "I", "CRC-32 (IEEE 802.3) of the whole blob with this field zero"),
    ("queue_pairs", "H", "compatibility: queue pairs per VF"),
    ("msix_vectors", "H", "compatibility: MSI-X vectors per VF"),
    ("total_vfs", "H", "compatibility: TotalVFs of the PF (the VF layout)"),
    ("vf_index", "H", "the VF the state was saved from (information)"),
    ("reg_map_version", "I", "compatibility: the register map's VERSION"),
    ("reserved0", "H", "0"),
    ("reserved1", "H", "0"),
)
HEADER = struct.Struct("<" + "".join(fmt for _name, fmt, _doc in HEADER_FIELDS))
HEADER_SIZE = HEADER.size
SECTION_HEADER = struct.Struct("<HHI")
CRC_OFFSET = struct.calcsize("<" + "".join(fmt for name, fmt, _ in HEADER_FIELDS[:6]))


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

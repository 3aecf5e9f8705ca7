"""BAR0 register map of every function, declared as data.

Each :class:`Register` states its offset, access type, reset value and which
bits a write may change; the model builds its register files from these
declarations, the drivers use the names, and ``docs/registers.md`` is generated
from them. One rule covers everything not listed: an access to an
unimplemented offset reads 0, a write is ignored, and both are logged and
counted in ``ERR_UNIMPL_COUNT`` / ``ERR_STATUS.UNIMPL``.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass, field

from datasheet import device


class Access(enum.Enum):
    """How the bus sees a register."""

    RO = "RO"  # read-only; writes ignored
    RW = "RW"  # read/write under write_mask
    W1C = "RW1C"  # write 1 to clear bits


class Scope(enum.Enum):
    """Which functions implement the register."""

    ALL = "PF+VF"
    PF = "PF"
    VF = "VF"


@dataclass(frozen=True)
class Field:
    name: str
    lsb: int
    width: int = 1
    doc: str = ""
    #: the field's bits in the register (computed once: the datapath asks for it per descriptor)
    mask: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mask", ((1 << self.width) - 1) << self.lsb)

    def get(self, value: int) -> int:
        return (value & self.mask) >> self.lsb

    def put(self, value: int, field_value: int) -> int:
        return (value & ~self.mask) | ((field_value << self.lsb) & self.mask)

    @property
    def bits(self) -> str:
        """The field's bit range as datasheets write it: ``7:4`` or ``3``."""
        return f"{self.lsb + self.width - 1}:{self.lsb}" if self.width > 1 else f"{self.lsb}"


@dataclass(frozen=True)
class Register:
    name: str
    offset: int
    access: Access
    doc: str
    reset: int = 0
    write_mask: int = 0
    scope: Scope = Scope.ALL
    fields: tuple[Field, ...] = field(default_factory=tuple)
    count: int = 1  # >1: an array of ``count`` registers ``stride`` bytes apart
    stride: int = 4

    def at(self, index: int) -> int:
        """Offset of element ``index`` of an array register."""
        if not 0 <= index < self.count:
            raise IndexError(f"{self.name}[{index}] out of range")
        return self.offset + index * self.stride

    @property
    def end(self) -> int:
        return self.offset + self.count * self.stride

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.name} has no field {name}")

    @property
    def masks(self) -> dict[str, int]:
        """Field name -> its mask in the register (for registers of one-bit flags)."""
        return {f.name: f.mask for f in self.fields}


# -- identification ---------------------------------------------------------
NIC_ID = Register("NIC_ID", 0x0000, Access.RO, "Device identification magic ('SRNC').", reset=device.NIC_ID_MAGIC)
VERSION = Register(
    "VERSION", 0x0004, Access.RO, "Register-map version (major.minor in 16.16).", reset=device.REG_MAP_VERSION
)
FUNC_INFO = Register(
    "FUNC_INFO",
    0x0008,
    Access.RO,
    "Which function this BAR belongs to (strapped by hardware).",
    fields=(
        Field("VF_INDEX", 0, 12, "0-based VF number (0 on the PF)"),
        Field("IS_VF", 31, 1, "1 on a VF, 0 on the PF"),
    ),
)

# -- control / status ---------------------------------------------------------
CTRL = Register(
    "CTRL",
    0x0010,
    Access.RW,
    "Function control.",
    write_mask=0x00000001,
    fields=(Field("RST", 0, 1, "write 1: function software reset; self-clearing"),),
)
STATUS = Register(
    "STATUS",
    0x0014,
    Access.RO,
    "Function status.",
    reset=0x00000001,
    fields=(
        Field("RST_DONE", 0, 1, "function is out of reset and ready for its driver"),
        Field("LINK_UP", 1, 1, "the uplink port is up"),
        Field(
            "FN_ERR",
            2,
            1,
            "the function is in the error state (see FN_ERROR): its queues are stopped "
            "and refuse to start until a function reset",
        ),
    ),
)
SCRATCH = Register("SCRATCH", 0x0018, Access.RW, "Scratch register for driver self-test.", write_mask=0xFFFFFFFF)


class FnError(enum.IntEnum):
    """Value of FN_ERROR.CAUSE: why a function entered the error state (the model's guard caught
    a fault inside it, as "malicious driver detection" does on ixgbe/i40e/ice)."""

    NONE = 0
    ENGINE = 1  # a queue engine turn of the function failed unexpectedly
    ACCESS = 2  # a BAR access to the function failed unexpectedly
    TASK = 3  # another task of the function (interrupt delivery, mailbox event) failed


FN_ERROR = Register(
    "FN_ERROR",
    0x001C,
    Access.RO,
    "Error state of the function: the first cause since the last function reset, and the number of "
    "error events (a function reset clears both).",
    fields=(
        Field("CAUSE", 0, 8, "FnError of the first error event, 0 if none"),
        Field("EVENTS", 16, 16, "error events since the last function reset (saturates)"),
    ),
)

# -- error reporting ------------------------------------------------------------
ERR_STATUS = Register(
    "ERR_STATUS",
    0x0020,
    Access.W1C,
    "Sticky error flags of bad register accesses (BAR0 and the MSI-X BAR).",
    write_mask=0x00000007,
    fields=(
        Field("UNIMPL", 0, 1, "access to an unimplemented offset"),
        Field("RO_WRITE", 1, 1, "write to a read-only register"),
        Field("MBX", 2, 1, "mailbox buffer written without holding it, or a disabled VF's mailbox used"),
    ),
)
ERR_UNIMPL_COUNT = Register(
    "ERR_UNIMPL_COUNT",
    0x0024,
    Access.RO,
    "Number of accesses to unimplemented offsets of BAR0 or the MSI-X BAR (saturates).",
)
ERR_LAST_OFFSET = Register(
    "ERR_LAST_OFFSET", 0x0028, Access.RO, "Offset (in the BAR it went to) of the last bad access."
)

# -- PF-only view of the SR-IOV state -------------------------------------------
PF_NUM_VFS = Register(
    "PF_NUM_VFS", 0x0100, Access.RO, "VFs currently enabled (NumVFs latched at VF Enable).", scope=Scope.PF
)

PF_CTRL_EXT = Register(
    "PF_CTRL_EXT",
    0x0104,
    Access.RW,
    "PF extended control.",
    write_mask=0x00000001,
    scope=Scope.PF,
    fields=(
        Field(
            "PFRSTD",
            0,
            1,
            "PF driver ready: write 1 to clear RSTI and set RSTD in every VF mailbox; cleared by a PF reset",
        ),
    ),
)
PF_IMR = Register(
    "PF_IMR",
    0x0108,
    Access.RW,
    "Interrupt enables of the PF's misc vector (mailbox, VFLR, link, errors).",
    write_mask=0x0000001F,
    scope=Scope.PF,
    fields=(
        Field("REQ", 0, 1, "a VF rang its doorbell (REQ)"),
        Field("ACK", 1, 1, "a VF acknowledged a PF message"),
        Field("VFLR", 2, 1, "a VF finished a Function Level Reset or software reset"),
        Field("LSC", 3, 1, "the uplink went up or down (STATUS.LINK_UP)"),
        Field("FN_ERR", 4, 1, "a function (the PF or a VF, see PF_VFERR) entered the error state"),
    ),
)

PF_ICR = Register(
    "PF_ICR",
    0x01FC,
    Access.W1C,
    "Causes of the PF's misc vector: LSC and FN_ERR latched when the event happens whatever PF_IMR "
    "says, write 1 to clear; VFERR says whether PF_VFERR needs reading. It sits just before "
    "PF_MBX_REQ, PF_MBX_ACK and PF_VFLRE, so one read takes it with them (as igb reads its ICR "
    "and ixgbe its EICR before the mailbox and VFLR summaries).",
    write_mask=0x00000018,
    scope=Scope.PF,
    fields=(
        Field("LSC", 3, 1, "the uplink went up or down: STATUS.LINK_UP tells which (PF_IMR.LSC's bit)"),
        Field("FN_ERR", 4, 1, "the PF itself entered the error state (STATUS.FN_ERR); a VF's shows in VFERR"),
        Field("VFERR", 5, 1, "RO: some bit of PF_VFERR is set (a VF entered the error state); clears with them"),
    ),
)

# -- VF live migration engine (datasheet.migration), driven by the PF ---------------------------
PF_MIG_ADDR_LO = Register(
    "PF_MIG_ADDR_LO",
    0x0180,
    Access.RW,
    "Migration buffer: bus address (the PF's DMA space) of the blob SAVE writes and LOAD reads, low",
    write_mask=0xFFFFFFFF,
    scope=Scope.PF,
)
PF_MIG_ADDR_HI = Register(
    "PF_MIG_ADDR_HI", 0x0184, Access.RW, "Migration buffer address, high", write_mask=0xFFFFFFFF, scope=Scope.PF
)
PF_MIG_LEN = Register(
    "PF_MIG_LEN",
    0x0188,
    Access.RW,
    "SAVE: the buffer's size, then the blob's length once DONE; LOAD: the blob's length",
    write_mask=0xFFFFFFFF,
    scope=Scope.PF,
)
PF_MIG_CMD = Register(
    "PF_MIG_CMD",
    0x018C,
    Access.RW,
    "Migration command: writing it starts OP on VF (MigOp); reads the last command",
    write_mask=0x0F0F0FFF,
    scope=Scope.PF,
    fields=(
        Field("VF", 0, 12, "0-based VF index"),
        Field("OP", 16, 4, "MigOp: SET_STATE, SAVE, LOAD"),
        Field("TARGET", 24, 4, "SET_STATE: the MigState to enter"),
    ),
)
PF_MIG_STATUS = Register(
    "PF_MIG_STATUS",
    0x0190,
    Access.RO,
    "Status of the last migration command",
    scope=Scope.PF,
    fields=(
        Field("BUSY", 0, 1, "the command is running"),
        Field("DONE", 1, 1, "the command completed successfully"),
        Field("ERR", 8, 8, "MigError: why it was refused (nothing changed)"),
        Field("VF", 16, 12, "the VF the command named"),
    ),
)
PF_MIG_STATE = Register(
    "PF_MIG_STATE",
    0x19200,
    Access.RO,
    "Migration state (MigState) of VF n",
    scope=Scope.PF,
    count=device.MAX_TOTAL_VFS,
)

# -- PF<->VF mailbox (igb/82576 style): VF side ---------------------------------------
VF_MAILBOX = Register(
    "VF_MAILBOX",
    0x0200,
    Access.RW,
    "VF mailbox control. A read clears PFSTS, PFACK and RSTD; writing REQ or ACK with VFU clear releases the buffer.",
    write_mask=0x00000007,
    scope=Scope.VF,
    fields=(
        Field("REQ", 0, 1, "write 1: doorbell, a message for the PF is in the buffer"),
        Field("ACK", 1, 1, "write 1: the VF has read the PF's message"),
        Field("VFU", 2, 1, "VF holds the buffer (granted only while PFU is clear)"),
        Field("PFU", 3, 1, "RO: the PF holds the buffer"),
        Field("PFSTS", 4, 1, "RC: the PF wrote a message"),
        Field("PFACK", 5, 1, "RC: the PF acknowledged the VF's message"),
        Field("RSTI", 6, 1, "RO: PF reset in progress"),
        Field("RSTD", 7, 1, "RC: reset done, the VF may (re)start its handshake"),
    ),
)
VF_MBMEM = Register(
    "VF_MBMEM",
    0x0800,
    Access.RW,
    "Mailbox buffer, writable by the VF only while it holds VFU.",
    write_mask=0xFFFFFFFF,
    scope=Scope.VF,
    count=16,
)

# -- PF<->VF mailbox: PF side, one element per VF -------------------------------------
PF_MBX_REQ = Register(
    "PF_MBX_REQ",
    0x0200,
    Access.W1C,
    "Bit n of element i: VF 32i+n rang REQ.",
    write_mask=0xFFFFFFFF,
    scope=Scope.PF,
    count=8,
)
PF_MBX_ACK = Register(
    "PF_MBX_ACK",
    0x0220,
    Access.W1C,
    "Bit n of element i: VF 32i+n wrote ACK.",
    write_mask=0xFFFFFFFF,
    scope=Scope.PF,
    count=8,
)
PF_VFLRE = Register(
    "PF_VFLRE",
    0x0240,
    Access.W1C,
    "Bit n of element i: VF 32i+n completed FLR or software reset (VFLR event).",
    write_mask=0xFFFFFFFF,
    scope=Scope.PF,
    count=8,
)
PF_VFERR = Register(
    "PF_VFERR",
    0x0260,
    Access.W1C,
    "Bit n of element i: VF 32i+n entered the error state (its FN_ERROR says why).",
    write_mask=0xFFFFFFFF,
    scope=Scope.PF,
    count=8,
)
PF_VFRTRIG = Register(
    "PF_VFRTRIG",
    0x0280,
    Access.RW,
    "Write 1 to bit n of element i: software reset of VF 32i+n (as its own CTRL.RST: "
    "RSTD to its driver, VFLR to the PF); reads 0.",
    write_mask=0xFFFFFFFF,
    scope=Scope.PF,
    count=8,
)
PF_MAILBOX = Register(
    "PF_MAILBOX",
    0x1000,
    Access.RW,
    "PF's mailbox control for VF n (element n). A write that sets STS, ACK or both raises one "
    "VF mailbox interrupt; a write with PFU clear releases the buffer.",
    write_mask=0x0000001B,
    scope=Scope.PF,
    count=256,
    fields=(
        Field("STS", 0, 1, "write 1: doorbell, a message for the VF is in the buffer"),
        Field("ACK", 1, 1, "write 1: the PF has read the VF's message"),
        Field("VFU", 2, 1, "RO: the VF holds the buffer"),
        Field("PFU", 3, 1, "PF holds the buffer (granted only while VFU is clear)"),
        Field("RVFU", 4, 1, "write 1: take the buffer back from a VF that holds VFU (recovery)"),
    ),
)
PF_MBMEM = Register(
    "PF_MBMEM",
    0x4000,
    Access.RW,
    "Mailbox buffers: VF n's 16 dwords at 0x4000 + 64n, writable while PFU is held.",
    write_mask=0xFFFFFFFF,
    scope=Scope.PF,
    count=256 * 16,
)

# -- queues: one 0x40-byte block per queue pair (PCIe function's own BAR0) -------------
QUEUE_BLOCK = 0x2000
QUEUE_STRIDE = 0x40


def _q(name: str, off: int, access: Access, doc: str, write_mask: int = 0, fields: tuple[Field, ...] = ()) -> Register:
    return Register(
        name,
        QUEUE_BLOCK + off,
        access,
        doc,
        write_mask=write_mask,
        count=device.PF_QUEUE_PAIRS,
        stride=QUEUE_STRIDE,
        fields=fields,
    )


_QCTL_FIELDS = (
    Field("ENABLE", 0, 1, "queue enabled; refused (stays 0, ERR set) for a bad ring base or length"),
    Field("VECTOR", 16, 8, "MSI-X vector raised on completions"),
    Field("ERR", 24, 8, "RO: why the queue stopped (QueueError), 0 if running"),
)
TDBAL = _q("TDBAL", 0x00, Access.RW, "TX ring base (IOVA) low; 128-byte aligned", 0xFFFFFFFF)
TDBAH = _q("TDBAH", 0x04, Access.RW, "TX ring base (IOVA) high", 0xFFFFFFFF)
TDLEN = _q("TDLEN", 0x08, Access.RW, "TX ring length in descriptors (power of two)", 0xFFFFFFFF)
TDH = _q("TDH", 0x0C, Access.RO, "TX head: next descriptor the device will process")
TDT = _q("TDT", 0x10, Access.RW, "TX tail doorbell: one past the last descriptor given to the device", 0xFFFFFFFF)
TXDCTL = _q("TXDCTL", 0x14, Access.RW, "TX queue control", 0x00FF0001, _QCTL_FIELDS)
RDBAL = _q("RDBAL", 0x20, Access.RW, "RX ring base (IOVA) low; 128-byte aligned", 0xFFFFFFFF)
RDBAH = _q("RDBAH", 0x24, Access.RW, "RX ring base (IOVA) high", 0xFFFFFFFF)
RDLEN = _q("RDLEN", 0x28, Access.RW, "RX ring length in descriptors (power of two)", 0xFFFFFFFF)
RDH = _q("RDH", 0x2C, Access.RO, "RX head: next descriptor the device will fill")
RDT = _q("RDT", 0x30, Access.RW, "RX tail doorbell: one past the last buffer given to the device", 0xFFFFFFFF)
RXDCTL = _q("RXDCTL", 0x34, Access.RW, "RX queue control", 0x00FF0001, _QCTL_FIELDS)
QRX_NOBUF = _q("QRX_NOBUF", 0x38, Access.RO, "frames dropped because the RX ring had no free buffer")
QERR_COUNT = _q("QERR_COUNT", 0x3C, Access.RO, "bad-input events on this queue pair (see QueueError)")

#: interrupt throttle per MSI-X vector: minimum interval between two messages
EITR = Register(
    "EITR",
    0x3000,
    Access.RW,
    "Interrupt throttle of vector n, in microseconds (0: off)",
    write_mask=0x0000FFFF,
    count=device.PF_MSIX_VECTORS,
)

# -- statistics of the function (free-running, 32-bit wrap) ----------------------------
_STATS = ("TX_PACKETS", "TX_BYTES", "TX_DROPS", "TX_ERRORS", "RX_PACKETS", "RX_BYTES", "RX_DROPS", "RX_ERRORS")
STATS = tuple(
    Register(f"STAT_{n}", 0x0300 + 4 * i, Access.RO, f"{n.replace('_', ' ').lower()} of this function")
    for i, n in enumerate(_STATS)
)
#: the same eight counters of every VF, in the PF's BAR0 (8 dwords per VF)
PF_VF_STATS = Register(
    "PF_VF_STATS",
    0x12000,
    Access.RO,
    "VF n's counters at +32n, in STAT_* order",
    scope=Scope.PF,
    count=256 * len(_STATS),
)

# -- embedded switch (VEB) filters, programmed by the PF; element fn: 0 = PF, 1 + i = VF i --
SW_FUNCTIONS = 1 + device.MAX_TOTAL_VFS
SW_FN_CTRL = Register(
    "SW_FN_CTRL",
    0x8000,
    Access.RW,
    "Switch port control of function fn",
    write_mask=0x0FFF073F,
    scope=Scope.PF,
    count=SW_FUNCTIONS,
    fields=(
        Field("BAM", 0, 1, "accept broadcast"),
        Field("UPE", 1, 1, "unicast promiscuous: a copy of every unicast frame"),
        Field("MPE", 2, 1, "multicast promiscuous"),
        Field("SPOOFCHK", 3, 1, "drop frames this function sends with a source MAC other than SW_MAC"),
        Field("RX_EN", 4, 1, "the switch delivers to this function"),
        Field("PVLAN_EN", 5, 1, "port VLAN: tag TX with PVID, accept only PVID on RX and strip it"),
        Field("DEFQ", 8, 3, "RX queue that receives this function's frames"),
        Field("PVID", 16, 12, "port VLAN ID"),
    ),
)
SW_MAC_LO = Register(
    "SW_MAC_LO",
    0x8800,
    Access.RW,
    "Unicast MAC of function fn, bytes 0-3 (byte 0 in bits 7:0, as on the wire)",
    write_mask=0xFFFFFFFF,
    scope=Scope.PF,
    count=SW_FUNCTIONS,
)
SW_MAC_HI = Register(
    "SW_MAC_HI",
    0x9000,
    Access.RW,
    "Unicast MAC of function fn, bytes 4-5; VALID [31]",
    write_mask=0x8000FFFF,
    scope=Scope.PF,
    count=SW_FUNCTIONS,
    fields=(Field("MAC", 0, 16, "bytes 4-5"), Field("VALID", 31, 1, "entry in use")),
)


def sw_mac_words(mac: bytes) -> tuple[int, int]:
    """(``SW_*_LO``, ``SW_*_HI``) of a valid filter entry holding ``mac``: byte 0 in LO bits 7:0,
    as on the wire, bytes 4-5 in HI bits 15:0, VALID set."""
    return (int.from_bytes(mac[0:4], "little"), SW_MAC_HI.field("VALID").put(int.from_bytes(mac[4:6], "little"), 1))


def sw_mac_decode(lo: int, hi: int) -> bytes | None:
    """The address in a (``SW_*_LO``, ``SW_*_HI``) pair; None unless VALID."""
    if not SW_MAC_HI.field("VALID").get(hi):
        return None
    return lo.to_bytes(4, "little") + (hi & 0xFFFF).to_bytes(2, "little")


SW_MC_LO = Register(
    "SW_MC_LO",
    0xA000,
    Access.RW,
    f"Multicast filter k of function fn at element fn*{device.SW_MC_PER_FN}+k, bytes 0-3",
    write_mask=0xFFFFFFFF,
    scope=Scope.PF,
    count=SW_FUNCTIONS * device.SW_MC_PER_FN,
)
SW_MC_HI = Register(
    "SW_MC_HI",
    0xC100,
    Access.RW,
    "Multicast filter bytes 4-5; VALID [31]",
    write_mask=0x8000FFFF,
    scope=Scope.PF,
    count=SW_FUNCTIONS * device.SW_MC_PER_FN,
    fields=SW_MAC_HI.fields,
)
SW_VLAN = Register(
    "SW_VLAN",
    0xE200,
    Access.RW,
    f"VLAN filter k of function fn at element fn*{device.SW_VLANS_PER_FN}+k",
    write_mask=0x80000FFF,
    scope=Scope.PF,
    count=SW_FUNCTIONS * device.SW_VLANS_PER_FN,
    fields=(Field("VID", 0, 12, "VLAN ID"), Field("VALID", 31, 1, "entry in use")),
)
# -- offloads of each function (element fn: 0 = PF, 1 + i = VF i), programmed by the PF ---------
FN_OFFLOAD = Register(
    "FN_OFFLOAD",
    0x14000,
    Access.RW,
    "Offloads of function fn: RSS hash types, RX checksum and VLAN strip, the TX offloads it may use",
    write_mask=0x0000733F,
    scope=Scope.PF,
    count=SW_FUNCTIONS,
    fields=(
        Field("HASH_IPV4", 0, 1, "RSS over the IPv4 addresses (RssType.IPV4)"),
        Field("HASH_IPV4_TCP", 1, 1, "RSS over the IPv4 addresses and TCP ports"),
        Field("HASH_IPV4_UDP", 2, 1, "RSS over the IPv4 addresses and UDP ports"),
        Field("HASH_IPV6", 3, 1, "RSS over the IPv6 addresses"),
        Field("HASH_IPV6_TCP", 4, 1, "RSS over the IPv6 addresses and TCP ports"),
        Field("HASH_IPV6_UDP", 5, 1, "RSS over the IPv6 addresses and UDP ports"),
        Field("RXCSUM", 8, 1, "RX: check the IPv4 header and TCP/UDP checksums, report them in the write-back"),
        Field("RXVLAN", 9, 1, "RX: strip an 802.1Q tag and report it in the write-back"),
        Field("TXCSUM", 12, 1, "TX: IXSM and TXSM permitted"),
        Field("TSO", 13, 1, "TX: TSE permitted"),
        Field("TXVLAN", 14, 1, "TX: VLE permitted"),
    ),
)
#: FN_OFFLOAD's hash-type field of each RssType (bit RssType - 1)
RSS_HASH_FIELDS = FN_OFFLOAD.fields[:6]
RSS_KEY = Register(
    "RSS_KEY",
    0x14800,
    Access.RW,
    f"Toeplitz key of function fn at elements fn*{device.RSS_KEY_SIZE // 4}+k: key bytes 4k..4k+3, byte 4k in bits 7:0",
    write_mask=0xFFFFFFFF,
    scope=Scope.PF,
    count=SW_FUNCTIONS * device.RSS_KEY_SIZE // 4,
)
#: indirection table entries per RSS_RETA element
RETA_PER_WORD = 32 // device.RSS_RETA_ENTRY_BITS
RSS_RETA = Register(
    "RSS_RETA",
    0x17100,
    Access.RW,
    f"Indirection table of function fn at elements fn*{device.RSS_RETA_SIZE // RETA_PER_WORD}+k: entry "
    f"{RETA_PER_WORD}k+j (an RX queue of fn; one beyond its queues means queue 0) in bits "
    f"{device.RSS_RETA_ENTRY_BITS}j+{device.RSS_RETA_ENTRY_BITS - 1}:{device.RSS_RETA_ENTRY_BITS}j",
    write_mask=0xFFFFFFFF,
    scope=Scope.PF,
    count=SW_FUNCTIONS * device.RSS_RETA_SIZE // RETA_PER_WORD,
)


def rss_key_words(key: bytes) -> list[int]:
    """The RSS_KEY elements of one function holding ``key`` (RSS_KEY_SIZE bytes)."""
    if len(key) != device.RSS_KEY_SIZE:
        raise ValueError(f"RSS key of {len(key)} bytes, not {device.RSS_KEY_SIZE}")
    return [int.from_bytes(key[i : i + 4], "little") for i in range(0, len(key), 4)]


def rss_key_bytes(words: list[int]) -> bytes:
    return b"".join((w & 0xFFFFFFFF).to_bytes(4, "little") for w in words)


def reta_words(table: list[int]) -> list[int]:
    """The RSS_RETA elements of one function holding ``table`` (RSS_RETA_SIZE queue indices)."""
    if len(table) != device.RSS_RETA_SIZE:
        raise ValueError(f"indirection table of {len(table)} entries, not {device.RSS_RETA_SIZE}")
    bits, limit = device.RSS_RETA_ENTRY_BITS, 1 << device.RSS_RETA_ENTRY_BITS
    if any(not 0 <= q < limit for q in table):
        raise ValueError(f"an indirection table entry does not fit {bits} bits")
    return [
        sum(q << (bits * j) for j, q in enumerate(table[k : k + RETA_PER_WORD]))
        for k in range(0, len(table), RETA_PER_WORD)
    ]


def reta_entries(words: list[int]) -> list[int]:
    bits = device.RSS_RETA_ENTRY_BITS
    return [(w >> (bits * j)) & ((1 << bits) - 1) for w in words for j in range(RETA_PER_WORD)]


SW_STATS = tuple(
    Register(f"SW_{n}", 0x0140 + 4 * i, Access.RO, f"switch decisions: {doc}", scope=Scope.PF)
    for i, (n, doc) in enumerate(
        (
            ("UNICAST_INTERNAL", "unicast frames delivered to at least one function"),
            ("TO_UPLINK", "frames handed to the uplink port (unknown unicast, broadcast, multicast)"),
            ("BROADCAST", "broadcast frames replicated (once per frame)"),
            ("MULTICAST", "multicast frames replicated (once per frame)"),
            ("DROP_SPOOF", "frames dropped by anti-spoofing"),
            ("DROP_NO_MATCH", "frames no port accepted (e.g. unknown unicast from the uplink)"),
            (
                "DROP_VLAN",
                "frames dropped by VLAN filtering: tagged from a port-VLAN port, or refused "
                "by every receiver's VLAN filter",
            ),
            ("DROP_MALFORMED", f"frames shorter than 14 bytes (18 if tagged) or longer than {device.MAX_FRAME + 4}"),
        )
    )
)

REGISTERS: tuple[Register, ...] = (
    NIC_ID,
    VERSION,
    FUNC_INFO,
    CTRL,
    STATUS,
    SCRATCH,
    FN_ERROR,
    ERR_STATUS,
    ERR_UNIMPL_COUNT,
    ERR_LAST_OFFSET,
    PF_NUM_VFS,
    PF_CTRL_EXT,
    PF_IMR,
    PF_ICR,
    PF_MIG_ADDR_LO,
    PF_MIG_ADDR_HI,
    PF_MIG_LEN,
    PF_MIG_CMD,
    PF_MIG_STATUS,
    PF_MIG_STATE,
    VF_MAILBOX,
    VF_MBMEM,
    PF_MBX_REQ,
    PF_MBX_ACK,
    PF_VFLRE,
    PF_VFERR,
    PF_VFRTRIG,
    PF_MAILBOX,
    PF_MBMEM,
    TDBAL,
    TDBAH,
    TDLEN,
    TDH,
    TDT,
    TXDCTL,
    RDBAL,
    RDBAH,
    RDLEN,
    RDH,
    RDT,
    RXDCTL,
    QRX_NOBUF,
    QERR_COUNT,
    EITR,
    *STATS,
    PF_VF_STATS,
    SW_FN_CTRL,
    SW_MAC_LO,
    SW_MAC_HI,
    SW_MC_LO,
    SW_MC_HI,
    SW_VLAN,
    *SW_STATS,
    FN_OFFLOAD,
    RSS_KEY,
    RSS_RETA,
)

#: saturation value of the error counters
COUNTER_MAX = 0xFFFFFFFF


@functools.cache
def registers_for(is_vf: bool) -> tuple[Register, ...]:
    """Registers implemented by a PF (``is_vf=False``) or a VF (the same tuple at every call)."""
    excluded = Scope.PF if is_vf else Scope.VF
    return tuple(r for r in REGISTERS if r.scope is not excluded)


def by_name(name: str) -> Register:
    for r in REGISTERS:
        if r.name == name:
            return r
    raise KeyError(name)


def element_offsets(is_vf: bool) -> dict[int, str]:
    """Every implemented dword of a PF's or a VF's BAR0; raises on overlap or misplacement."""
    bar_size = device.VF_REG_BAR_SIZE if is_vf else device.PF_REG_BAR_SIZE
    seen: dict[int, str] = {}
    for r in registers_for(is_vf):
        if r.offset % 4 or r.stride % 4 or r.offset + (r.count - 1) * r.stride >= bar_size:
            raise ValueError(f"{r.name} is misaligned or outside BAR0")
        for i in range(r.count):
            off = r.offset + i * r.stride
            if off in seen:
                raise ValueError(f"{r.name}[{i}] overlaps {seen[off]}")
            seen[off] = r.name
    return seen


def _check_layout() -> None:
    element_offsets(is_vf=False)
    element_offsets(is_vf=True)


_check_layout()

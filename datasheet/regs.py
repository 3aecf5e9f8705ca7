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
from dataclasses import dataclass, field

from datasheet import device


class Access(enum.Enum):
    """How the bus sees a register."""

    RO = "RO"      # read-only; writes ignored
    RW = "RW"      # read/write under write_mask
    W1C = "RW1C"   # write 1 to clear bits
    RC = "RC"      # read-only, cleared by a read


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

    @property
    def mask(self) -> int:
        return ((1 << self.width) - 1) << self.lsb

    def get(self, value: int) -> int:
        return (value & self.mask) >> self.lsb

    def put(self, value: int, field_value: int) -> int:
        return (value & ~self.mask) | ((field_value << self.lsb) & self.mask)


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
    count: int = 1          # >1: an array of ``count`` registers ``stride`` bytes apart
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


# -- identification ---------------------------------------------------------
NIC_ID = Register("NIC_ID", 0x0000, Access.RO, "Device identification magic ('SRNC').",
                  reset=device.NIC_ID_MAGIC)
VERSION = Register("VERSION", 0x0004, Access.RO, "Register-map version (major.minor in 16.16).",
                   reset=device.REG_MAP_VERSION)
FUNC_INFO = Register(
    "FUNC_INFO", 0x0008, Access.RO, "Which function this BAR belongs to (strapped by hardware).",
    fields=(Field("VF_INDEX", 0, 12, "0-based VF number (0 on the PF)"),
            Field("IS_VF", 31, 1, "1 on a VF, 0 on the PF")))

# -- control / status ---------------------------------------------------------
CTRL = Register(
    "CTRL", 0x0010, Access.RW, "Function control.", write_mask=0x00000001,
    fields=(Field("RST", 0, 1, "write 1: function software reset; self-clearing"),))
STATUS = Register(
    "STATUS", 0x0014, Access.RO, "Function status.",
    reset=0x00000001,
    fields=(Field("RST_DONE", 0, 1, "function is out of reset and ready for its driver"),))
SCRATCH = Register("SCRATCH", 0x0018, Access.RW, "Scratch register for driver self-test.",
                   write_mask=0xFFFFFFFF)

# -- error reporting ------------------------------------------------------------
ERR_STATUS = Register(
    "ERR_STATUS", 0x0020, Access.W1C, "Sticky error flags of bad register accesses.",
    write_mask=0x00000007,
    fields=(Field("UNIMPL", 0, 1, "access to an unimplemented offset"),
            Field("RO_WRITE", 1, 1, "write to a read-only register"),
            Field("MBX", 2, 1, "mailbox buffer written without holding it, or a disabled VF's mailbox used")))
ERR_UNIMPL_COUNT = Register("ERR_UNIMPL_COUNT", 0x0024, Access.RO,
                            "Number of accesses to unimplemented offsets (saturates).")
ERR_LAST_OFFSET = Register("ERR_LAST_OFFSET", 0x0028, Access.RO,
                           "BAR0 offset of the last bad access.")

# -- PF-only view of the SR-IOV state -------------------------------------------
PF_NUM_VFS = Register("PF_NUM_VFS", 0x0100, Access.RO,
                      "VFs currently enabled (NumVFs latched at VF Enable).", scope=Scope.PF)

PF_CTRL_EXT = Register(
    "PF_CTRL_EXT", 0x0104, Access.RW, "PF extended control.", write_mask=0x00000001, scope=Scope.PF,
    fields=(Field("PFRSTD", 0, 1, "PF driver ready: write 1 to clear RSTI and set RSTD in every VF "
                                  "mailbox; cleared by a PF reset"),))
PF_MBX_IMR = Register(
    "PF_MBX_IMR", 0x0108, Access.RW, "Mailbox interrupt enables for the PF's mailbox vector.",
    write_mask=0x00000007, scope=Scope.PF,
    fields=(Field("REQ", 0, 1, "a VF rang its doorbell (REQ)"),
            Field("ACK", 1, 1, "a VF acknowledged a PF message"),
            Field("VFLR", 2, 1, "a VF finished a Function Level Reset or software reset")))

# -- PF<->VF mailbox (igb/82576 style): VF side ---------------------------------------
VF_MAILBOX = Register(
    "VF_MAILBOX", 0x0200, Access.RW,
    "VF mailbox control. A read clears PFSTS, PFACK and RSTD; writing REQ or ACK with VFU "
    "clear releases the buffer.", write_mask=0x00000007, scope=Scope.VF,
    fields=(Field("REQ", 0, 1, "write 1: doorbell, a message for the PF is in the buffer"),
            Field("ACK", 1, 1, "write 1: the VF has read the PF's message"),
            Field("VFU", 2, 1, "VF holds the buffer (granted only while PFU is clear)"),
            Field("PFU", 3, 1, "RO: the PF holds the buffer"),
            Field("PFSTS", 4, 1, "RC: the PF wrote a message"),
            Field("PFACK", 5, 1, "RC: the PF acknowledged the VF's message"),
            Field("RSTI", 6, 1, "RO: PF reset in progress"),
            Field("RSTD", 7, 1, "RC: reset done, the VF may (re)start its handshake")))
VF_MBMEM = Register("VF_MBMEM", 0x0800, Access.RW,
                    "Mailbox buffer, writable by the VF only while it holds VFU.",
                    write_mask=0xFFFFFFFF, scope=Scope.VF, count=16)

# -- PF<->VF mailbox: PF side, one element per VF -------------------------------------
PF_MBX_REQ = Register("PF_MBX_REQ", 0x0200, Access.W1C, "Bit n of element i: VF 32i+n rang REQ.",
                      write_mask=0xFFFFFFFF, scope=Scope.PF, count=8)
PF_MBX_ACK = Register("PF_MBX_ACK", 0x0220, Access.W1C, "Bit n of element i: VF 32i+n wrote ACK.",
                      write_mask=0xFFFFFFFF, scope=Scope.PF, count=8)
PF_VFLRE = Register("PF_VFLRE", 0x0240, Access.W1C,
                    "Bit n of element i: VF 32i+n completed FLR or software reset (VFLR event).",
                    write_mask=0xFFFFFFFF, scope=Scope.PF, count=8)
PF_MAILBOX = Register(
    "PF_MAILBOX", 0x1000, Access.RW, "PF's mailbox control for VF n (element n).",
    write_mask=0x0000001B, scope=Scope.PF, count=256,
    fields=(Field("STS", 0, 1, "write 1: doorbell, a message for the VF is in the buffer"),
            Field("ACK", 1, 1, "write 1: the PF has read the VF's message"),
            Field("VFU", 2, 1, "RO: the VF holds the buffer"),
            Field("PFU", 3, 1, "PF holds the buffer (granted only while VFU is clear)"),
            Field("RVFU", 4, 1, "write 1: release the VF's lock (recovery)")))
PF_MBMEM = Register("PF_MBMEM", 0x4000, Access.RW,
                    "Mailbox buffers: VF n's 16 dwords at 0x4000 + 64n, writable while PFU is held.",
                    write_mask=0xFFFFFFFF, scope=Scope.PF, count=256 * 16)

REGISTERS: tuple[Register, ...] = (
    NIC_ID, VERSION, FUNC_INFO, CTRL, STATUS, SCRATCH,
    ERR_STATUS, ERR_UNIMPL_COUNT, ERR_LAST_OFFSET, PF_NUM_VFS, PF_CTRL_EXT, PF_MBX_IMR,
    VF_MAILBOX, VF_MBMEM, PF_MBX_REQ, PF_MBX_ACK, PF_VFLRE, PF_MAILBOX, PF_MBMEM,
)

#: saturation value of the error counters
COUNTER_MAX = 0xFFFFFFFF


def registers_for(is_vf: bool) -> tuple[Register, ...]:
    """Registers implemented by a PF (``is_vf=False``) or a VF."""
    excluded = Scope.PF if is_vf else Scope.VF
    return tuple(r for r in REGISTERS if r.scope is not excluded)


def by_name(name: str) -> Register:
    for r in REGISTERS:
        if r.name == name:
            return r
    raise KeyError(name)


def _check_layout() -> None:
    for is_vf, bar_size in ((False, device.PF_REG_BAR_SIZE), (True, device.VF_REG_BAR_SIZE)):
        spans = sorted((r.offset, r.end, r.name) for r in registers_for(is_vf))
        for (start, end, name), (nxt, _, other) in zip(spans, spans[1:]):
            if end > nxt:
                raise ValueError(f"{name} overlaps {other}")
        for start, end, name in spans:
            if start % 4 or end > bar_size:
                raise ValueError(f"{name} is misaligned or outside BAR0")


_check_layout()

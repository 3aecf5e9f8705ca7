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
    write_mask=0x00000003,
    fields=(Field("UNIMPL", 0, 1, "access to an unimplemented offset"),
            Field("RO_WRITE", 1, 1, "write to a read-only register")))
ERR_UNIMPL_COUNT = Register("ERR_UNIMPL_COUNT", 0x0024, Access.RO,
                            "Number of accesses to unimplemented offsets (saturates).")
ERR_LAST_OFFSET = Register("ERR_LAST_OFFSET", 0x0028, Access.RO,
                           "BAR0 offset of the last bad access.")

# -- PF-only view of the SR-IOV state -------------------------------------------
PF_NUM_VFS = Register("PF_NUM_VFS", 0x0100, Access.RO,
                      "VFs currently enabled (NumVFs latched at VF Enable).", scope=Scope.PF)

REGISTERS: tuple[Register, ...] = (
    NIC_ID, VERSION, FUNC_INFO, CTRL, STATUS, SCRATCH,
    ERR_STATUS, ERR_UNIMPL_COUNT, ERR_LAST_OFFSET, PF_NUM_VFS,
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
    seen: dict[int, str] = {}
    for r in REGISTERS:
        if r.offset % 4:
            raise ValueError(f"{r.name} is not dword aligned")
        if r.offset in seen:
            raise ValueError(f"{r.name} overlaps {seen[r.offset]}")
        if r.offset >= device.VF_REG_BAR_SIZE and r.scope is not Scope.PF:
            raise ValueError(f"{r.name} lies outside the VF BAR0")
        seen[r.offset] = r.name


_check_layout()

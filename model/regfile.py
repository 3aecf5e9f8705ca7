"""A register file built from :mod:`datasheet.regs` declarations.

Bus accesses (from MMIO TLPs) go through :meth:`RegisterFile.read` /
:meth:`RegisterFile.write`, which apply the declared access types; the device
core uses :meth:`get` / :meth:`set` to change hardware-owned values. Anything
not declared follows one rule: reads return 0, writes are ignored, and the
access is logged and counted in ERR_STATUS / ERR_UNIMPL_COUNT / ERR_LAST_OFFSET.
"""

from __future__ import annotations

import logging
from typing import Callable

from datasheet import regs
from datasheet.regs import Access, Register

WriteHook = Callable[[int, int], None]   # (old value, new value)


class RegisterFile:
    def __init__(self, registers: tuple[Register, ...], log: logging.Logger):
        self.log = log
        self._by_offset: dict[int, Register] = {r.offset: r for r in registers}
        self._values: dict[str, int] = {r.name: r.reset for r in registers}
        self._hooks: dict[str, WriteHook] = {}

    # -- hardware side -------------------------------------------------------
    def get(self, reg: Register) -> int:
        return self._values[reg.name]

    def set(self, reg: Register, value: int) -> None:
        self._values[reg.name] = value & 0xFFFFFFFF

    def on_write(self, reg: Register, hook: WriteHook) -> None:
        """Call ``hook(old, new)`` after every bus write to ``reg``."""
        self._hooks[reg.name] = hook

    def reset(self) -> None:
        for r in self._by_offset.values():
            self._values[r.name] = r.reset

    def implements(self, reg: Register) -> bool:
        return reg.name in self._values

    # -- bus side ------------------------------------------------------------
    def read(self, offset: int, length: int) -> bytes:
        out = bytearray()
        base = offset & ~3
        end = offset + length
        for dword in range(base, end, 4):
            out += self._read_dword(dword).to_bytes(4, "little")
        start = offset - base
        return bytes(out[start:start + length])

    def write(self, offset: int, data: bytes) -> None:
        pos = 0
        while pos < len(data):
            dword = (offset + pos) & ~3
            lane = (offset + pos) - dword
            n = min(4 - lane, len(data) - pos)
            byte_mask = ((1 << (8 * n)) - 1) << (8 * lane)
            value = int.from_bytes(bytes(lane) + data[pos:pos + n] + bytes(4 - lane - n), "little")
            self._write_dword(dword, value, byte_mask)
            pos += n

    def _read_dword(self, offset: int) -> int:
        reg = self._by_offset.get(offset)
        if reg is None:
            self._bad_access(offset, "read of unimplemented offset", regs.ERR_STATUS.field("UNIMPL"))
            return 0
        value = self._values[reg.name]
        if reg.access is Access.RC:
            self._values[reg.name] = 0
        return value

    def _write_dword(self, offset: int, value: int, byte_mask: int) -> None:
        reg = self._by_offset.get(offset)
        if reg is None:
            self._bad_access(offset, "write to unimplemented offset", regs.ERR_STATUS.field("UNIMPL"))
            return
        if reg.access in (Access.RO, Access.RC):
            self._bad_access(offset, f"write to read-only {reg.name}", regs.ERR_STATUS.field("RO_WRITE"),
                             count=False)
            return
        old = self._values[reg.name]
        mask = reg.write_mask & byte_mask
        if reg.access is Access.W1C:
            new = old & ~(value & mask)
        else:
            new = (old & ~mask) | (value & mask)
        self._values[reg.name] = new
        hook = self._hooks.get(reg.name)
        if hook is not None:
            hook(old, new)

    def _bad_access(self, offset: int, what: str, flag, count: bool = True) -> None:
        self.log.warning("BAR0 %s at 0x%05x: ignored", what, offset)
        if not self.implements(regs.ERR_STATUS):
            return
        self._values["ERR_STATUS"] |= flag.mask
        self._values["ERR_LAST_OFFSET"] = offset
        if count:
            self._values["ERR_UNIMPL_COUNT"] = min(self._values["ERR_UNIMPL_COUNT"] + 1, regs.COUNTER_MAX)

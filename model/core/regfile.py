"""A register file built from :mod:`datasheet.regs` declarations.

Bus accesses (from MMIO TLPs) go through :meth:`RegisterFile.read` /
:meth:`RegisterFile.write`, which apply the declared access types; the device
core uses :meth:`get` / :meth:`set` to change hardware-owned values, and
:meth:`bind` to hand a register (or register array) whose behaviour is more
than storage (e.g. the mailbox) to the block that owns it. Anything not
declared follows one rule: reads return 0, writes are ignored, and the access
is logged and counted in ERR_STATUS / ERR_UNIMPL_COUNT / ERR_LAST_OFFSET.
The errors one access raises are recorded once the whole access is applied, so a write
that spans a read-only register and ERR_STATUS cannot clear its own error (W1C).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable

from datasheet import regs
from datasheet.regs import Access, Register

WriteHook = Callable[[int, int], None]  # (old value, new value)
BoundRead = Callable[[int], int]  # (index) -> value
BoundWrite = Callable[[int, int, int], None]  # (index, value, byte-lane bit mask)


#: id of a register set -> (the set, its offset decode, each register's reset value): a
#: function's register file is made at every VF Enable and the decode is the same each time
_layouts: dict[int, tuple[tuple[Register, ...], dict[int, tuple[Register, int]], dict[str, int]]] = {}


def _layout(
    registers: tuple[Register, ...],
) -> tuple[tuple[Register, ...], dict[int, tuple[Register, int]], dict[str, int]]:
    """The offset decode and reset values of ``registers``, built once per register set
    (:func:`datasheet.regs.registers_for` returns the same set each time); read-only."""
    layout = _layouts.get(id(registers))
    if layout is None or layout[0] is not registers:
        by_offset = {r.at(i): (r, i) for r in registers for i in range(r.count)}
        layout = _layouts[id(registers)] = (registers, by_offset, {r.name: r.reset for r in registers})
    return layout


class RegisterFile:
    def __init__(self, registers: tuple[Register, ...], log: logging.Logger):
        self.log = log
        _set, self._by_offset, self._resets = _layout(registers)
        self._values: dict[str, list[int]] = {r.name: [r.reset] * r.count for r in registers}
        self._hooks: dict[str, WriteHook] = {}
        self._bound: dict[str, tuple[BoundRead, BoundWrite | None]] = {}
        self._raised: list[tuple[int, int]] | None = None  # (ERR_STATUS mask, offset) of the access in progress

    # -- hardware side -------------------------------------------------------
    def get(self, reg: Register, index: int = 0) -> int:
        return self._values[reg.name][index]

    def set(self, reg: Register, value: int, index: int = 0) -> None:
        self._values[reg.name][index] = value & 0xFFFFFFFF

    def add(self, reg: Register, n: int, index: int = 0) -> None:
        """A counter counts ``n`` more, wrapping at 32 bits as :meth:`set` stores it."""
        values = self._values[reg.name]
        values[index] = (values[index] + n) & 0xFFFFFFFF

    def on_write(self, reg: Register, hook: WriteHook) -> None:
        """Call ``hook(old, new)`` after every bus write to ``reg``."""
        self._hooks[reg.name] = hook

    def bind(self, reg: Register, read: BoundRead, write: BoundWrite | None) -> None:
        """Serve bus accesses to ``reg`` (all elements) with the owner's handlers."""
        self._bound[reg.name] = (read, write)

    def reset(self) -> None:
        for name, values in self._values.items():
            values[:] = [self._resets[name]] * len(values)

    def implements(self, reg: Register) -> bool:
        return reg.name in self._values

    def unimplemented(self, offset: int, what: str) -> None:
        """A bound block declares an access unimplemented (e.g. a queue beyond the allotment)."""
        self._bad_access(offset, what, "UNIMPL")

    def bad_access(self, offset: int, what: str, read_only: bool) -> None:
        """A bad access to another BAR of the function (the MSI-X BAR): flagged and counted here."""
        self._bad_access(offset, what, "RO_WRITE" if read_only else "UNIMPL", count=not read_only)

    def flag_error(self, field_name: str, offset: int) -> None:
        """Record a bad access in ERR_STATUS (used by bound blocks for their own rules)."""
        raised = (regs.ERR_STATUS.field(field_name).mask, offset)
        if self._raised is not None:
            self._raised.append(raised)
        else:
            self._record(*raised)

    def _record(self, mask: int, offset: int) -> None:
        self._values["ERR_STATUS"][0] |= mask
        self._values["ERR_LAST_OFFSET"][0] = offset

    # -- bus side ------------------------------------------------------------
    def read(self, offset: int, length: int) -> bytes:
        if not (offset | length) & 3:  # whole aligned dwords, as drivers access registers
            if length == 4:
                return self._read_dword(offset).to_bytes(4, "little")
            return struct.pack(f"<{length >> 2}I", *self._read_dwords(offset, length >> 2))
        out = bytearray()
        base = offset & ~3
        for dword in range(base, offset + length, 4):
            out += self._read_dword(dword).to_bytes(4, "little")
        start = offset - base
        return bytes(out[start : start + length])

    def write(self, offset: int, data: bytes) -> None:
        pos = 0
        self._raised = raised = []
        try:
            if not (offset | len(data)) & 3:  # whole aligned dwords, as drivers access registers
                if len(data) == 4:
                    self._write_dword(offset, int.from_bytes(data, "little"), 0xFFFFFFFF)
                    return
                for k, value in enumerate(struct.unpack(f"<{len(data) >> 2}I", data)):
                    self._write_dword(offset + 4 * k, value, 0xFFFFFFFF)
                return
            while pos < len(data):
                dword = (offset + pos) & ~3
                lane = (offset + pos) - dword
                n = min(4 - lane, len(data) - pos)
                byte_mask = ((1 << (8 * n)) - 1) << (8 * lane)
                value = int.from_bytes(bytes(lane) + data[pos : pos + n] + bytes(4 - lane - n), "little")
                self._write_dword(dword, value, byte_mask)
                pos += n
        finally:
            self._raised = None
            for mask, at in raised:
                self._record(mask, at)

    def _read_dwords(self, offset: int, n: int) -> list[int]:
        """The ``n`` dwords from ``offset``, each as :meth:`_read_dword` reads it and in the same
        order, taking the consecutive elements of a register array at once (a driver reading a
        mailbox buffer or the per-VF bitmaps in one access)."""
        out: list[int] = []
        end = offset + 4 * n
        while offset < end:
            hit = self._by_offset.get(offset)
            if hit is None or hit[0].stride != 4:
                out.append(self._read_dword(offset))
                offset += 4
                continue
            reg, index = hit
            take = min(reg.count - index, (end - offset) >> 2)
            bound = self._bound.get(reg.name)
            if bound is None:
                out += self._values[reg.name][index : index + take]
            else:
                read = bound[0]
                out += [read(i) & 0xFFFFFFFF for i in range(index, index + take)]
            offset += 4 * take
        return out

    def _read_dword(self, offset: int) -> int:
        hit = self._by_offset.get(offset)
        if hit is None:
            self._bad_access(offset, "BAR0 read of unimplemented offset", "UNIMPL")
            return 0
        reg, index = hit
        bound = self._bound.get(reg.name)
        if bound is not None:
            return bound[0](index) & 0xFFFFFFFF
        return self._values[reg.name][index]

    def _write_dword(self, offset: int, value: int, byte_mask: int) -> None:
        hit = self._by_offset.get(offset)
        if hit is None:
            self._bad_access(offset, "BAR0 write to unimplemented offset", "UNIMPL")
            return
        reg, index = hit
        if reg.access is Access.RO:
            self._bad_access(offset, f"BAR0 write to read-only {reg.name}", "RO_WRITE", count=False)
            return
        bound = self._bound.get(reg.name)
        if bound is not None:
            bound[1](index, value, byte_mask)
            return
        values = self._values[reg.name]
        old = values[index]
        mask = reg.write_mask & byte_mask
        if reg.access is Access.W1C:
            new = old & ~(value & mask)
        else:
            new = (old & ~mask) | (value & mask)
        values[index] = new
        hook = self._hooks.get(reg.name)
        if hook is not None:
            hook(old, new)

    def _bad_access(self, offset: int, what: str, flag: str, count: bool = True) -> None:
        self.log.warning("%s at 0x%05x: ignored", what, offset)
        if not self.implements(regs.ERR_STATUS):
            return
        self.flag_error(flag, offset)
        if count:
            counter = self._values["ERR_UNIMPL_COUNT"]
            counter[0] = min(counter[0] + 1, regs.COUNTER_MAX)


class SummaryBits:
    """A per-VF event bitmap behind a PF register array: bit n of element i is VF 32i+n;
    the PF driver writes 1 to clear what it took (W1C)."""

    def __init__(self, rf: RegisterFile, reg: Register):
        self.bits = 0
        rf.bind(reg, self._read, self._write)

    def _read(self, i: int) -> int:
        return (self.bits >> (32 * i)) & 0xFFFFFFFF

    def _write(self, i: int, value: int, byte_mask: int) -> None:
        self.bits &= ~((value & byte_mask) << (32 * i))

    def set(self, n: int) -> None:
        self.bits |= 1 << n

    def clear(self, n: int) -> None:
        self.bits &= ~(1 << n)

    def __contains__(self, n: int) -> bool:
        return bool(self.bits >> n & 1)

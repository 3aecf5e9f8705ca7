"""PF<->VF mailbox hardware (after the igb/82576 VMMailbox and VMBMEM registers).

One :class:`Mailbox` per VF holds the 16-dword buffer and both sides' control
bits. :class:`MailboxUnit` is the PF-wide part: per-VF request/ack/VFLR summary
bits, the PF interrupt mask, the PFRSTD (PF ready) state, and the register
bindings for the PF's and each VF's BAR0. Ownership is enforced here: a side
may write the buffer only while it holds its lock (VFU/PFU); a lock is granted
only while the other side's is clear; a refused write is ignored and flagged
in the writer's ERR_STATUS.MBX.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from datasheet import device, regs
from datasheet.mailbox import MBX_DWORDS
from datasheet.migration import MBX_FLAGS
from model import events as ev
from model.core.regfile import SummaryBits

if TYPE_CHECKING:
    import logging

    from model.core.regfile import BoundRead, BoundWrite, RegisterFile
    from model.core.slice import FunctionSlice

VF_BITS = regs.VF_MAILBOX.masks
PF_BITS = regs.PF_MAILBOX.masks


class Mailbox:
    """One VF's mailbox: buffer, locks and the VF-visible status bits."""

    def __init__(self):
        self.buf = [0] * MBX_DWORDS
        self.vfu = self.pfu = False
        self.pfsts = self.pfack = self.rsti = self.rstd = False
        self.violations = 0
        self.taken_back = 0  # times the PF took the buffer back with RVFU

    def clear(self, ready: bool) -> None:
        """Reset state: buffer and locks cleared; RSTD if the PF is ready, else RSTI."""
        self.__init__()
        self.rstd, self.rsti = ready, not ready


class MailboxUnit:
    """The PF-wide part; ``pf_interrupt(cause)`` raises the PF's misc vector for a PF_IMR cause.
    The VFs are the device core's slices, handed over at VF Enable."""

    def __init__(
        self, pf_regs: RegisterFile, *, pf_interrupt: Callable[[str], None], events: ev.EventBus, log: logging.Logger
    ):
        self.pf_regs = pf_regs
        self.log = log
        self._pf_interrupt = pf_interrupt
        self.vfs: list[FunctionSlice] = []
        self.boxes: list[Mailbox] = []
        self.req = SummaryBits(pf_regs, regs.PF_MBX_REQ)
        self.ack = SummaryBits(pf_regs, regs.PF_MBX_ACK)
        self.vflre = SummaryBits(pf_regs, regs.PF_VFLRE)
        self.pf_ready = False  # PF_CTRL_EXT.PFRSTD
        pf_regs.bind(regs.PF_MAILBOX, self._pf_ctrl_read, self._pf_ctrl_write)
        pf_regs.bind(regs.PF_MBMEM, self._pf_mem_read, self._pf_mem_write)
        pf_regs.on_write(regs.PF_CTRL_EXT, self._ctrl_ext_written)
        self._violation = events.topic(ev.MailboxViolation)

    # -- lifecycle ------------------------------------------------------------------
    def vfs_enabled(self, vfs: Sequence[FunctionSlice]) -> None:
        self.vfs = list(vfs)
        self.boxes = []
        for vf in vfs:
            box = Mailbox()
            box.clear(self.pf_ready)
            self.boxes.append(box)
            vf.regs.bind(regs.VF_MAILBOX, self._vf_ctrl_read(vf, box), self._vf_ctrl_write(vf, box))
            vf.regs.bind(regs.VF_MBMEM, lambda i, box=box: box.buf[i], self._vf_mem_write(vf, box))
        self._clear_summaries()

    def vfs_disabled(self) -> None:
        self.vfs = []
        self.boxes = []
        self._clear_summaries()

    def _clear_summaries(self) -> None:
        for summary in (self.req, self.ack, self.vflre):
            summary.bits = 0

    def vf_reset(self, vf: FunctionSlice) -> None:
        """VF FLR or software reset: that VF's mailbox cleared, VFLR event to the PF."""
        if vf.index >= len(self.boxes):
            return
        self.boxes[vf.index].clear(self.pf_ready)
        self._vf_irq(vf)  # RSTD for its driver (dropped while MSI-X is off, e.g. FLR)
        self.req.clear(vf.index)
        self.ack.clear(vf.index)
        self.vflre.set(vf.index)
        self._pf_irq("VFLR")

    def pf_reset(self) -> None:
        """PF software reset: every VF sees RSTI until the PF driver sets PFRSTD again."""
        self.pf_ready = False
        self._clear_summaries()
        for vf, box in zip(self.vfs, self.boxes):
            box.clear(False)
            self._vf_irq(vf)

    def _ctrl_ext_written(self, old: int, new: int) -> None:
        ready = bool(regs.PF_CTRL_EXT.field("PFRSTD").get(new))
        if ready and not self.pf_ready:
            self.pf_ready = True
            for vf, box in zip(self.vfs, self.boxes):
                box.rsti, box.rstd = False, True
                self._vf_irq(vf)
        self.pf_ready = ready

    # -- live migration ---------------------------------------------------------------
    def save(self, index: int) -> list[int]:
        """The MAILBOX section of VF ``index``: its buffer and flags (datasheet.migration.MBX_FLAGS)."""
        box = self.boxes[index]
        bits = {
            "VFU": box.vfu,
            "PFU": box.pfu,
            "PFSTS": box.pfsts,
            "PFACK": box.pfack,
            "RSTI": box.rsti,
            "RSTD": box.rstd,
            "REQ_PENDING": index in self.req,
            "ACK_PENDING": index in self.ack,
        }
        return [*box.buf, sum(1 << MBX_FLAGS[name] for name, on in bits.items() if on)]

    def load(self, index: int, words: list[int]) -> None:
        """Apply a MAILBOX section to VF ``index``'s mailbox."""
        box = self.boxes[index]
        box.buf = list(words[:MBX_DWORDS])
        flags = words[MBX_DWORDS]

        def bit(name: str) -> bool:
            return bool(flags >> MBX_FLAGS[name] & 1)

        box.vfu, box.pfu, box.pfsts, box.pfack = bit("VFU"), bit("PFU"), bit("PFSTS"), bit("PFACK")
        box.rsti, box.rstd = bit("RSTI"), bit("RSTD")
        for summary, name in ((self.req, "REQ_PENDING"), (self.ack, "ACK_PENDING")):
            if bit(name):
                summary.set(index)
            else:
                summary.clear(index)

    # -- interrupts -------------------------------------------------------------------
    def _pf_irq(self, cause: str) -> None:
        self._pf_interrupt(cause)

    @staticmethod
    def _vf_irq(vf: FunctionSlice) -> None:
        vf.msix.signal(device.VF_MBX_VECTOR)

    # -- VF side ------------------------------------------------------------------------
    def _vf_ctrl_read(self, vf: FunctionSlice, box: Mailbox) -> BoundRead:
        def read(_index: int) -> int:
            value = (
                (VF_BITS["VFU"] if box.vfu else 0)
                | (VF_BITS["PFU"] if box.pfu else 0)
                | (VF_BITS["PFSTS"] if box.pfsts else 0)
                | (VF_BITS["PFACK"] if box.pfack else 0)
                | (VF_BITS["RSTI"] if box.rsti else 0)
                | (VF_BITS["RSTD"] if box.rstd else 0)
            )
            box.pfsts = box.pfack = box.rstd = False  # read-to-clear bits
            return value

        return read

    def _vf_ctrl_write(self, vf: FunctionSlice, box: Mailbox) -> BoundWrite:
        def write(_index: int, value: int, byte_mask: int) -> None:
            value &= byte_mask
            box.vfu = bool(value & VF_BITS["VFU"]) and not box.pfu
            if value & VF_BITS["REQ"]:
                self.req.set(vf.index)
                self._pf_irq("REQ")
            if value & VF_BITS["ACK"]:
                self.ack.set(vf.index)
                self._pf_irq("ACK")

        return write

    def _vf_mem_write(self, vf: FunctionSlice, box: Mailbox) -> BoundWrite:
        def write(index: int, value: int, byte_mask: int) -> None:
            if not box.vfu:
                box.violations += 1
                vf.regs.flag_error("MBX", regs.VF_MBMEM.at(index))
                vf.log.warning("mailbox: VF wrote the buffer without holding VFU: ignored")
                if self._violation:
                    self._violation.emit(ev.MailboxViolation(vf.fn, "vf"))
                return
            box.buf[index] = (box.buf[index] & ~byte_mask) | (value & byte_mask)

        return write

    # -- PF side ------------------------------------------------------------------------
    def _box(self, n: int, offset: int) -> Mailbox | None:
        if n < len(self.boxes):
            return self.boxes[n]
        self.pf_regs.flag_error("MBX", offset)
        return None

    def _pf_ctrl_read(self, n: int) -> int:
        box = self.boxes[n] if n < len(self.boxes) else None
        if box is None:
            return 0
        return (PF_BITS["VFU"] if box.vfu else 0) | (PF_BITS["PFU"] if box.pfu else 0)

    def _pf_ctrl_write(self, n: int, value: int, byte_mask: int) -> None:
        box = self._box(n, regs.PF_MAILBOX.at(n))
        if box is None:
            return
        value &= byte_mask
        if value & PF_BITS["RVFU"] and box.vfu:
            box.vfu = False
            box.taken_back += 1
            if self._violation:
                self._violation.emit(ev.MailboxViolation(device.vf_port(n), "rvfu"))
        box.pfu = bool(value & PF_BITS["PFU"]) and not box.vfu
        if value & PF_BITS["STS"]:
            box.pfsts = True
        if value & PF_BITS["ACK"]:
            box.pfack = True
        if value & (PF_BITS["STS"] | PF_BITS["ACK"]):  # one interrupt per write, whichever it set
            self._vf_irq(self.vfs[n])

    def _pf_mem_read(self, index: int) -> int:
        n, word = divmod(index, MBX_DWORDS)
        return self.boxes[n].buf[word] if n < len(self.boxes) else 0

    def _pf_mem_write(self, index: int, value: int, byte_mask: int) -> None:
        n, word = divmod(index, MBX_DWORDS)
        box = self._box(n, regs.PF_MBMEM.at(index))
        if box is None:
            return
        if not box.pfu:
            box.violations += 1
            self.pf_regs.flag_error("MBX", regs.PF_MBMEM.at(index))
            self.log.warning("mailbox: PF wrote VF %d's buffer without holding PFU: ignored", n)
            if self._violation:
                self._violation.emit(ev.MailboxViolation(device.PF_PORT, "pf"))
            return
        box.buf[word] = (box.buf[word] & ~byte_mask) | (value & byte_mask)

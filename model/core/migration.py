"""The VF migration engine: per-VF migration state, quiescing, and the device-state blob.

The PF drives it through ``PF_MIG_*`` (:mod:`datasheet.migration`, ``docs/migration.md``):
a write of ``PF_MIG_CMD`` starts one command, which runs as a task of the PF and reports in
``PF_MIG_STATUS`` (BUSY, then DONE or ERR). A refused command changes nothing.

Quiescing (the documented rule): RUNNING_P2P stops the VF's TX -- no descriptor is fetched and
no frame started; a frame whose buffers are being read is sent and written back. STOP also
stops RX: the frame being written to the VF's buffers is finished and written back, frames
waiting for buffers and every frame the switch hands the VF while stopped are dropped and
counted in STAT_RX_DROPS, and every MSI-X message (a moderated one due later, a mailbox
message from the PF) is held in the PBA until the VF runs again (saved with it, so the
destination sends it). The command completes once no DMA turn of the VF is running, so from
then on the VF issues no DMA and raises no interrupt. Descriptors fetched but not
completed are abandoned: the head is the resume point, and the device that loads the state
fetches them again.

SAVE writes the blob by DMA under the PF's requester ID; LOAD reads it the same way, checks
all of it (format, CRC, compatibility, every section) and only then applies it, so a
refused blob leaves the VF as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from cocotb.triggers import Timer

from datasheet import device, regs
from datasheet import migration as mig
from datasheet.migration import Blob, BlobError, Compat, MigError, MigOp, MigState, Section, SectionType

if TYPE_CHECKING:
    import logging

    from model.core.mailbox import MailboxUnit
    from model.core.queues import DmaPort
    from model.core.regfile import RegisterFile
    from model.core.slice import FunctionSlice

CMD = {f.name: f for f in regs.PF_MIG_CMD.fields}
STATUS = {f.name: f for f in regs.PF_MIG_STATUS.fields}
FN_ERR = regs.STATUS.field("FN_ERR")
#: how often a quiescing command looks whether the VF's DMA turns have ended
DRAIN_POLL_NS = 100


class MigrationEngine:
    """Per-VF migration state behind the PF's ``PF_MIG_*`` registers.

    ``vfs()`` gives the VF slices, ``port`` is the PF's bus-master port (the blob's DMA),
    ``spawn`` starts a PF task, ``filters_changed`` tells the switch and the offload tables
    that the PF registers of a function were rewritten."""

    def __init__(
        self,
        pf_regs: RegisterFile,
        *,
        vfs: Callable[[], list[FunctionSlice]],
        mailbox: MailboxUnit,
        port: DmaPort,
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        filters_changed: Callable[[], None],
        total_vfs: int,
        log: logging.Logger,
    ):
        self.regs = pf_regs
        self.vfs = vfs
        self.mailbox = mailbox
        self.port = port
        self.spawn = spawn
        self.filters_changed = filters_changed
        self.compat = Compat(total_vfs=total_vfs)
        self.log = log
        self.states: list[MigState] = []
        self.busy = False
        pf_regs.bind(regs.PF_MIG_STATE, self._state_read, None)
        pf_regs.on_write(regs.PF_MIG_CMD, self._command)

    # -- lifecycle --------------------------------------------------------------------------
    def vfs_enabled(self, count: int) -> None:
        self.states = [MigState.RUNNING] * count

    def vf_reset(self, index: int) -> None:
        """An FLR or software reset of VF ``index`` ends whatever migration state it was in: the
        function is back at reset, running (its queues are disabled anyway)."""
        if index < len(self.states):
            self.states[index] = MigState.RUNNING
            self.vfs()[index].msix.stopped = False

    def _state_read(self, index: int) -> int:
        return int(self.states[index]) if index < len(self.states) else 0

    # -- commands ---------------------------------------------------------------------------
    def _status(self, vf: int, busy: bool = False, error: MigError = MigError.NONE) -> None:
        value = STATUS["VF"].put(0, vf)
        value = STATUS["BUSY"].put(value, int(busy))
        value = STATUS["DONE"].put(value, int(not busy and error is MigError.NONE))
        self.regs.set(regs.PF_MIG_STATUS, STATUS["ERR"].put(value, int(error)))

    def _refuse(self, vf: int, error: MigError, why: str) -> None:
        self.log.warning("migration command for VF %d refused (%s): %s", vf, error.name, why)
        self._status(vf, error=error)

    def _command(self, _old: int, value: int) -> None:
        index, op, target = CMD["VF"].get(value), CMD["OP"].get(value), CMD["TARGET"].get(value)
        if self.busy:
            # the running command keeps its status; this one is refused in the log only
            self.log.warning("migration command for VF %d while one runs: refused (BUSY)", index)
            return
        if index >= len(self.states):
            self._refuse(index, MigError.BAD_VF, f"{len(self.states)} VFs enabled")
            return
        if op not in {m.value for m in MigOp} or (op == MigOp.SET_STATE and target not in {m.value for m in MigState}):
            self._refuse(index, MigError.BAD_OP, f"operation {op}, target {target}")
            return
        vf = self.vfs()[index]
        state = self.states[index]
        op = MigOp(op)
        if op is MigOp.SET_STATE:
            target = MigState(target)
            if target not in mig.DEVICE_ARCS[state]:
                self._refuse(index, MigError.BAD_ARC, f"{state.name} -> {target.name} is not an arc")
                return
            if state is MigState.RUNNING and FN_ERR.get(vf.regs.get(regs.STATUS)):
                self._refuse(index, MigError.VF_ERROR, "the VF is in the error state")
                return
            work = self._set_state(index, vf, target)
        elif op is MigOp.SAVE:
            if state is not MigState.STOP:
                self._refuse(index, MigError.BAD_STATE, f"SAVE in {state.name}")
                return
            work = self._save(index, vf)
        else:
            if state is not MigState.RESUMING:
                self._refuse(index, MigError.BAD_STATE, f"LOAD in {state.name}")
                return
            work = self._load(index, vf)
        self.busy = True
        self._status(index, busy=True)
        self.spawn(self._run(index, work))

    async def _run(self, index: int, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
            self._status(index)
        except BlobError as exc:
            self._refuse(index, exc.error, str(exc))
        finally:
            self.busy = False

    # -- states -----------------------------------------------------------------------------
    async def _set_state(self, index: int, vf: FunctionSlice, target: MigState) -> None:
        queues = vf.queues
        queues.quiesce(tx=target is not MigState.RUNNING, rx=target in (MigState.STOP, MigState.RESUMING))
        while queues.busy():
            await Timer(DRAIN_POLL_NS, "ns")
        if target is MigState.STOP:
            queues.drop_waiting_rx()
        vf.msix.stopped = target in (MigState.STOP, MigState.RESUMING)
        if target is MigState.RUNNING_P2P and self.states[index] is MigState.STOP:
            vf.msix.deliver_pending()
        self.log.info("VF %d: migration state %s -> %s", index, self.states[index].name, target.name)
        self.states[index] = target

    # -- the blob -----------------------------------------------------------------------------
    def _port_words(self, fn: int) -> list[int]:
        words = []
        for reg, n in mig.SWITCH_REGS + mig.OFFLOAD_REGS:
            words += [self.regs.get(reg, fn * n + k) for k in range(n)]
        return words

    def blob_of(self, index: int, vf: FunctionSlice) -> Blob:
        port_words = self._port_words(vf.fn)
        split = mig.section_words(SectionType.SWITCH, self.compat)
        regs_words = []
        for reg in mig.MIGRATED_REGS:
            regs_words += [reg.offset, vf.regs.get(reg)]
        sections = [
            Section.of_words(SectionType.REGS, regs_words),
            Section.of_words(SectionType.QUEUES, vf.queues.save()),
            Section.of_words(SectionType.MSIX, vf.msix.save()),
            Section.of_words(SectionType.MAILBOX, self.mailbox.save(index)),
            Section.of_words(SectionType.SWITCH, port_words[:split]),
            Section.of_words(SectionType.OFFLOAD, port_words[split:]),
        ]
        return Blob(self.compat, index, sections)

    def _buffer(self) -> tuple[int, int]:
        addr = self.regs.get(regs.PF_MIG_ADDR_HI) << 32 | self.regs.get(regs.PF_MIG_ADDR_LO)
        return addr, self.regs.get(regs.PF_MIG_LEN)

    async def _save(self, index: int, vf: FunctionSlice) -> None:
        raw = self.blob_of(index, vf).pack()
        addr, size = self._buffer()
        if not self.port.bus_master_enable:
            raise BlobError(MigError.DMA_FAULT, "the PF's Bus Master Enable is clear")
        if len(raw) > size:
            raise BlobError(MigError.NO_SPACE, f"the blob has {len(raw)} bytes, the buffer {size}")
        try:
            await self.port.dma_write(addr, raw)
        except Exception as exc:  # noqa: BLE001 -- a failed DMA of the PF is this command's error
            raise BlobError(MigError.DMA_FAULT, f"write of the blob at {addr:#x}: {exc}") from None
        self.regs.set(regs.PF_MIG_LEN, len(raw))
        self.log.info("VF %d: state saved (%d bytes)", index, len(raw))

    def check(self, raw: bytes) -> Blob:
        """Decode and check a blob against this device; raises BlobError, changes nothing."""
        blob = Blob.parse(raw)
        if blob.compat != self.compat:
            raise BlobError(MigError.INCOMPATIBLE, f"saved by {blob.compat}, this device is {self.compat}")
        seen = [s.type for s in blob.sections if not s.flags & mig.SECTION_HOST]
        if seen != [int(k) for k in mig.DEVICE_SECTIONS]:
            raise BlobError(MigError.MALFORMED, f"sections {seen}, expected {[int(k) for k in mig.DEVICE_SECTIONS]}")
        for kind in mig.DEVICE_SECTIONS:
            section = blob.section(kind)
            want = mig.section_words(kind, self.compat)
            if len(section.payload) != 4 * want:
                raise BlobError(MigError.MALFORMED, f"{kind.name}: {len(section.payload)} bytes, expected {4 * want}")
        offsets = blob.section(SectionType.REGS).words[0::2]
        if offsets != [reg.offset for reg in mig.MIGRATED_REGS]:
            raise BlobError(MigError.MALFORMED, "REGS names other registers than MIGRATED_REGS")
        queues = blob.section(SectionType.QUEUES).words
        msix = blob.section(SectionType.MSIX).words
        if queues[0] != self.compat.queue_pairs or msix[0] != self.compat.msix_vectors:
            raise BlobError(MigError.MALFORMED, f"QUEUES for {queues[0]} pairs, MSIX for {msix[0]} vectors")
        return blob

    async def _load(self, index: int, vf: FunctionSlice) -> None:
        addr, size = self._buffer()
        if not mig.HEADER_SIZE <= size <= device.MIG_BLOB_MAX:
            raise BlobError(MigError.BAD_MAGIC, f"PF_MIG_LEN {size}")
        if not self.port.bus_master_enable:
            raise BlobError(MigError.DMA_FAULT, "the PF's Bus Master Enable is clear")
        try:
            raw = await self.port.dma_read(addr, size)
        except Exception as exc:  # noqa: BLE001
            raise BlobError(MigError.DMA_FAULT, f"read of the blob at {addr:#x}: {exc}") from None
        blob = self.check(bytes(raw))
        self.apply(index, vf, blob)

    def apply(self, index: int, vf: FunctionSlice, blob: Blob) -> None:
        """Load a checked blob into VF ``index``: registers, queues (quiesced until RUNNING),
        MSI-X vector controls and PBA, mailbox, its switch port and offloads."""
        pairs = blob.section(SectionType.REGS).words
        for reg, value in zip(mig.MIGRATED_REGS, pairs[1::2]):
            vf.regs.set(reg, value)
        vf.queues.load(blob.section(SectionType.QUEUES).words)
        vf.msix.load(blob.section(SectionType.MSIX).words)
        self.mailbox.load(index, blob.section(SectionType.MAILBOX).words)
        port_words = blob.section(SectionType.SWITCH).words + blob.section(SectionType.OFFLOAD).words
        pos = 0
        for reg, n in mig.SWITCH_REGS + mig.OFFLOAD_REGS:
            for k in range(n):
                self.regs.set(reg, port_words[pos] & reg.write_mask, vf.fn * n + k)
                pos += 1
        self.filters_changed()
        self.log.info("VF %d: state loaded (saved from VF %d)", index, blob.vf_index)

"""PF side of the mailbox: interrupt-driven service of every VF's requests.

One service coroutine wakes on the PF's mailbox MSI-X vector (with a poll as a watchdog,
slower while no conversation is open), reads the PF's interrupt causes (PF_ICR: link change,
PF error) with the REQ/ACK/VFLR/error summary bits in one read, and serves
requesting VFs round-robin, one message per VF per round, under a per-VF token-bucket rate
limit: a flooding VF gets NACK RATE_LIMITED and never delays another VF by more
than one message. Notifications to a VF (LINK_STATUS) are sent only when that
VF has no request pending and has acknowledged the previous PF message, so a
PF write never overwrites an unread message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cocotb
from cocotb.triggers import Event, First, Timer
from cocotb.utils import get_sim_time

from datasheet import device, regs
from datasheet import mailbox as mbx
from datasheet.mailbox import MbxError, Message
from pf_driver.filters import program_vf
from pf_driver.offloads import program_vf_offloads
from pf_driver.vf_info import VfInfo, VfState
from pf_driver.vf_requests import handle_request

if TYPE_CHECKING:
    from collections.abc import Iterator

    from pf_driver.driver import PfDriver

PFU = regs.PF_MAILBOX.field("PFU").mask
VFU = regs.PF_MAILBOX.field("VFU").mask
RVFU = regs.PF_MAILBOX.field("RVFU").mask
STS = regs.PF_MAILBOX.field("STS").mask
ACK = regs.PF_MAILBOX.field("ACK").mask
IMR_ALL = regs.PF_IMR.write_mask
#: the PF's misc vector without VF ACKs: an ACK matters only before the PF's next message to
#: that VF, and the service reads every summary, ACKs included, whenever it runs (a request, a
#: notification to send, the watchdog poll), so ACKs interrupt only while a notification waits
#: for one (:meth:`PfMailbox.service_once`)
IMR_NO_ACK = IMR_ALL & ~regs.PF_IMR.field("ACK").mask
#: watchdog poll of the summary registers, in case an interrupt was lost: this often while a
#: conversation is open (a VF owes an ACK, a notification waits to be sent) ...
SERVICE_POLL_NS = 1_000_000
#: ... and this often when none is (every event the service handles also raises the PF's
#: vector; Linux ixgbe's service timer runs every 2 s)
SERVICE_IDLE_POLL_NS = 10_000_000
#: what a service round reads in one access: the PF's interrupt causes (PF_ICR) and the per-VF
#: event summaries after them (igb reads its ICR, then the mailbox and VFLR summaries); PF_VFERR,
#: after those, only when PF_ICR.VFERR says a VF entered the error state. All write 1 to clear,
#: so one write clears what a read took
SUMMARIES = (regs.PF_MBX_REQ, regs.PF_MBX_ACK, regs.PF_VFLRE)
BLOCK = (regs.PF_ICR, *SUMMARIES)
assert all(a.end == b.offset for a, b in zip(BLOCK, (*BLOCK[1:], regs.PF_VFERR))), "summaries not contiguous"
assert all(r.access is regs.Access.W1C for r in (*BLOCK, regs.PF_VFERR)), "summaries not write-1-to-clear"
ICR_LSC = regs.PF_ICR.field("LSC").mask
ICR_FN_ERR = regs.PF_ICR.field("FN_ERR").mask
ICR_VFERR = regs.PF_ICR.field("VFERR").mask


def set_bits(bits: int) -> Iterator[int]:
    """The indices of the bits set in ``bits``, lowest first (Linux's ``for_each_set_bit``)."""
    while bits:
        low = bits & -bits
        yield low.bit_length() - 1
        bits ^= low


class PfMailbox:
    def __init__(self, drv: PfDriver):
        self.drv = drv
        self.log = drv.log
        self.vfs: list[VfInfo] = []
        self.wake = Event()
        self.timeouts = 0
        self.rounds = 0
        self._task = None
        self._next = 0
        self._imr = IMR_NO_ACK  # what the service last wrote to PF_IMR
        #: bit n: VF n may owe an ACK or have a notification waiting (set where either starts:
        #: :meth:`_send`, :meth:`notify`), so that a round looks at those VFs, not all of them
        self._open = 0

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        """Enable mailbox interrupts, hook the vector, tell the VFs the PF is ready."""
        self.drv.pdev.request_irq(device.PF_MBX_VECTOR, self._irq)
        await self.restart()
        self._task = cocotb.start_soon(self._service())

    async def restart(self) -> None:
        """(Re)initialise after probe or PF reset: every VF must redo RESET."""
        for vf in self.vfs:
            vf.state = VfState.NOT_RESET
            vf.clear_requested_state()
            vf.awaiting_ack = False
            await program_vf(self.drv, vf)
            await program_vf_offloads(self.drv, vf)
        self._imr = IMR_NO_ACK
        await self.drv.write_reg(regs.PF_IMR, self._imr)
        await self.drv.write_reg(regs.PF_CTRL_EXT, regs.PF_CTRL_EXT.field("PFRSTD").mask)
        self.drv.check_link(await self.drv.read_reg(regs.STATUS))  # PF_ICR.LSC shows later changes

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def vfs_enabled(self, num_vfs: int) -> None:
        self.vfs = [VfInfo(i, self.permanent_mac(i)) for i in range(num_vfs)]
        self._open = 0
        for vf in self.vfs:
            vf.clear_requested_state()

    def vfs_disabled(self) -> None:
        self.vfs = []
        self._open = 0

    def permanent_mac(self, index: int) -> bytes:
        return device.permanent_mac(int(self.drv.pdev.pcie_id), index)

    async def _irq(self) -> None:
        self.wake.set()

    # -- service loop ---------------------------------------------------------------------
    def conversing(self) -> bool:
        """A conversation is open: some VF owes an ACK or has a notification waiting."""
        self._open = sum(1 << vf.index for vf in self._open_vfs() if vf.awaiting_ack or vf.pending_notifications)
        return bool(self._open)

    def _open_vfs(self) -> list[VfInfo]:
        """The VFs that may owe an ACK or have a notification waiting (:attr:`_open`), in index order."""
        return [self.vfs[n] for n in set_bits(self._open & ((1 << len(self.vfs)) - 1))]

    async def _service(self) -> None:
        while True:
            poll = SERVICE_POLL_NS if self.conversing() else SERVICE_IDLE_POLL_NS
            await First(self.wake.wait(), Timer(poll, "ns"))
            self.wake.clear()
            try:
                await self.service_once()
            except Exception:  # a VF that vanished mid-message must not kill the service
                self.log.exception("mailbox service round failed")

    async def _summaries(self, words: int) -> tuple[int, int, int, int, int]:
        """PF_ICR and the first ``words`` dwords of each per-VF summary, as one bitmap each (bit
        n: VF n): (PF_ICR, VFLR, errors, ACKs, requests). The block is sampled in one read and
        what it took cleared in one write (write 1 to clear: :meth:`PfDriver.clear_block`);
        PF_VFERR likewise, read only when PF_ICR.VFERR is set. A PF error leaves everything set:
        the PF reset it calls for clears the PF's registers."""
        block = await self.drv.read_block(BLOCK[0], BLOCK[-1])
        icr = block[regs.PF_ICR.offset]
        if icr & ICR_FN_ERR:
            return icr, 0, 0, 0, 0
        lsc = {regs.PF_ICR.offset: ICR_LSC} if icr & ICR_LSC else {}
        reqs, acks, vflr = await self._take(block, SUMMARIES, words, lsc)
        errors = 0
        if icr & ICR_VFERR and words:
            vferr = await self.drv.read_block(regs.PF_VFERR, regs.PF_VFERR)
            (errors,) = await self._take(vferr, (regs.PF_VFERR,), words, {})
        return icr, vflr, errors, acks, reqs

    async def _take(
        self, block: dict[int, int], summaries: tuple[regs.Register, ...], words: int, taken: dict[int, int]
    ) -> list[int]:
        """The first ``words`` dwords of each of ``summaries`` in ``block`` as one bitmap each,
        and what they took (with ``taken``) cleared in one write."""
        bits = [_bitmap(block, reg, words, taken) for reg in summaries]
        if taken:
            await self.drv.clear_block(taken)
        return bits

    async def service_once(self) -> None:
        vfs = self.vfs
        words = (len(vfs) + 31) // 32
        self.rounds += 1
        icr, vflr, errors, acks, reqs = await self._summaries(words)
        if icr & ICR_FN_ERR:
            await self.drv.pf_error_event()
            return
        if icr & ICR_LSC:
            self.drv.check_link(await self.drv.read_reg(regs.STATUS))
        if vfs is not self.vfs or not words:
            return  # no VFs, or SR-IOV reconfigured meanwhile
        now = get_sim_time("ns")
        for vf in self._flagged(vfs, vflr | errors | acks, self._open_vfs()):
            bit = 1 << vf.index
            if errors & bit:
                await self.drv.vf_error_event(vf)
            if vflr & bit and vf.state is not VfState.DISABLED:
                self.log.info("VF %d: VFLR, state cleared", vf.index)
                self.drv.migration.reset(vf.index)
                vf.state = VfState.NOT_RESET
                vf.clear_requested_state()
                vf.awaiting_ack = False
                await program_vf(self.drv, vf)
                await program_vf_offloads(self.drv, vf)
            if acks & bit or (vf.awaiting_ack and now - vf.awaiting_since > mbx.MBX_TIMEOUT_NS):
                if not acks & bit:
                    self.timeouts += 1
                vf.awaiting_ack = False
        start = self._next
        self._next = (self._next + 1) % len(vfs)
        # every VF in turn from ``start``, round-robin; one with neither a request nor a
        # notification waiting (no bit in ``reqs`` or :attr:`_open`, looked up afresh after
        # each VF served) has nothing to do, and is passed over
        for lo, hi in ((start, len(vfs)), (0, start)):
            n = lo
            while n < hi:
                waiting = ((reqs | self._open) >> n) & ((1 << (hi - n)) - 1)
                if not waiting:
                    break
                n += (waiting & -waiting).bit_length() - 1
                vf = vfs[n]
                if reqs >> n & 1:
                    await self._serve_request(vf)
                elif vf.pending_notifications and not vf.awaiting_ack:
                    await self._send(vf, vf.pending_notifications.pop(0))
                if vfs is not self.vfs:
                    return
                n += 1
        await self._ack_interrupts(any(vf.pending_notifications and vf.awaiting_ack for vf in self._open_vfs()))

    async def _ack_interrupts(self, wanted: bool) -> None:
        """Let VF ACKs raise the PF's vector while a notification waits for one, else not."""
        imr = IMR_ALL if wanted else IMR_NO_ACK
        if imr != self._imr:
            self._imr = imr
            await self.drv.write_reg(regs.PF_IMR, imr)

    @staticmethod
    def _flagged(vfs: list[VfInfo], summary: int, open_vfs: list[VfInfo]) -> list[VfInfo]:
        """The VFs a round's event handling can concern, in index order: those with a bit in
        ``summary`` (bit n: VF n) and those owing an ACK (which may have timed out; all are
        among ``open_vfs``). Only the service sends a message, so no other VF starts owing one
        during the round."""
        flagged = {vf.index for vf in open_vfs if vf.awaiting_ack} | set(set_bits(summary))
        return [vfs[n] for n in sorted(flagged) if n < len(vfs)]

    def _take_token(self, vf: VfInfo) -> bool:
        now = get_sim_time("ns")
        vf.tokens = min(mbx.MBX_RATE_BURST, vf.tokens + (now - vf.last_refill_ns) / mbx.MBX_RATE_REFILL_NS)
        vf.last_refill_ns = now
        if vf.tokens < 1:
            return False
        vf.tokens -= 1
        return True

    async def _serve_request(self, vf: VfInfo) -> None:
        """Read the VF's message and answer it: the reply and the acknowledgement of the request
        go out in one write (:meth:`_send`)."""
        words = await self._receive(vf.index)
        try:
            vf.received += 1
            msg = Message.decode(words)
            if self._take_token(vf):
                reply = handle_request(vf, msg)
                if reply.ack and msg.opcode in mbx.FILTER_OPCODES:
                    await program_vf(self.drv, vf)
                if reply.ack and msg.opcode in mbx.OFFLOAD_OPCODES:
                    await program_vf_offloads(self.drv, vf)
            else:
                vf.rate_limited += 1
                vf.nacked += 1
                reply = Message(msg.opcode, [MbxError.RATE_LIMITED], nack=True)
        except Exception:
            await self.drv.write_reg(regs.PF_MAILBOX, ACK, vf.index)  # acknowledged, without a reply
            raise
        if reply.nack and reply.payload[0] != MbxError.RATE_LIMITED:  # a flood must not flood the log
            self.log.info("VF %d: %s NACK %s", vf.index, _name(msg.opcode), MbxError(reply.payload[0]).name)
        await self._send(vf, reply, ACK | STS)

    # -- transport --------------------------------------------------------------------------
    async def _lock(self, n: int) -> bool:
        """Take VF ``n``'s buffer; a VF holding it past MBX_LOCK_HOLD_NS loses it (RVFU), counted."""
        start = get_sim_time("ns")
        deadline = start + mbx.MBX_TIMEOUT_NS
        while True:
            await self.drv.write_reg(regs.PF_MAILBOX, PFU, n)
            value = await self.drv.read_reg(regs.PF_MAILBOX, n)
            if value & PFU:
                return True
            if value & VFU and get_sim_time("ns") - start > mbx.MBX_LOCK_HOLD_NS:
                await self.drv.write_reg(regs.PF_MAILBOX, RVFU | PFU, n)
                if await self.drv.read_reg(regs.PF_MAILBOX, n) & PFU:
                    if n < len(self.vfs):
                        self.vfs[n].lock_hogs += 1
                    self.log.warning(
                        "VF %d held the mailbox past %d us: taken back (RVFU)", n, mbx.MBX_LOCK_HOLD_NS // 1000
                    )
                    return True
            if get_sim_time("ns") > deadline:
                self.timeouts += 1
                self.log.warning("VF %d: mailbox lock not granted (VF holds VFU)", n)
                return False
            await Timer(mbx.MBX_LOCK_RETRY_NS, "ns")

    async def _receive(self, n: int) -> list[int]:
        """Read VF ``n``'s message: the whole buffer in one read, without the lock (Linux's
        ``ixgbe_read_mbx_pf`` since its mailbox rework; the read that locks is its ``_legacy``
        one). The VF rang REQ, which released the buffer, and writes no other message before
        the PF's ACK; one read takes the buffer as it is."""
        buffer = await self.drv.read_regs(regs.PF_MBMEM, mbx.MBX_DWORDS, n * mbx.MBX_DWORDS)
        length = min(mbx.HDR_LEN.get(buffer[0]), mbx.MAX_PAYLOAD)
        return buffer[: 1 + length]

    async def _send(self, vf: VfInfo, msg: Message, doorbell: int = STS) -> bool:
        """Write a message to VF ``vf``: take the lock, the message into its buffer, then
        ``doorbell`` in one write, which releases the lock: STS, with ACK when the message
        answers the request :meth:`_receive` read (PFACK and PFSTS together), as
        ``ixgbe_write_mbx_pf`` takes the lock for any message. False if the lock was not had."""
        if not await self._lock(vf.index):
            return False
        await self.drv.write_regs(regs.PF_MBMEM, msg.encode(), vf.index * mbx.MBX_DWORDS)
        await self.drv.write_reg(regs.PF_MAILBOX, doorbell, vf.index)
        vf.awaiting_ack = True
        vf.awaiting_since = get_sim_time("ns")
        self._open |= 1 << vf.index
        return True

    def notify(self, vf: VfInfo, msg: Message) -> None:
        """Queue a PF->VF notification; the service sends it when the buffer is free."""
        vf.pending_notifications.append(msg)
        self._open |= 1 << vf.index
        self.wake.set()


def _bitmap(block: dict[int, int], reg: regs.Register, words: int, taken: dict[int, int]) -> int:
    """The first ``words`` dwords of summary ``reg`` in ``block`` (BAR0 offset -> value) as one
    bitmap (bit n: VF n); the dwords with bits set are added to ``taken``, to be cleared."""
    bits = 0
    for i in range(words):
        value = block[reg.at(i)]
        if value:
            taken[reg.at(i)] = value
        bits |= value << (32 * i)
    return bits


def _name(opcode: int) -> str:
    try:
        return mbx.Opcode(opcode).name
    except ValueError:
        return f"opcode {opcode:#x}"

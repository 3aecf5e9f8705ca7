"""VF side of the mailbox: request/reply with timeouts and bounded retries, and
notifications (LINK_STATUS) handled from the mailbox interrupt.

The read-to-clear status bits (PFSTS, PFACK, RSTD) are accumulated in software
(as igbvf does), so no event is lost to a read made for another purpose.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cocotb
from cocotb.triggers import Event, First, Lock, Timer
from cocotb.utils import get_sim_time

from datasheet import device, regs
from datasheet import mailbox as mbx
from datasheet.mailbox import Message, Opcode

if TYPE_CHECKING:
    from vf_driver.driver import VfDriver

VF_BITS = regs.VF_MAILBOX.masks
STICKY = VF_BITS["PFSTS"] | VF_BITS["PFACK"] | VF_BITS["RSTD"]


class MailboxTimeout(Exception):
    """The PF did not answer within the protocol's timeout and retries."""


class DeviceGone(MailboxTimeout):
    """The VF's registers read all ones: the VF was disabled or removed."""


class VfMailbox:
    def __init__(self, drv: VfDriver):
        self.drv = drv
        self.log = drv.log
        self.bits = 0  # accumulated PFSTS / PFACK / RSTD
        self.rsti = False
        self.irq = Event()
        self.lock = Lock()  # one request/reply exchange at a time
        self.timeouts = 0

    def start(self) -> None:
        self.drv.pdev.request_irq(device.VF_MBX_VECTOR, self._irq)

    async def _irq(self) -> None:
        if self.drv.removed:
            return
        self.irq.set()
        if not self.lock.locked():
            cocotb.start_soon(self._poll_notifications())

    async def read_ctrl(self) -> int:
        if self.drv.removed:
            raise DeviceGone(f"{self.drv.pdev.pcie_id}: driver removed")
        value = await self.drv.read_reg(regs.VF_MAILBOX)
        if value == 0xFFFFFFFF:
            raise DeviceGone(f"{self.drv.pdev.pcie_id}: VF registers read all ones")
        self.bits |= value & STICKY
        self.rsti = bool(value & VF_BITS["RSTI"])
        return value

    def take(self, bit: str) -> bool:
        if self.bits & VF_BITS[bit]:
            self.bits &= ~VF_BITS[bit]
            return True
        return False

    async def wait_for(self, bit: str, timeout_ns: int = mbx.MBX_TIMEOUT_NS, read_first: bool = True) -> bool:
        """Wait until ``bit`` was seen: taken from the bits already read, else read after the
        mailbox interrupt (or a watchdog poll, in case it was lost). ``read_first=False``: the
        caller armed the interrupt (:meth:`arm`) before the doorbell or the read after which
        ``bit`` can be set, and the device raises it with every PFSTS and PFACK, so the register
        is read when the interrupt comes, not at once (a read before the PF answered finds
        nothing)."""
        deadline = get_sim_time("ns") + timeout_ns
        read = read_first
        while True:
            if self.take(bit):
                return True
            if read:
                self.arm()
                await self.read_ctrl()
                if self.take(bit):
                    return True
            left = deadline - get_sim_time("ns")
            if left <= 0:
                return False
            await First(self.irq.wait(), Timer(max(int(min(left, timeout_ns // 8)), 1), "ns"))
            read = True

    def arm(self) -> None:
        """Forget the interrupts seen so far: a bit the PF sets from now on raises a new one.
        Called right before a register read (or a doorbell) whose answer the caller waits for."""
        self.irq.clear()

    async def _lock_buffer(self) -> bool:
        deadline = get_sim_time("ns") + mbx.MBX_TIMEOUT_NS
        while True:
            await self.drv.write_reg(regs.VF_MAILBOX, VF_BITS["VFU"])
            if await self.read_ctrl() & VF_BITS["VFU"]:
                return True
            if get_sim_time("ns") > deadline:
                return False
            await Timer(mbx.MBX_LOCK_RETRY_NS, "ns")

    async def _write(self, msg: Message) -> bool:
        if not await self._lock_buffer():
            return False
        await self.drv.write_regs(regs.VF_MBMEM, msg.encode())
        self.arm()  # the PF's answer to this doorbell raises the interrupt
        await self.drv.write_reg(regs.VF_MAILBOX, VF_BITS["REQ"])  # doorbell; releases VFU
        return True

    async def _read(self) -> Message:
        """The PF's message, once PFSTS was seen: the whole buffer in one read, then ACK, without
        taking VFU (Linux's ``ixgbevf_read_mbx_vf``; the read that locks is its ``_legacy``
        one): the PF writes no other message to this buffer until the ACK, and the one read
        takes the buffer as it is. DeviceGone as :meth:`read_ctrl` if the driver was removed
        or the buffer reads all ones."""
        if self.drv.removed:
            raise DeviceGone(f"{self.drv.pdev.pcie_id}: driver removed")
        buffer = await self.drv.read_regs(regs.VF_MBMEM, mbx.MBX_DWORDS)
        if all(word == 0xFFFFFFFF for word in buffer):
            raise DeviceGone(f"{self.drv.pdev.pcie_id}: VF registers read all ones")
        n = min(mbx.HDR_LEN.get(buffer[0]), mbx.MAX_PAYLOAD)
        await self.drv.write_reg(regs.VF_MAILBOX, VF_BITS["ACK"])  # acknowledge
        return Message.decode(buffer[: 1 + n])

    def _notification(self, msg: Message) -> None:
        self.drv.on_notification(msg)

    async def request(self, opcode: Opcode, payload: list[int] | None = None) -> Message:
        """Send a request and return the PF's reply (ACK or NACK); raise MailboxTimeout."""
        msg = Message(opcode, list(payload or []))
        async with self.lock:
            for attempt in range(mbx.MBX_RETRIES):
                reply = await self._exchange(msg)
                if reply is not None:
                    return reply
                self.timeouts += 1
                self.log.warning("mailbox: %s attempt %d timed out", opcode.name, attempt + 1)
        raise MailboxTimeout(f"{opcode.name}: no reply after {mbx.MBX_RETRIES} attempts")

    async def _exchange(self, msg: Message) -> Message | None:
        """One attempt: write, ring REQ, wait PFACK, then PFSTS and the reply."""
        self.take("PFACK")
        if not await self._write(msg) or not await self.wait_for("PFACK", read_first=False):
            return None
        while await self.wait_for("PFSTS", read_first=False):
            reply = await self._read()
            if not reply.is_reply:
                self._notification(reply)
            elif reply.opcode == msg.opcode:
                return reply
            else:
                self.log.warning("mailbox: stale reply %#x while waiting for %s", reply.opcode, msg.opcode)
        return None

    async def _poll_notifications(self) -> None:
        try:
            async with self.lock:
                await self.read_ctrl()
                while self.take("PFSTS"):
                    msg = await self._read()
                    if not msg.is_reply:
                        self._notification(msg)
                    await self.read_ctrl()
        except DeviceGone:
            return
        self.drv.check_reset()

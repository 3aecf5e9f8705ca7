"""A minimal VF driver of your own, written against the NIC's datasheet and the host APIs
only (``datasheet``, ``pcicore``, the DMA API), not against the project's VF driver.

It does what every VF driver must: probe (identity through its own BAR0), the mailbox
reset handshake with the PF (RSTD, RESET -> MAC + CTS, API version, queue allotment), one
TX and one RX queue validated by the PF, then sending and receiving frames. It polls
instead of taking interrupts, to stay short.
"""

from __future__ import annotations

from cocotb.triggers import Timer
from cocotb.utils import get_sim_time

import pcicore
from datasheet import descriptors as d
from datasheet import device, regs
from datasheet import mailbox as mbx
from datasheet.mailbox import Message, Opcode

BITS = regs.VF_MAILBOX.masks
RING = 16  # descriptors per ring (a power of two within the datasheet's limits)
BUF = 2048  # bytes per buffer
POLL_NS = 1_000


class DriverError(Exception):
    pass


class MyVfDriver:
    """Bind with ``system.enable_vfs(n, driver=MyVfDriver)``; the platform gives it a DMA API."""

    def __init__(self, pdev):
        self.pdev = pdev
        self.bar0 = None
        self.mac = b""
        self.sticky = 0  # PFSTS / PFACK / RSTD are cleared by reading VF_MAILBOX: keep them
        self.tx_next = self.rx_next = 0

    # -- registers -------------------------------------------------------------------
    async def read_reg(self, reg: regs.Register, index: int = 0) -> int:
        return await self.bar0.read_dword(reg.at(index))

    async def write_reg(self, reg: regs.Register, value: int, index: int = 0) -> None:
        await self.bar0.write_dword(reg.at(index), value)

    # -- probe -----------------------------------------------------------------------
    async def probe(self) -> None:
        await self.pdev.set_master()
        self.bar0 = self.pdev.bar_window[device.REG_BAR]
        if await self.read_reg(regs.NIC_ID) != device.NIC_ID_MAGIC:
            raise DriverError("not our NIC")
        if not regs.FUNC_INFO.field("IS_VF").get(await self.read_reg(regs.FUNC_INFO)):
            raise DriverError("not a VF")
        await self.wait_bit("RSTD", mbx.MBX_TIMEOUT_NS * 4)
        reply = await self.request(Opcode.RESET)
        if not reply.cts:
            raise DriverError("RESET without CTS")
        self.mac = mbx.words_to_mac(reply.payload)
        major, minor = mbx.API_VERSION
        await self.request(Opcode.API_NEGOTIATE, [major << 16 | minor])
        self.num_queues = (await self.request(Opcode.GET_QUEUES)).payload[0]

    async def remove(self) -> None:
        if self.bar0 is not None:
            await self.write_reg(regs.TXDCTL, 0)
            await self.write_reg(regs.RXDCTL, 0)

    # -- mailbox (VF side of datasheet.mailbox's protocol) ----------------------------
    async def read_mailbox(self) -> int:
        value = await self.read_reg(regs.VF_MAILBOX)
        self.sticky |= value & (BITS["PFSTS"] | BITS["PFACK"] | BITS["RSTD"])
        return value

    async def wait_bit(self, name: str, timeout_ns: int = mbx.MBX_TIMEOUT_NS) -> None:
        deadline = get_sim_time("ns") + timeout_ns
        while True:
            await self.read_mailbox()
            if self.sticky & BITS[name]:
                self.sticky &= ~BITS[name]
                return
            if get_sim_time("ns") > deadline:
                raise DriverError(f"no {name} from the PF")
            await Timer(POLL_NS, "ns")

    async def lock(self) -> None:
        while True:
            await self.write_reg(regs.VF_MAILBOX, BITS["VFU"])
            if await self.read_mailbox() & BITS["VFU"]:
                return
            await Timer(mbx.MBX_LOCK_RETRY_NS, "ns")

    async def request(self, opcode: Opcode, payload: list[int] | None = None) -> Message:
        await self.lock()
        for i, word in enumerate(Message(opcode, list(payload or [])).encode()):
            await self.write_reg(regs.VF_MBMEM, word, i)
        await self.write_reg(regs.VF_MAILBOX, BITS["REQ"])
        await self.wait_bit("PFACK")
        await self.wait_bit("PFSTS")
        await self.lock()
        header = await self.read_reg(regs.VF_MBMEM, 0)
        words = [header] + [await self.read_reg(regs.VF_MBMEM, 1 + i) for i in range(mbx.HDR_LEN.get(header))]
        await self.write_reg(regs.VF_MAILBOX, BITS["ACK"])
        reply = Message.decode(words)
        if not reply.ack:
            raise DriverError(f"{opcode.name} refused: {mbx.MbxError(reply.payload[0]).name}")
        return reply

    # -- one TX and one RX queue --------------------------------------------------------
    async def open(self) -> None:
        dma = pcicore.dma_device(self.pdev)
        if dma is None:
            raise DriverError("the platform gave this VF no DMA API")
        self.tx_desc, tx_iova = dma.dma_alloc_coherent(RING * d.DESC_SIZE)
        self.rx_desc, rx_iova = dma.dma_alloc_coherent(RING * d.DESC_SIZE)
        self.tx_buf, self.tx_buf_iova = dma.dma_alloc_coherent(RING * BUF)
        self.rx_buf, self.rx_buf_iova = dma.dma_alloc_coherent(RING * BUF)
        for rx, iova in ((False, tx_iova), (True, rx_iova)):
            qcfg = mbx.QCFG_RX.put(mbx.QCFG_INDEX.put(0, 0), int(rx))
            await self.request(Opcode.CONFIG_QUEUES, [qcfg, iova & 0xFFFFFFFF, iova >> 32, RING, BUF if rx else 0])
        for lo, hi, length, ctl, iova in (
            (regs.TDBAL, regs.TDBAH, regs.TDLEN, regs.TXDCTL, tx_iova),
            (regs.RDBAL, regs.RDBAH, regs.RDLEN, regs.RXDCTL, rx_iova),
        ):
            await self.write_reg(lo, iova & 0xFFFFFFFF)
            await self.write_reg(hi, iova >> 32)
            await self.write_reg(length, RING)
            await self.write_reg(ctl, regs.TXDCTL.field("ENABLE").mask)
        for slot in range(RING - 1):  # one slot stays empty: full != empty
            self.rx_desc.write(slot * d.DESC_SIZE, d.rx_desc(self.rx_buf_iova + slot * BUF, BUF))
        await self.write_reg(regs.RDT, RING - 1)

    async def send(self, frame: bytes, timeout_ns: int = 1_000_000) -> int:
        """Transmit one frame; wait for its write-back; return the write-back status."""
        slot = self.tx_next
        self.tx_buf.write(slot * BUF, frame)
        self.tx_desc.write(slot * d.DESC_SIZE, d.tx_desc(self.tx_buf_iova + slot * BUF, len(frame)))
        self.tx_next = (slot + 1) % RING
        await self.write_reg(regs.TDT, self.tx_next)
        return await self._done(self.tx_desc, slot, timeout_ns)

    async def receive(self, timeout_ns: int = 1_000_000) -> bytes:
        """The next received frame (one buffer), then its buffer goes back to the device."""
        slot = self.rx_next
        await self._done(self.rx_desc, slot, timeout_ns)
        length, _status = d.parse_writeback(self.rx_desc.read(slot * d.DESC_SIZE, d.DESC_SIZE))
        frame = self.rx_buf.read(slot * BUF, length)
        self.rx_desc.write(slot * d.DESC_SIZE, d.rx_desc(self.rx_buf_iova + slot * BUF, BUF))
        self.rx_next = (slot + 1) % RING
        await self.write_reg(regs.RDT, slot)
        return frame

    async def _done(self, ring, slot: int, timeout_ns: int) -> int:
        deadline = get_sim_time("ns") + timeout_ns
        while True:
            _length, status = d.parse_writeback(ring.read(slot * d.DESC_SIZE, d.DESC_SIZE))
            if status & d.STATUS_DD.mask:
                return status
            if get_sim_time("ns") > deadline:
                raise DriverError(f"descriptor {slot} not written back")
            await Timer(POLL_NS, "ns")

"""Driver side of the descriptor rings, one implementation for PF and VF drivers.

Rings and buffers live in coherent DMA memory allocated from the driver's IOMMU
domain (``dma_alloc_coherent``); the device sees only IOVAs. The CPU reads and
writes descriptors and buffers directly; only the tail doorbell is an MMIO write.

Locking: :meth:`TxRing.xmit` may be called from several coroutines at once; the
ring's ``lock`` (one per ring) serialises slot allocation, descriptor writes and
the doorbell, so descriptors reach the device in tail order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cocotb.triggers import Lock

from datasheet import descriptors as d
from datasheet import device, regs

if TYPE_CHECKING:
    from netdev.netdev import NetDev

DD = d.STATUS_DD.mask
EOP = d.STATUS_EOP.mask


class DescriptorRing:
    """The driver's half of one descriptor ring: descriptors and buffers from the function's
    DMA domain, ``next_to_use`` (what the driver filled) and ``next_to_clean`` (what it reaped)."""

    def __init__(self, dev: NetDev, index: int, size: int, buf_size: int):
        error = device.ring_length_error(size)
        if error:
            raise ValueError(error)
        self.dev = dev
        self.index = index
        self.size = size
        self.buf_size = buf_size
        self.desc, self.desc_iova = dev.dma.dma_alloc_coherent(size * d.DESC_SIZE)
        self.data, self.data_iova = dev.dma.dma_alloc_coherent(size * buf_size)
        self.next_to_use = 0  # next slot the driver fills
        self.next_to_clean = 0  # next slot the driver checks for write-back
        self.lock = Lock()

    def free(self) -> int:
        """Slots the driver may still fill (one stays empty so full != empty)."""
        return (self.next_to_clean - self.next_to_use - 1) % self.size

    def slot_status(self, slot: int) -> tuple[int, int]:
        return d.parse_writeback(self.desc.read(slot * d.DESC_SIZE, d.DESC_SIZE))

    def done(self) -> bool:
        """The device has written back the next slot to clean."""
        return self.next_to_clean != self.next_to_use and bool(self.slot_status(self.next_to_clean)[1] & DD)

    def release(self) -> None:
        self.dev.dma.dma_free_coherent(self.desc, self.desc_iova)
        self.dev.dma.dma_free_coherent(self.data, self.data_iova)


class TxRing(DescriptorRing):
    TAIL = regs.TDT

    def __init__(self, dev: NetDev, index: int, size: int, buf_size: int = 2048):
        super().__init__(dev, index, size, buf_size)
        self.stats = dev.stats(index, "tx")
        self.eop = [False] * size  # which slots end a frame (write-back overwrites the command)

    async def xmit(self, frame: bytes) -> bool:
        """Queue ``frame`` (split over several descriptors if larger than a buffer).

        Returns False (NETDEV_TX_BUSY) when the ring lacks free slots.
        """
        chunks = [frame[i : i + self.buf_size] for i in range(0, len(frame), self.buf_size)] or [b""]
        async with self.lock:
            if self.free() < len(chunks):
                self.stats.busy += 1
                return False
            for n, chunk in enumerate(chunks):
                slot = self.next_to_use
                self.data.write(slot * self.buf_size, chunk)
                self.eop[slot] = n == len(chunks) - 1
                self.desc.write(
                    slot * d.DESC_SIZE, d.tx_desc(self.data_iova + slot * self.buf_size, len(chunk), eop=self.eop[slot])
                )
                self.next_to_use = (slot + 1) % self.size
            await self.dev.write_reg(self.TAIL, self.next_to_use, self.index)
        return True

    async def post_raw(self, descriptors: list[bytes]) -> int:
        """Write ``descriptors`` (16-byte read-format descriptors, made by hand) into the next
        slots as they are, each counted as ending a frame, and ring the doorbell; returns the
        new tail. For drivers under development and hostile-driver tests: nothing is checked."""
        async with self.lock:
            for raw in descriptors:
                slot = self.next_to_use
                self.desc.write(slot * d.DESC_SIZE, raw)
                self.eop[slot] = True
                self.next_to_use = (slot + 1) % self.size
            await self.dev.write_reg(self.TAIL, self.next_to_use, self.index)
        return self.next_to_use

    def clean(self, budget: int) -> int:
        """Reclaim completed descriptors (at most ``budget``); account sent/dropped/errored frames."""
        cleaned = 0
        while cleaned < budget and self.done():
            slot = self.next_to_clean
            length, status = self.slot_status(slot)
            self.stats.bytes += length
            if self.eop[slot]:
                if status & (d.STATUS_ERR_LEN.mask | d.STATUS_ERR_DMA.mask):
                    self.stats.errors += 1
                elif status & d.STATUS_DROPPED.mask:
                    self.stats.dropped += 1
                else:
                    self.stats.packets += 1
            self.desc.write(slot * d.DESC_SIZE, bytes(d.DESC_SIZE))
            self.next_to_clean = (slot + 1) % self.size
            cleaned += 1
        return cleaned


class RxRing(DescriptorRing):
    TAIL = regs.RDT

    def __init__(self, dev: NetDev, index: int, size: int, buf_size: int = 2048):
        super().__init__(dev, index, size, buf_size)
        self.stats = dev.stats(index, "rx")
        self.partial = b""

    async def fill(self) -> None:
        """Post a buffer in every free slot and ring the doorbell."""
        async with self.lock:
            posted = 0
            while self.free():
                slot = self.next_to_use
                self.desc.write(slot * d.DESC_SIZE, d.rx_desc(self.data_iova + slot * self.buf_size, self.buf_size))
                self.next_to_use = (slot + 1) % self.size
                posted += 1
            if posted:
                await self.dev.write_reg(self.TAIL, self.next_to_use, self.index)

    def receive(self, budget: int) -> list[bytes]:
        """Collect up to ``budget`` completed frames (buffers chained until EOP)."""
        frames = []
        while len(frames) < budget and self.done():
            slot = self.next_to_clean
            length, status = self.slot_status(slot)
            self.partial += self.data.read(slot * self.buf_size, length)
            self.next_to_clean = (slot + 1) % self.size
            if status & EOP:
                if status & d.STATUS_TRUNC.mask:
                    self.stats.errors += 1
                else:
                    frames.append(self.partial)
                    self.stats.packets += 1
                    self.stats.bytes += len(self.partial)
                self.partial = b""
        return frames

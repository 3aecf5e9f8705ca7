"""Driver side of the descriptor rings, one implementation for PF and VF drivers.

Rings and buffers live in coherent DMA memory allocated from the driver's IOMMU
domain (``dma_alloc_coherent``); the device sees only IOVAs. The CPU reads and
writes descriptors and buffers directly; only the tail doorbell is an MMIO write.

Locking: :meth:`TxRing.xmit` may be called from several coroutines at once; the
ring's ``lock`` (one per ring, a :class:`~netdev.lock.RingLock`) serialises slot allocation,
descriptor writes and the doorbell, so descriptors reach the device in tail order.

A frame too long for the ring's own buffers (a TSO frame of up to 64 KiB) is mapped for the
device where it lies (``dma_map``, as Linux maps an skb) and handed over in pieces of at most
:data:`TX_MAP_CHUNK` bytes; the mapping is torn down when the frame's descriptors come back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from datasheet import descriptors as d
from datasheet import device, regs
from iommu import DMA_TO_DEVICE
from netdev.lock import RingLock

if TYPE_CHECKING:
    from iommu import DmaBuffer
    from netdev.netdev import NetDev

DD = d.STATUS_DD.mask
EOP = d.STATUS_EOP.mask
#: largest piece of a mapped frame one descriptor carries
TX_MAP_CHUNK = 16384
#: slots the largest frame takes: a context descriptor and its data descriptors
FRAME_SLOTS = 1 + device.TX_MAX_FRAME_DESCS


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
        self.lock = RingLock()

    def free(self) -> int:
        """Slots the driver may still fill (one stays empty so full != empty)."""
        return (self.next_to_clean - self.next_to_use - 1) % self.size

    def slot_status(self, slot: int) -> tuple[int, int]:
        return d.parse_writeback(self.desc.read(slot * d.DESC_SIZE, d.DESC_SIZE))

    def written_back(self) -> bytes | None:
        """The next slot to clean, if the device has written it back (DD set): its descriptor,
        read once, as a driver reads the write-back it then parses."""
        if self.next_to_clean == self.next_to_use:
            return None
        raw = self.desc.read(self.next_to_clean * d.DESC_SIZE, d.DESC_SIZE)
        return raw if d.parse_writeback(raw)[1] & DD else None

    def done(self) -> bool:
        """The device has written back the next slot to clean."""
        return self.written_back() is not None

    def release(self) -> None:
        self.dev.dma.dma_free_coherent(self.desc, self.desc_iova)
        self.dev.dma.dma_free_coherent(self.data, self.data_iova)


class TxRing(DescriptorRing):
    TAIL = regs.TDT

    def __init__(self, dev: NetDev, index: int, size: int, buf_size: int = 2048):
        super().__init__(dev, index, size, buf_size)
        self.stats = dev.stats(index, "tx")
        self.eop = [False] * size  # which slots end a frame (write-back overwrites the command)
        self.mapped: dict[int, tuple[DmaBuffer, int]] = {}  # EOP slot -> a frame's own mapping
        self.tail = 0  # the tail last written to TDT (next_to_use runs ahead of it under ``more``)

    def _map(self, frame: bytes) -> tuple[tuple[DmaBuffer, int], list[tuple[int, int]]]:
        """Map ``frame`` for the device where it lies; its pieces as (IOVA, length)."""
        dma = self.dev.dma
        buf = dma.alloc_buffer(len(frame))
        buf.write(0, frame)
        iova = dma.dma_map(buf, len(frame), DMA_TO_DEVICE)
        pieces = [(iova + off, min(TX_MAP_CHUNK, len(frame) - off)) for off in range(0, len(frame), TX_MAP_CHUNK)]
        return (buf, iova), pieces

    def _unmap(self, mapping: tuple[DmaBuffer, int]) -> None:
        buf, iova = mapping
        self.dev.dma.dma_unmap(iova)
        self.dev.dma.free_buffer(buf)

    async def xmit(
        self, frame: bytes, context: bytes | None = None, offloads: int = 0, vlan: int = 0, more: bool = False
    ) -> bool:
        """Queue ``frame``, after a ``context`` descriptor if given; ``offloads`` (VLE, IXSM, TXSM,
        TSE command bits) and ``vlan`` go into its first data descriptor. A frame longer than the
        ring's buffers can hold is mapped where it lies.

        ``more`` (Linux ``netdev_xmit_more()``): another frame follows at once, so the doorbell
        waits for it, unless fewer than :data:`FRAME_SLOTS` slots are left, so that the largest
        frame might not fit next (where Linux stops the queue and rings). The doorbell a later
        frame rings hands the device every frame queued before it.

        Returns False (NETDEV_TX_BUSY) when the ring lacks free slots, after ringing for the
        frames still waiting, if any (only a frame of more than :data:`FRAME_SLOTS` slots can
        find them: the ring rings whenever a frame of that many might not fit).
        """
        mapping, pieces = None, None
        if len(frame) > self.buf_size * (device.TX_MAX_FRAME_DESCS - 1):
            mapping, pieces = self._map(frame)
            count = len(pieces)
        else:
            chunks = [frame[i : i + self.buf_size] for i in range(0, len(frame), self.buf_size)] or [b""]
            count = len(chunks)
        async with self.lock:
            if self.free() < count + (context is not None):
                self.stats.busy += 1
                if mapping is not None:
                    self._unmap(mapping)
                if self.tail != self.next_to_use:
                    await self._ring()
                return False
            if context is not None:
                slot = self.next_to_use
                self.desc.write(slot * d.DESC_SIZE, context)
                self.eop[slot] = False
                self.next_to_use = (slot + 1) % self.size
            for n in range(count):
                slot = self.next_to_use
                if mapping is None:
                    self.data.write(slot * self.buf_size, chunks[n])
                    addr, length = self.data_iova + slot * self.buf_size, len(chunks[n])
                else:
                    addr, length = pieces[n]
                self.eop[slot] = n == count - 1
                first = n == 0
                self.desc.write(
                    slot * d.DESC_SIZE,
                    d.tx_desc(addr, length, self.eop[slot], offloads if first else 0, vlan if first else 0),
                )
                self.next_to_use = (slot + 1) % self.size
            if mapping is not None:
                self.mapped[slot] = mapping
            if not more or self.free() < FRAME_SLOTS:
                await self._ring()
        return True

    async def _ring(self) -> None:
        """Write the tail doorbell: hand the device every frame queued so far (the lock held)."""
        self.tail = self.next_to_use
        await self.dev.write_reg(self.TAIL, self.tail, self.index)

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
            await self._ring()
        return self.next_to_use

    def clean(self, budget: int) -> int:
        """Reclaim completed descriptors (at most ``budget``); account sent/dropped/errored frames."""
        cleaned = 0
        while cleaned < budget and (raw := self.written_back()) is not None:
            slot = self.next_to_clean
            length, status = d.parse_writeback(raw)
            self.stats.bytes += length
            if self.eop[slot]:
                if status & (d.STATUS_ERR_LEN.mask | d.STATUS_ERR_DMA.mask | d.STATUS_ERR_OFFLOAD.mask):
                    self.stats.errors += 1
                elif status & d.STATUS_DROPPED.mask:
                    self.stats.dropped += 1
                else:
                    self.stats.packets += 1
                mapping = self.mapped.pop(slot, None)
                if mapping is not None:
                    self._unmap(mapping)
            self.desc.write(slot * d.DESC_SIZE, bytes(d.DESC_SIZE))
            self.next_to_clean = (slot + 1) % self.size
            cleaned += 1
        return cleaned

    def release(self) -> None:
        for mapping in self.mapped.values():
            self._unmap(mapping)
        self.mapped.clear()
        super().release()


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

    def receive(self, budget: int) -> list[tuple[bytes, d.RxInfo]]:
        """Collect up to ``budget`` completed frames (buffers chained until EOP), each with what its
        EOP write-back reports (RSS hash and type, stripped VLAN tag, checksum verdicts)."""
        frames = []
        while len(frames) < budget and (raw := self.written_back()) is not None:
            slot = self.next_to_clean
            length, status = d.parse_writeback(raw)
            self.partial += self.data.read(slot * self.buf_size, length)
            self.next_to_clean = (slot + 1) % self.size
            if status & EOP:
                if status & d.STATUS_TRUNC.mask:
                    self.stats.errors += 1
                else:
                    info = d.RxInfo.from_writeback(raw)
                    frames.append((self.partial, info))
                    self.stats.packets += 1
                    self.stats.bytes += len(self.partial)
                    if info.ip_checksum == "bad" or info.l4_checksum == "bad":
                        self.stats.csum_errors += 1
                self.partial = b""
        return frames

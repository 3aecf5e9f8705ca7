"""Queue engine of one PCIe function: TX/RX descriptor rings, doorbells, interrupt moderation.

Each function (PF or VF) owns ``n`` queue pairs whose registers sit in its own
BAR0 (``datasheet.regs`` TDBAL..QERR_COUNT, EITR). All descriptor and buffer
DMA is issued by that function, so it carries the function's Requester ID and
the IOMMU translates it with that function's domain.

Engine rules:

* A tail write schedules work; a queue's worker runs as its own coroutine, so
  the register write returns at once and a DMA completion never re-enters the
  engine. One run handles at most ``QUEUE_BUDGET`` descriptors, then yields.
* Descriptors are fetched ``DESC_FETCH_BATCH`` at a time and written back in
  place (DD set) with one DMA write per batch.
* Bad input, each logged and counted in QERR_COUNT, never touching other queues:
  enabling with a bad ring base/length is refused (ERR=BAD_RING); a tail beyond
  the ring stops the queue (BAD_TAIL); a descriptor or TX buffer read that faults
  (IOMMU fault / UR) stops the queue (DMA_FAULT); both raise the queue's vector.
  A doorbell on a disabled queue is ignored (DISABLED_DOORBELL). Zero-length or
  oversized TX descriptors complete with ERR_LEN and the frame is not sent.
* RX buffer writes are posted: a faulting one cannot be seen by the device (as on
  real hardware); the IOMMU records it and the data is lost.
* A function reset (FLR, CTRL.RST) or disabling a queue starts a new epoch of
  the ring: work in flight is abandoned after its current DMA ("pending DMA
  dropped"); a frame being fetched is not sent.
"""

from __future__ import annotations

import collections

import cocotb
from cocotb.triggers import Timer
from cocotb.utils import get_sim_time

from datasheet import descriptors as d
from datasheet import device, regs
from datasheet.descriptors import QueueError

ENABLE = regs.TXDCTL.field("ENABLE")
VECTOR = regs.TXDCTL.field("VECTOR")
ERR = regs.TXDCTL.field("ERR")
STAT = {r.name[len("STAT_"):]: r for r in regs.STATS}


class DmaFault(Exception):
    """A non-posted DMA access failed (IOMMU fault, UR, or bus mastering off)."""


class Ring:
    """Register state of one ring (TX or RX half of a queue pair)."""

    def __init__(self, engine: "QueueEngine", index: int, rx: bool):
        self.engine = engine
        self.index = index
        self.rx = rx
        self.epoch = 0          # bumped by reset or disable: work in flight from before is abandoned
        self.clear()

    def clear(self) -> None:
        """Back to reset values; in-flight work of the previous epoch is abandoned."""
        self.epoch += 1
        self.base_lo = self.base_hi = self.length = 0
        self.head = self.tail = 0
        self.ctl = 0
        self.busy = False
        self.fetch = 0                                                # next descriptor to prefetch
        self.cache: collections.deque = collections.deque()          # prefetched, not yet used
        self.staged: list = []                                        # TX: descriptors of a frame in progress
        self.fifo: collections.deque[bytes] = collections.deque()   # RX: frames awaiting DMA

    @property
    def name(self) -> str:
        return f"{'RX' if self.rx else 'TX'}{self.index}"

    @property
    def base(self) -> int:
        return self.base_hi << 32 | self.base_lo

    @property
    def enabled(self) -> bool:
        return bool(ENABLE.get(self.ctl))

    @property
    def vector(self) -> int:
        return VECTOR.get(self.ctl)

    def free(self) -> int:
        """Descriptors the driver has handed over and the device has not used."""
        return (self.tail - self.head) % self.length if self.length else 0

    def valid_geometry(self) -> bool:
        n = self.length
        return (self.base != 0 and self.base % device.RING_ALIGN == 0 and n & (n - 1) == 0
                and device.RING_MIN_DESCS <= n <= device.RING_MAX_DESCS)


class QueueEngine:
    def __init__(self, function, num_queues: int, num_vectors: int):
        self.fn = function
        self.log = function.log
        self.num_queues = num_queues
        self.num_vectors = num_vectors
        self.tx = [Ring(self, q, rx=False) for q in range(num_queues)]
        self.rx = [Ring(self, q, rx=True) for q in range(num_queues)]
        self.qerr = [0] * num_queues
        self.eitr = [0] * num_vectors
        self.last_irq = [-1e30] * num_vectors
        self.irq_scheduled = [False] * num_vectors
        self.irqs_raised = [0] * num_vectors
        self._bind(function.regs)

    # -- registers -------------------------------------------------------------------
    def _bind(self, rf) -> None:
        self.rx_nobuf = [0] * self.num_queues
        for reg, rings in ((regs.TDH, self.tx), (regs.RDH, self.rx)):      # RO: writes never reach here
            rf.bind(reg, self._reader(reg, lambda q, rings=rings: rings[q].head), None)
        fields = {
            regs.TDBAL: (self.tx, "base_lo"), regs.TDBAH: (self.tx, "base_hi"), regs.TDLEN: (self.tx, "length"),
            regs.RDBAL: (self.rx, "base_lo"), regs.RDBAH: (self.rx, "base_hi"), regs.RDLEN: (self.rx, "length"),
        }
        for reg, (rings, attr) in fields.items():
            rf.bind(reg, self._reader(reg, lambda q, rings=rings, attr=attr: getattr(rings[q], attr)),
                    self._writer(reg, lambda q, v, rings=rings, attr=attr: self._set_geometry(rings[q], attr, v)))
        for reg, rings in ((regs.TDT, self.tx), (regs.RDT, self.rx)):
            rf.bind(reg, self._reader(reg, lambda q, rings=rings: rings[q].tail),
                    self._writer(reg, lambda q, v, rings=rings: self._doorbell(rings[q], v)))
        for reg, rings in ((regs.TXDCTL, self.tx), (regs.RXDCTL, self.rx)):
            rf.bind(reg, self._reader(reg, lambda q, rings=rings: rings[q].ctl),
                    self._writer(reg, lambda q, v, rings=rings, reg=reg: self._control(rings[q], v & reg.write_mask)))
        rf.bind(regs.QRX_NOBUF, self._reader(regs.QRX_NOBUF, lambda q: self.rx_nobuf[q]), None)
        rf.bind(regs.QERR_COUNT, self._reader(regs.QERR_COUNT, lambda q: self.qerr[q]), None)
        rf.bind(regs.EITR, self._reader(regs.EITR, lambda v: self.eitr[v], self.num_vectors),
                self._writer(regs.EITR, self._set_eitr, self.num_vectors))

    def _reader(self, reg, get, limit: int | None = None):
        """Bus read of element ``i`` of ``reg``; elements past ``limit`` are unimplemented."""
        def read(i: int) -> int:
            if i >= (self.num_queues if limit is None else limit):
                self.fn.regs.unimplemented(reg.at(i), f"read of {reg.name}[{i}] beyond this function's allotment")
                return 0
            return get(i)
        return read

    def _writer(self, reg, put, limit: int | None = None):
        def write(i: int, value: int, byte_mask: int) -> None:
            if i >= (self.num_queues if limit is None else limit):
                self.fn.regs.unimplemented(reg.at(i), f"write to {reg.name}[{i}] beyond this function's allotment")
                return
            put(i, value & byte_mask)
        return write

    def _set_eitr(self, vector: int, value: int) -> None:
        self.eitr[vector] = value & regs.EITR.write_mask

    def _set_geometry(self, ring: Ring, attr: str, value: int) -> None:
        if ring.enabled:
            self._bad(ring, QueueError.NONE, f"{attr} written while enabled: ignored", stop=False)
            return
        setattr(ring, attr, value)

    def _control(self, ring: Ring, value: int) -> None:
        enable = bool(ENABLE.get(value))
        vector = VECTOR.get(value)
        if vector >= self.num_vectors:
            self._bad(ring, QueueError.NONE, f"vector {vector} beyond the function's {self.num_vectors}",
                      stop=False)
            vector = 0
        if enable and not ring.enabled:
            if not ring.valid_geometry():
                ring.ctl = VECTOR.put(ERR.put(0, QueueError.BAD_RING), vector)
                self._bad(ring, QueueError.BAD_RING,
                          f"base {ring.base:#x} / length {ring.length} invalid: enable refused", stop=False)
                return
            ring.head = ring.tail = ring.fetch = 0
            ring.cache.clear()
            ring.staged.clear()
            ring.fifo.clear()
        elif not enable and ring.enabled:
            ring.epoch += 1                     # a disabled queue stops mid-frame: nothing more is sent
            ring.busy = False                   # the worker of the old epoch is abandoned
            ring.cache.clear()
            ring.staged.clear()
            ring.fifo.clear()
        ring.ctl = VECTOR.put(ENABLE.put(0, int(enable)), vector)

    def _doorbell(self, ring: Ring, tail: int) -> None:
        if not ring.enabled:
            self.qerr[ring.index] += 1
            self.log.warning("%s: doorbell (tail %d) on a disabled queue: ignored", ring.name, tail)
            return
        if tail >= ring.length:
            self._bad(ring, QueueError.BAD_TAIL, f"tail {tail} beyond ring length {ring.length}")
            return
        ring.tail = tail
        if not ring.rx:
            self._kick(ring)

    def _bad(self, ring: Ring, error: QueueError, why: str, stop: bool = True) -> None:
        self.qerr[ring.index] += 1
        self.log.warning("%s: %s", ring.name, why)
        if stop:
            ring.ctl = ERR.put(ENABLE.put(ring.ctl, 0), error)
            ring.fifo.clear()
            self.raise_irq(ring.vector)

    def reset(self) -> None:
        """Function reset: queues stopped and cleared, in-flight work abandoned."""
        for ring in self.tx + self.rx:
            ring.clear()
        self.qerr = [0] * self.num_queues
        self.rx_nobuf = [0] * self.num_queues
        self.eitr = [0] * self.num_vectors

    # -- statistics --------------------------------------------------------------------
    def count(self, name: str, n: int = 1) -> None:
        reg = STAT[name]
        self.fn.regs.set(reg, self.fn.regs.get(reg) + n)

    # -- interrupts with moderation ---------------------------------------------------------
    def raise_irq(self, vector: int) -> None:
        """Signal ``vector``, at most once per EITR interval (later events coalesce)."""
        if self.irq_scheduled[vector]:
            return
        now = get_sim_time("ns")
        wait = self.last_irq[vector] + self.eitr[vector] * 1000 - now
        if wait <= 0:
            self._fire(vector, now)
        else:
            self.irq_scheduled[vector] = True
            cocotb.start_soon(self._fire_later(vector, wait))

    def _fire(self, vector: int, now: float) -> None:
        self.last_irq[vector] = now
        self.irqs_raised[vector] += 1
        cocotb.start_soon(self.fn.msix.fire(vector))

    async def _fire_later(self, vector: int, wait: float) -> None:
        await Timer(int(wait) or 1, "ns")
        self.irq_scheduled[vector] = False
        self._fire(vector, get_sim_time("ns"))

    # -- DMA ----------------------------------------------------------------------------
    async def _dma_read(self, addr: int, length: int) -> bytes:
        try:
            return bytes(await self.fn.mem_read(addr, length))
        except Exception as exc:   # cocotbext raises on UR completions and when BME is off
            raise DmaFault(f"read of {length} bytes at {addr:#x}: {exc}") from exc

    async def _dma_write(self, addr: int, data: bytes) -> None:
        if not self.fn.bus_master_enable:
            raise DmaFault(f"write at {addr:#x}: bus mastering disabled")
        await self.fn.mem_write(addr, data)

    def _kick(self, ring: Ring) -> None:
        if not ring.busy:
            ring.busy = True
            cocotb.start_soon(self._run(ring))

    async def _run(self, ring: Ring) -> None:
        gen = ring.epoch
        try:
            more = await (self._rx_work(ring, gen) if ring.rx else self._tx_work(ring, gen))
        except DmaFault as exc:
            if gen == ring.epoch:
                self._bad(ring, QueueError.DMA_FAULT, str(exc))
                self.count("RX_ERRORS" if ring.rx else "TX_ERRORS")
            more = False
        if gen != ring.epoch:
            return                  # reset or disabled meanwhile: a new epoch owns the ring
        ring.busy = False
        if more:
            self._kick(ring)        # budget used up: yield, then continue

    async def _fetch(self, ring: Ring, gen: int) -> bool:
        """Prefetch up to a batch of posted descriptors into ``ring.cache``; False if none."""
        n = min((ring.tail - ring.fetch) % ring.length, ring.length - ring.fetch, device.DESC_FETCH_BATCH)
        if n == 0:
            return False
        raw = await self._dma_read(ring.base + ring.fetch * d.DESC_SIZE, n * d.DESC_SIZE)
        if gen != ring.epoch:
            return False
        ring.cache.extend(d.parse_read(raw[i * d.DESC_SIZE:(i + 1) * d.DESC_SIZE]) for i in range(n))
        ring.fetch = (ring.fetch + n) % ring.length
        return True

    async def _complete(self, ring: Ring, descs, results, gen: int) -> None:
        """Write back ``descs`` (starting at the head) in place and advance the head."""
        out = b"".join(addr.to_bytes(8, "little") + d.writeback(length, status)
                       for (addr, _, _), (length, status) in zip(descs, results))
        first = ring.head
        split = min(len(descs), ring.length - first) * d.DESC_SIZE
        await self._dma_write(ring.base + first * d.DESC_SIZE, out[:split])
        if split < len(out):                                  # the span wraps the ring
            await self._dma_write(ring.base, out[split:])
        if gen == ring.epoch:
            ring.head = (first + len(descs)) % ring.length

    # -- TX -------------------------------------------------------------------------------
    async def _tx_work(self, ring: Ring, gen: int) -> bool:
        budget = device.QUEUE_BUDGET
        done = 0
        while budget > done and ring.enabled:
            if not ring.cache and not await self._fetch(ring, gen):
                break
            if gen != ring.epoch:
                return False
            desc = ring.cache.popleft()
            ring.staged.append(desc)
            if not d.TX_CMD_EOP.get(desc[2]) and len(ring.staged) < device.TX_MAX_FRAME_DESCS:
                continue
            frame, ring.staged = ring.staged, []
            try:
                results = await self._transmit(ring, frame, gen)
            except DmaFault:
                await self._complete_failed(ring, frame, gen)
                raise
            if gen != ring.epoch:
                return False
            await self._complete(ring, frame, results, gen)
            done += len(frame)
        if done:
            self.raise_irq(ring.vector)
        return ring.enabled and (ring.tail - ring.fetch) % ring.length > 0

    async def _complete_failed(self, ring: Ring, descs, gen: int) -> None:
        """A frame whose buffer read faulted: write its descriptors back with ERR_DMA (best effort)."""
        try:
            await self._complete(ring, descs, [(0, d.STATUS_DD.mask | d.STATUS_ERR_DMA.mask)] * len(descs), gen)
        except DmaFault:
            pass

    async def _transmit(self, ring: Ring, descs, gen: int) -> list[tuple[int, int]]:
        """Send one frame made of ``descs``; return the write-back (length, status) of each."""
        lengths = [length for _, length, _ in descs]
        if not d.TX_CMD_EOP.get(descs[-1][2]) or 0 in lengths or sum(lengths) > device.MAX_FRAME:
            self.qerr[ring.index] += 1
            self.count("TX_ERRORS")
            self.log.warning("%s: bad frame (buffer lengths %s): not sent", ring.name, lengths)
            return [(0, d.STATUS_DD.mask | d.STATUS_ERR_LEN.mask)] * len(descs)
        data = b"".join([await self._dma_read(addr, length) for addr, length, _ in descs])
        if gen != ring.epoch:
            return []
        delivered = self.fn.nic.transmit(self.fn, data)
        status = d.STATUS_DD.mask | (0 if delivered else d.STATUS_DROPPED.mask)
        if delivered:
            self.count("TX_PACKETS")
            self.count("TX_BYTES", len(data))
        return [(length, status) for length in lengths]

    # -- RX -------------------------------------------------------------------------------
    def deliver(self, queue: int, frame: bytes) -> bool:
        """A frame for this function from the switch; False if dropped for lack of buffers."""
        q = queue if queue < self.num_queues else 0
        ring = self.rx[q]
        if not ring.enabled or ring.free() <= len(ring.fifo):
            self.rx_nobuf[q] += 1
            self.count("RX_DROPS")
            return False
        ring.fifo.append(frame)
        self._kick(ring)
        return True

    async def _rx_work(self, ring: Ring, gen: int) -> bool:
        budget = device.QUEUE_BUDGET
        done = 0
        while ring.fifo and budget > done and ring.enabled:
            frame = ring.fifo.popleft()
            used, results, pos = [], [], 0
            while pos < len(frame) or not used:
                if not ring.cache and not await self._fetch(ring, gen):
                    break                                   # out of buffers mid-frame: truncate
                if gen != ring.epoch:
                    return False
                addr, size, _ = ring.cache.popleft()
                chunk = frame[pos:pos + size]
                if chunk:
                    await self._dma_write(addr, chunk)
                used.append((addr, size, 0))
                results.append((len(chunk), d.STATUS_DD.mask))
                pos += len(chunk)
            if not used:
                self.rx_nobuf[ring.index] += 1
                self.count("RX_DROPS")
                continue
            last_len, last_status = results[-1]
            last_status |= d.STATUS_EOP.mask | (d.STATUS_TRUNC.mask if pos < len(frame) else 0)
            results[-1] = (last_len, last_status)
            if gen != ring.epoch:
                return False
            await self._complete(ring, used, results, gen)
            done += len(used)
            if pos < len(frame):
                self.count("RX_ERRORS")
            self.count("RX_PACKETS")
            self.count("RX_BYTES", pos)
        if done:
            self.raise_irq(ring.vector)
        return bool(ring.fifo) and ring.enabled

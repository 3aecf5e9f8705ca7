"""A NAPI-style net device over the NIC's queue pairs, shared by the PF and VF drivers.

The owning driver supplies register access (``read_reg``/``write_reg`` on its own
BAR0), its ``pdev`` (MSI-X table in BAR2) and a ``dma`` device (DMA API over its
IOMMU domain). Queue ``q`` uses MSI-X vector ``first_vector + q``.

Interrupt handling follows Linux NAPI: the interrupt handler masks the vector
(MSI-X Vector Control mask bit) and schedules a poll; the poll cleans TX and
receives RX within a budget; when it finishes under budget it unmasks the vector
and then re-checks the rings, rescheduling itself if work arrived in between.
A completion that lands while the vector is masked sets its pending bit, and the
device sends the message when the vector is unmasked, so nothing is lost.

Offloads (:mod:`netdev.offload`): ``features`` / ``set_features`` are ``ethtool -k`` / ``-K``
(rx-checksum, tx-checksum, tso, rxhash, rxvlan, txvlan), ``set_rxfh`` is ``ethtool -X`` (RSS
key, indirection table, hash types); the owner programs them (the PF directly, a VF through
the mailbox). With rxhash on, received frames spread over the queues, each polled by its own
NAPI context; ``start_xmit`` takes the stack's per-frame request (checksum, TSO, VLAN tag).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import cocotb
from cocotb.queue import Queue

from datasheet import device, pci, regs
from datasheet.descriptors import RxInfo
from datasheet.mailbox import Offload
from netdev.offload import FEATURES, FeatureError, RssConfig, TxOffload, offloads_of, tx_request
from netdev.ring import RxRing, TxRing

if TYPE_CHECKING:
    from cocotbext.pcie.core.pci import PciDevice

    from iommu import DmaDevice

ENABLE = regs.TXDCTL.field("ENABLE")
VECTOR = regs.TXDCTL.field("VECTOR")
NAPI_BUDGET = 64


@dataclass
class QueueStats:
    packets: int = 0
    bytes: int = 0
    errors: int = 0
    dropped: int = 0
    busy: int = 0
    csum_errors: int = 0  # RX frames the device flagged with a wrong checksum


class NetDevOwner(Protocol):
    """What a net device needs of the driver that owns it (the PF or a VF driver)."""

    pdev: PciDevice

    @property
    def dma(self) -> DmaDevice | None: ...

    async def read_reg(self, reg: regs.Register, index: int = 0) -> int: ...

    async def write_reg(self, reg: regs.Register, value: int, index: int = 0) -> None: ...

    async def configure_queue(self, queue: int, rx: bool, iova: int, size: int, buf_size: int) -> None: ...

    @property
    def offload_caps(self) -> Offload: ...

    async def set_offloads(self, enabled: Offload, rss: RssConfig) -> None: ...


class NetDev:
    def __init__(self, owner: NetDevOwner, num_queues: int, first_vector: int = 1):
        self.owner = owner
        self.num_queues = num_queues
        self.first_vector = first_vector
        self.tx: list[TxRing] = []
        self.rx: list[RxRing] = []
        self.queue_stats: dict[tuple[int, str], QueueStats] = {}
        self.received: Queue[tuple[int, bytes]] = Queue()
        self.napi_scheduled = [False] * num_queues
        self.polls = [0] * num_queues
        self.reschedules = [0] * num_queues
        self.is_open = False
        self._irqs: set[int] = set()
        self._taps: list[Callable[[int, bytes, RxInfo], None]] = []
        self.features = Offload(0)  # what ethtool -k shows on
        self.rss = RssConfig.spread(num_queues)
        self._before_unmask: Callable[[int], Awaitable[None]] | None = None

    # -- observation and test hooks -------------------------------------------------------------
    def add_tap(self, callback: Callable[[int, bytes, RxInfo], None]) -> None:
        """Call ``callback(queue, frame, info)`` for every frame handed to the stack (a packet tap,
        like an AF_PACKET socket with its auxiliary data): monitors see what the driver received
        and what the device reported of it (``info``: RSS hash and type, stripped VLAN tag,
        checksum verdicts)."""
        self._taps.append(callback)

    def on_before_unmask(self, hook: Callable[[int], Awaitable[None]]) -> None:
        """``await hook(queue)`` runs between napi_complete and the vector's unmask, to race a
        completion against the re-enable (tests of the lost-interrupt window)."""
        self._before_unmask = hook

    def vectors_freed(self) -> None:
        """The host freed the function's interrupt vectors (a reset): the next :meth:`open`
        requests them again."""
        self._irqs.clear()

    def abandon(self) -> None:
        """The function was reset under the driver and its rings' memory is gone: stop polling
        without touching the device or the buffers (the driver builds a new net device)."""
        self.is_open = False

    # -- what the rings need from their driver ----------------------------------------------
    @property
    def dma(self) -> DmaDevice | None:
        return self.owner.dma

    async def write_reg(self, reg: regs.Register, value: int, index: int = 0) -> None:
        await self.owner.write_reg(reg, value, index)

    def stats(self, queue: int, kind: str) -> QueueStats:
        return self.queue_stats.setdefault((queue, kind), QueueStats())

    # -- ndo_open / ndo_stop -----------------------------------------------------------------
    async def open(self, ring_size: int = 256, buf_size: int = 2048, num_queues: int | None = None) -> None:
        """Allocate rings from the DMA API, program and enable the queues, unmask their vectors.

        ``num_queues`` opens only the first queues of the allotment (default: all)."""
        if num_queues is not None:
            self.num_queues = min(num_queues, self.num_queues)
        if any(q >= self.num_queues for q in self.rss.table):
            self.rss = RssConfig.spread(self.num_queues, self.rss.key)
        self.tx = [TxRing(self, q, ring_size, buf_size) for q in range(self.num_queues)]
        self.rx = [RxRing(self, q, ring_size, buf_size) for q in range(self.num_queues)]
        for q in range(self.num_queues):
            vector = self.first_vector + q
            if vector not in self._irqs:  # a reopen keeps the handler it has
                self._irqs.add(vector)
                self.owner.pdev.request_irq(vector, self._irq_handler(q))
            for ring in (self.tx[q], self.rx[q]):
                await self.owner.configure_queue(q, ring is self.rx[q], ring.desc_iova, ring.size, ring.buf_size)
            for ring, (lo, hi, ln, ctl) in (
                (self.tx[q], (regs.TDBAL, regs.TDBAH, regs.TDLEN, regs.TXDCTL)),
                (self.rx[q], (regs.RDBAL, regs.RDBAH, regs.RDLEN, regs.RXDCTL)),
            ):
                await self.write_reg(lo, ring.desc_iova & 0xFFFFFFFF, q)
                await self.write_reg(hi, ring.desc_iova >> 32, q)
                await self.write_reg(ln, ring.size, q)
                await self.write_reg(ctl, ENABLE.put(VECTOR.put(0, vector), 1), q)
            await self.rx[q].fill()
            await self.set_vector_mask(vector, False)
        self.features &= self.hw_features  # the PF may offer less than before a reset
        if self.features:
            await self.owner.set_offloads(self.features, self.rss)
        self.is_open = True

    async def stop(self) -> None:
        """Disable the queues and mask their vectors; buffers go back to the DMA API."""
        self.is_open = False
        for q in range(self.num_queues):
            await self.write_reg(regs.TXDCTL, 0, q)
            await self.write_reg(regs.RXDCTL, 0, q)
            await self.set_vector_mask(self.first_vector + q, True)
        await self.owner.read_reg(regs.STATUS)  # flush the posted writes before freeing memory
        for ring in self.tx + self.rx:
            ring.release()
        self.tx, self.rx = [], []

    async def set_vector_mask(self, vector: int, masked: bool) -> None:
        table = self.owner.pdev.bar_window[device.MSIX_BAR]
        await table.write_dword(
            device.MSIX_TABLE_OFFSET + vector * pci.PCI_MSIX_ENTRY_SIZE + pci.PCI_MSIX_ENTRY_VECTOR_CTRL,
            pci.PCI_MSIX_ENTRY_CTRL_MASKBIT if masked else 0,
        )

    # -- ethtool ------------------------------------------------------------------------------
    @property
    def hw_features(self) -> Offload:
        """The features that can be switched on (what the device, or the PF's policy, offers)."""
        return self.owner.offload_caps

    def get_features(self) -> dict[str, bool]:
        """``ethtool -k``: each feature, on or off."""
        return {name: bool(self.features & bit) for name, bit in FEATURES.items()}

    async def set_features(self, **changes: bool) -> None:
        """``ethtool -K dev tso on rxhash off ...`` (names with ``_`` for ``-``); raises
        :class:`FeatureError` for a feature the device does not offer."""
        on = {name.replace("_", "-"): value for name, value in changes.items()}
        want_on, want_off = (
            offloads_of({n for n, v in on.items() if v}),
            offloads_of({n for n, v in on.items() if not v}),
        )
        if want_on & ~self.hw_features:
            raise FeatureError(f"not offered: {Offload(want_on & ~self.hw_features)!r}")
        features = (self.features | want_on) & ~want_off
        if self.is_open:
            await self.owner.set_offloads(features, self.rss)
        self.features = features

    async def set_rxfh(self, rss: RssConfig) -> None:
        """``ethtool -X`` (key, indirection table) and ``ethtool -N rx-flow-hash`` (hash types)."""
        if any(not 0 <= q < self.num_queues for q in rss.table):
            raise ValueError(f"indirection table names a queue beyond the {self.num_queues} of this device")
        if self.is_open and self.features & Offload.RSS:
            await self.owner.set_offloads(self.features, rss)
        self.rss = rss

    # -- ndo_start_xmit ------------------------------------------------------------------------
    async def start_xmit(
        self, frame: bytes, queue: int = 0, offload: TxOffload | None = None, more: bool = False
    ) -> bool:
        """Queue a frame for transmission with the stack's ``offload`` request (checksum, TSO, VLAN
        tag); False if the ring is full (NETDEV_TX_BUSY). An offload whose feature is off raises
        :class:`FeatureError` (the stack would have done it in software). ``more``: another
        frame follows at once (``netdev_xmit_more()``), so the doorbell waits for the last
        frame of the batch (:meth:`~netdev.ring.TxRing.xmit`)."""
        if offload is None:
            return await self.tx[queue].xmit(frame, more=more)
        context, cmd, vlan = tx_request(frame, offload, self.features)
        return await self.tx[queue].xmit(frame, context, cmd, vlan, more)

    # -- NAPI --------------------------------------------------------------------------------
    def _irq_handler(self, q: int) -> Callable[[], Coroutine[Any, Any, None]]:
        """The vector's handler: mask it and run the poll (each interrupt is its own task, as
        the softirq that runs a scheduled NAPI context is)."""

        async def handler() -> None:
            if self.is_open and not self.napi_scheduled[q]:
                self.napi_scheduled[q] = True
                await self.set_vector_mask(self.first_vector + q, True)
                await self._napi_run(q)

        return handler

    async def _napi_run(self, q: int) -> None:
        while self.is_open:
            work = await self.poll(q, NAPI_BUDGET)
            if work >= NAPI_BUDGET:
                continue
            self.napi_scheduled[q] = False  # napi_complete_done
            if self._before_unmask is not None:
                await self._before_unmask(q)
            await self.set_vector_mask(self.first_vector + q, False)
            if not (self.tx[q].done() or self.rx[q].done()):
                return
            self.reschedules[q] += 1  # work raced the re-enable: poll again
            self.napi_scheduled[q] = True
            await self.set_vector_mask(self.first_vector + q, True)

    def napi_disable(self, q: int) -> None:
        """Stop polling queue ``q`` (Linux napi_disable): completions wait in the ring."""
        self.napi_scheduled[q] = True

    def napi_enable(self, q: int) -> None:
        self.napi_scheduled[q] = False
        cocotb.start_soon(self._irq_handler(q)())

    async def poll(self, q: int, budget: int) -> int:
        """Clean TX, receive RX (at most ``budget`` frames), refill RX; returns RX work done."""
        self.polls[q] += 1
        self.tx[q].clean(self.tx[q].size)
        frames = self.rx[q].receive(budget)
        for frame, info in frames:
            self.received.put_nowait((q, frame))
            for tap in self._taps:
                tap(q, frame, info)
        if frames:
            await self.rx[q].fill()
        return len(frames)

    async def recv(self) -> tuple[int, bytes]:
        """Next received (queue, frame), as a protocol stack would get it."""
        return await self.received.get()

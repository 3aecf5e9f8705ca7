"""A root complex whose upstream memory requests pass through the IOMMU, on either fabric.

Device DMA is remapped by requester ID before it reaches host memory (VT-d §3.4);
a blocked read completes with Unsupported Request, a blocked write is dropped
(§7.1).  Writes to the interrupt window (``INTERRUPT_WINDOW_SIZE`` bytes from the RC's
MSI address, like x86's 0xFEEx_xxxx) are interrupt requests, recognised before
translation; with interrupt remapping on (:meth:`IommuDriver.enable_irq_remapping`) each
is checked against its IRTE before the host vector it names is raised (VT-d §5.1).

The rules are written once, per request (:meth:`IommuRootComplex.translate`,
:meth:`~IommuRootComplex.interrupt_request`); the TLP handlers (TLP fabric) and the
transaction-level requests (:meth:`~IommuRootComplex.mem_read_request`, fast fabric)
apply them to the requests they carry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import cocotb
from cocotb.triggers import Timer
from cocotbext.pcie.core.tlp import Tlp
from cocotbext.pcie.core.utils import PcieId

from datasheet.pci import request_dwords, write_requests
from fabric.rc import FabricRootComplex
from fabric.transaction import UR, WITHHELD, WriteBurst
from observe import EventBus

from .acs import AcsRootPort
from .events import MsiRequest
from .faults import FaultRecord
from .inject import DELAY, POISON, WITHHOLD, CompletionFault, CompletionFaults
from .remapping import Iommu

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

    from cocotbext.pcie.core.msi import MsiVector

    from fabric.transaction import Completion, MemRequest

    from .driver import IommuDriver

MSI_DWORD_BE = 0xF
#: the interrupt window: every device write in it is an interrupt request (VT-d §3.13, 1 MiB)
INTERRUPT_WINDOW_SIZE = 1 << 20


class IommuRootComplex(FabricRootComplex):
    """RootComplex + one DMA-remapping unit (``self.iommu``) over its host RAM.

    ``self.host_memory`` (the fabric's) is the synchronous view of the RC's RAM.  With
    ``iommu.translation_enabled`` false, DMA is handled by the stock code. Its root ports
    have ACS (:mod:`iommu.acs`): once the host enables it, every memory request from below
    reaches the IOMMU whatever its address.
    A write to the MSI window whose address, size or data names no allocated
    vector is logged and counted in ``msi_bogus`` instead of asserting. Its root ports also
    have AER (:class:`~iommu.aer.AerRootPort`) and publish the error Messages they receive
    on ``self.events``; ``self.inject`` withholds, delays or poisons the completion of a
    requester's next read (:mod:`iommu.inject`).
    On the transaction-level fabric a device access cut into several requests is taken a
    page or a read at a time where each request's outcome is the same (:meth:`read_burst`,
    :meth:`mem_write_requests`), which ``iommu.set_fast_path(False)`` turns off.
    """

    def __init__(self, *args: Any, iommu: Iommu | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.events = EventBus()
        self.default_downstream_bridge = lambda: AcsRootPort(self)  # root ports made from now on
        self.iommu = iommu or Iommu(self.host_memory)
        self._msi_base = self.msi_region.get_absolute_address(0)
        self._msi_end = self._msi_base + INTERRUPT_WINDOW_SIZE
        self.iommu.interrupt_window = (self._msi_base, INTERRUPT_WINDOW_SIZE)
        self.msi_delivered = 0
        self.msi_bogus = 0
        self.irq_domain: IommuDriver | None = None  # the IOMMU driver, once it enables interrupt remapping
        self.inject = CompletionFaults()
        self._poisoned: set[tuple[int, int]] = set()  # (requester, tag) whose next completion is poisoned
        self._msi_request = self.iommu.events.topic(MsiRequest)
        # IOVA ranges the IOMMU must never hand out: the interrupt window, and
        # the bridge memory window (peer-to-peer routing would win over the RC)
        self.iommu.reserved_regions += [
            (self._msi_base, INTERRUPT_WINDOW_SIZE),
            (self.mem_base, self.mem_base & -self.mem_base),
        ]

    def in_interrupt_window(self, addr: int) -> bool:
        return self._msi_base <= addr < self._msi_end

    def msi_compose_msg(self, rid: int, vectors: list[MsiVector]) -> list[tuple[int, int]]:
        """(address, data) a device with requester ID ``rid`` must use for each host vector
        (cocotbext ``MsiVector``): remappable format with its own IRTE while interrupt
        remapping is on, else the compatibility format the vector carries."""
        if self.iommu.interrupts.enabled and self.irq_domain is not None:
            return self.irq_domain.msi_compose_msg(rid, [v.data for v in vectors])
        return [(v.addr, v.data) for v in vectors]

    # -- the rules, per request -----------------------------------------------------------
    async def interrupt_request(self, source: int, address: int, data: bytes, dword: bool) -> None:
        """A write to the interrupt window by ``source``: ``data`` is the request's DWORDs,
        ``dword`` whether it is one whole DWORD.  Deliver a well-formed interrupt through
        the stock MsiRegion; count the rest in ``msi_bogus``."""
        if self.iommu.interrupts.enabled:
            await self._remapped_msi(source, address, data, dword)
            return
        if address == self._msi_base and dword:
            vector = int.from_bytes(data, "little")
            if vector in self.msi_region.msi_vectors:
                self.msi_delivered += 1
                if self._msi_request:
                    self._msi_request.emit(MsiRequest(source, address, data, vector))
                await self.msi_region.write(0, data)
                return
        self.msi_bogus += 1
        if self._msi_request:
            self._msi_request.emit(MsiRequest(source, address, data, None, "names no allocated vector"))
        self.log.warning(
            "Unclaimed MSI write from %s: address 0x%08x, %d DWORD(s), data %s",
            PcieId.from_int(source),
            address,
            len(data) // 4,
            data.hex(),
        )

    async def _remapped_msi(self, source: int, address: int, data: bytes, dword: bool) -> None:
        vector = self.iommu.interrupts.remap(source, address, int.from_bytes(data, "little") if dword else None)
        if vector is None or vector not in self.msi_region.msi_vectors:
            self.msi_bogus += 1
            if self._msi_request:
                self._msi_request.emit(
                    MsiRequest(
                        source,
                        address,
                        data,
                        None,
                        "blocked by interrupt remapping" if vector is None else "names no allocated vector",
                    )
                )
            return
        self.msi_delivered += 1
        if self._msi_request:
            self._msi_request.emit(MsiRequest(source, address, data, vector))
        await self.msi_region.write(0, vector.to_bytes(4, "little"))

    def translate(self, source: int, address: int, length: int, is_write: bool) -> int | None:
        """The host physical address of a request of ``length`` bytes (whole DWORDs) at
        ``address`` from ``source``, or None if the IOMMU blocked it (the fault is logged).

        A request never crosses 4 KiB (``Tlp.check``, asserted on receive) and mapping pages
        are 4 KiB-aligned, so it translates to one chunk whose low 12 address bits equal the
        IOVA's: the completion split (RCB, lower address) is unchanged by the retarget."""
        phys = self.iommu.translate_request(source, address, length, is_write)
        return None if isinstance(phys, FaultRecord) else phys

    def _dma_into_window(self, source: int, phys: int) -> bool:
        if not self.in_interrupt_window(phys):
            return False
        self.msi_bogus += 1
        self.log.warning("DMA write from %s translated into the MSI window: dropped", PcieId.from_int(source))
        return True

    # -- TLP fabric: the TLP handlers --------------------------------------------------------
    def _translate(self, tlp: Tlp, is_write: bool) -> Tlp | None:
        """A copy of ``tlp`` addressed to host physical memory (``tlp`` itself when the
        address is unchanged, as in pass-through), or None if blocked.

        The copy is shallow (the payload is shared and never written) and made by hand:
        ``Tlp(tlp)`` re-validates every field and copies the data, and ``copy.copy`` goes
        through the pickle protocol; each cost more per TLP than the IOTLB look-up itself.
        The requester's TLP is left as it crossed the link.
        """
        phys = self.translate(int(tlp.requester_id), tlp.address, tlp.length * 4, is_write)
        if phys is None or phys == tlp.address:  # blocked, or nothing to retarget (pass-through)
            return None if phys is None else tlp
        host_tlp = Tlp.__new__(Tlp)
        host_tlp.__dict__.update(tlp.__dict__)
        host_tlp.address = phys
        return host_tlp

    async def handle_mem_read_tlp(self, tlp: Tlp) -> None:
        host_tlp = tlp
        if self.iommu.translation_enabled:
            host_tlp = self._translate(tlp, is_write=False)
            if host_tlp is None:
                await self.send(Tlp.create_ur_completion_for_tlp(tlp, PcieId(0, 0, 0)))
                return
        fault = self.inject.take(int(tlp.requester_id), tlp.address)
        if fault is None:
            await super().handle_mem_read_tlp(host_tlp)
        elif fault.kind == DELAY:
            cocotb.start_soon(self._complete_late(host_tlp, fault.delay_ns))
        elif fault.kind == POISON:
            self._poisoned.add((int(tlp.requester_id), tlp.tag))
            await super().handle_mem_read_tlp(host_tlp)
        else:
            assert fault.kind == WITHHOLD
            self.log.warning("read from %s at %#x: completion withheld (injected)", tlp.requester_id, tlp.address)

    async def _complete_late(self, tlp: Tlp, delay_ns: int) -> None:
        await Timer(delay_ns, "ns")
        await super().handle_mem_read_tlp(tlp)

    async def send(self, tlp: Tlp) -> None:
        if self._poisoned and tlp.is_completion():
            key = (int(tlp.requester_id), tlp.tag)
            if key in self._poisoned:
                self._poisoned.discard(key)
                tlp.ep = True
        await super().send(tlp)

    async def handle_mem_write_tlp(self, tlp: Tlp) -> None:
        if self.in_interrupt_window(tlp.address):
            data = bytes(tlp.get_data())[: tlp.length * 4]
            await self.interrupt_request(
                int(tlp.requester_id), tlp.address, data, tlp.length == 1 and tlp.first_be == MSI_DWORD_BE
            )
            return
        if not self.iommu.translation_enabled:
            await super().handle_mem_write_tlp(tlp)
            return
        host_tlp = self._translate(tlp, is_write=True)
        if host_tlp is None:
            return  # blocked posted write: dropped, the fault is logged
        if self._dma_into_window(int(tlp.requester_id), host_tlp.address):
            return
        await super().handle_mem_write_tlp(host_tlp)

    # -- fast fabric: the requests ------------------------------------------------------------
    async def mem_read_request(self, req: MemRequest) -> Completion:
        host_req = req
        if self.iommu.translation_enabled:
            phys = self.translate(req.requester, req.address, req.length, False)
            if phys is None:
                return UR
            host_req = req.at(phys)
        if self.inject:
            fault = self.inject.take(req.requester, req.address)
            if fault is not None:
                return await self._faulted_read(req, host_req, fault)
        return await super().mem_read_request(host_req)

    def read_burst(self, requester: int, cut: Sequence[tuple[int, int]]) -> bytes | None:
        """The bytes of the read requests ``cut`` (address, bytes; one read of ``requester``,
        cut by :func:`~datasheet.pci.read_requests`) when each would have completed
        Successfully, unannotated, from host RAM with its translation served by the IOMMU's
        caches: no completion fault armed, every page's DWORDs translated by
        :meth:`Iommu.cached_translation` into one RAM region; each request is then counted and
        published as one by one (:meth:`Iommu.served`). None, with nothing done, otherwise:
        the requests then go one by one."""
        if self.inject:
            return None
        translating = self.iommu.translation_enabled
        pieces, physical = [], []
        for start, end, first, last in _pages(cut):
            phys = start
            if translating:
                phys = self.iommu.cached_translation(requester, start, end - start, False)
                if phys is None:
                    return None
            ram = self.host_memory.span(phys, end - start)
            if ram is None:
                return None
            mem, off = ram
            pieces.append((mem, off + first - start, last - first))
            physical.append((start, phys))
        if translating:
            self.iommu.served(requester, False, len(cut), _translated(cut, physical))
        return b"".join(mem[off : off + n] for mem, off, n in pieces)

    async def _faulted_read(self, req: MemRequest, host_req: MemRequest, fault: CompletionFault) -> Completion:
        """An injected fault on a read, as annotations of its completion (the requester's to
        act on, ``NicFunction.dma_read``): sent ``delay_ns`` late, poisoned, or never sent."""
        if fault.kind == WITHHOLD:
            self.log.warning(
                "read from %s at %#x: completion withheld (injected)", PcieId.from_int(req.requester), req.address
            )
            req.delay_ns = None
            return WITHHELD
        if fault.kind == DELAY:
            req.delay_ns = fault.delay_ns
        else:
            assert fault.kind == POISON
            req.poisoned = True
        return await super().mem_read_request(host_req)

    async def mem_write_request(self, req: MemRequest) -> None:
        await self.mem_write_requests((req,))

    async def mem_write_requests(self, reqs: Sequence[MemRequest] | WriteBurst) -> None:
        """Posted writes in order (those one memory write of a device was cut into): each an
        interrupt request, or translated and written into host RAM in the caller's turn, or
        blocked (the fault is logged), or handed to the stock handling.  A :class:`WriteBurst`
        goes a page at a time (:meth:`_write_burst`)."""
        if type(reqs) is WriteBurst:
            await self._write_burst(reqs)
            return
        for req in reqs:
            if self.in_interrupt_window(req.address):
                await self.interrupt_request(req.requester, req.address, req.padded(), req.first_be == MSI_DWORD_BE)
                continue
            if self.iommu.translation_enabled:
                phys = self.translate(req.requester, req.address, req.length, True)
                if phys is None or self._dma_into_window(req.requester, phys) or self.write_ram(phys, req):
                    continue
                req = req.at(phys)
            await super().mem_write_request(req)

    async def _write_burst(self, burst: WriteBurst) -> None:
        """Each page of ``burst`` written at once where :meth:`_write_page` can, else cut into
        its requests."""
        for addr, length, count in burst.pages():
            if not self._write_page(burst, addr, length, count):
                await self.mem_write_requests(burst.cut(addr, length))

    def _write_page(self, burst: WriteBurst, addr: int, length: int, count: int) -> bool:
        """Write the ``count`` requests of ``burst`` that carry its ``length`` bytes at ``addr``
        (one 4 KiB page) at once, when one by one each would have been translated from the
        caches and written into the same RAM region, nothing of them near the interrupt window
        before or after translation; each is counted and published as one by one
        (:meth:`Iommu.served`). False, with nothing done, otherwise."""
        start = addr & ~3
        end = (addr + length + 3) & ~3
        if not length or (start < self._msi_end and self._msi_base < end):
            return False
        phys = start
        translating = self.iommu.translation_enabled
        if translating:
            phys = self.iommu.cached_translation(burst.requester, start, end - start, True)
            if phys is None or (phys < self._msi_end and self._msi_base < phys + end - start):
                return False
        ram = self.host_memory.span(phys, end - start)
        if ram is None:
            return False
        mem, off = ram
        off += addr & 3
        pos = addr - burst.address
        mem[off : off + length] = burst.data[pos : pos + length]
        if translating:
            cut = write_requests(addr, length, burst.mps)
            self.iommu.served(burst.requester, True, count, _translated(cut, [(start, phys)]))
        return True


def _pages(cut: Sequence[tuple[int, int]]) -> list[tuple[int, int, int, int]]:
    """The requests ``cut`` (address, bytes) grouped by 4 KiB page, in order: (DWORD start,
    DWORD end, first byte, end byte) of each page's requests (a request never crosses 4 KiB)."""
    pages: list[tuple[int, int, int, int]] = []
    for addr, n in cut:
        if pages and pages[-1][0] >> 12 == addr >> 12:
            start, _end, first, _last = pages[-1]
            pages[-1] = (start, (addr + n + 3) & ~3, first, addr + n)
        else:
            pages.append((addr & ~3, (addr + n + 3) & ~3, addr, addr + n))
    return pages


def _translated(cut: Iterable[tuple[int, int]], pages: list[tuple[int, int]]) -> Iterator[tuple[int, int, int]]:
    """(IOVA, length, host address) of each request of ``cut`` (address, bytes), as a TLP
    carries it (DWORD address and length), whose 4 KiB page starts at an IOVA of ``pages``
    ((IOVA of the page's first DWORD, its host address)), in order."""
    pages = iter(pages)
    start, phys = next(pages)
    for addr, n in cut:
        iova = addr & ~3
        if iova >> 12 != start >> 12:
            start, phys = next(pages)
        yield iova, request_dwords(addr, n) << 2, phys + iova - start

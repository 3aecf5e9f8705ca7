"""A cocotbext-pcie RootComplex whose upstream memory requests pass through the IOMMU.

Device DMA is remapped by requester ID before it reaches host memory (VT-d §3.4);
a blocked read completes with Unsupported Request, a blocked write is dropped
(§7.1).  Writes to the interrupt window (``INTERRUPT_WINDOW_SIZE`` bytes from the RC's
MSI address, like x86's 0xFEEx_xxxx) are interrupt requests, recognised before
translation; with interrupt remapping on (:meth:`IommuDriver.enable_irq_remapping`) each
is checked against its IRTE before the host vector it names is raised (VT-d §5.1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import cocotb
from cocotb.triggers import Timer
from cocotbext.pcie.core import RootComplex
from cocotbext.pcie.core.tlp import Tlp
from cocotbext.pcie.core.utils import PcieId

from observe import EventBus

from .acs import AcsRootPort
from .aer import AerRootPort
from .events import MsiRequest
from .faults import FaultRecord
from .inject import DELAY, POISON, WITHHOLD, CompletionFaults
from .memory import RcHostMemory
from .remapping import Iommu

if TYPE_CHECKING:
    from cocotbext.pcie.core.msi import MsiVector

    from .driver import IommuDriver

MSI_DWORD_BE = 0xF
#: the interrupt window: every device write in it is an interrupt request (VT-d §3.13, 1 MiB)
INTERRUPT_WINDOW_SIZE = 1 << 20


class AerRootComplex(RootComplex):
    """A cocotbext RootComplex whose root ports have AER (:class:`~iommu.aer.AerRootPort`); the
    ports publish the error Messages they receive on ``self.events``."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.events = EventBus()
        self.default_downstream_bridge = lambda: AerRootPort(self.events)  # root ports made from now on


class IommuRootComplex(AerRootComplex):
    """RootComplex + one DMA-remapping unit (``self.iommu``) over its host RAM.

    ``self.host_memory`` is the synchronous view of the RC's RAM.  With
    ``iommu.translation_enabled`` false, DMA is handled by the stock code. Its root ports
    have ACS (:mod:`iommu.acs`): once the host enables it, every memory request from below
    reaches the IOMMU whatever its address.
    A write to the MSI window whose address, size or data names no allocated
    vector is logged and counted in ``msi_bogus`` instead of asserting.
    """

    def __init__(self, *args: Any, iommu: Iommu | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.default_downstream_bridge = lambda: AcsRootPort(self)  # root ports made from now on
        self.host_memory = RcHostMemory(self)
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

    async def _msi_write(self, tlp: Tlp) -> None:
        """Deliver a well-formed interrupt request through the stock MsiRegion; count the rest."""
        data = bytes(tlp.get_data())[: tlp.length * 4]
        source = int(tlp.requester_id)
        if self.iommu.interrupts.enabled:
            await self._remapped_msi(tlp, source, data)
            return
        if tlp.address == self._msi_base and tlp.length == 1 and tlp.first_be == MSI_DWORD_BE:
            vector = int.from_bytes(data, "little")
            if vector in self.msi_region.msi_vectors:
                self.msi_delivered += 1
                if self._msi_request:
                    self._msi_request.emit(MsiRequest(source, tlp.address, data, vector))
                await self.msi_region.write(0, data)
                return
        self.msi_bogus += 1
        if self._msi_request:
            self._msi_request.emit(MsiRequest(source, tlp.address, data, None, "names no allocated vector"))
        self.log.warning(
            "Unclaimed MSI write from %s: address 0x%08x, BE 0x%x, data %s",
            tlp.requester_id,
            tlp.address,
            tlp.first_be,
            data.hex(),
        )

    async def _remapped_msi(self, tlp: Tlp, source: int, data: bytes) -> None:
        dword = tlp.length == 1 and tlp.first_be == MSI_DWORD_BE
        vector = self.iommu.interrupts.remap(source, tlp.address, int.from_bytes(data, "little") if dword else None)
        if vector is None or vector not in self.msi_region.msi_vectors:
            self.msi_bogus += 1
            if self._msi_request:
                self._msi_request.emit(
                    MsiRequest(
                        source,
                        tlp.address,
                        data,
                        None,
                        "blocked by interrupt remapping" if vector is None else "names no allocated vector",
                    )
                )
            return
        self.msi_delivered += 1
        if self._msi_request:
            self._msi_request.emit(MsiRequest(source, tlp.address, data, vector))
        await self.msi_region.write(0, vector.to_bytes(4, "little"))

    def _translate(self, tlp: Tlp, is_write: bool) -> Tlp | None:
        """A copy of ``tlp`` addressed to host physical memory (``tlp`` itself when the
        address is unchanged, as in pass-through), or None if blocked.

        A TLP never crosses 4 KiB (``Tlp.check``, asserted on receive) and mapping
        pages are 4 KiB-aligned, so it translates to one chunk whose low 12 address
        bits equal the IOVA's: the stock completion split (RCB, lower address) is
        unchanged by the retarget.  The copy is shallow (the payload is shared and
        never written) and made by hand: ``Tlp(tlp)`` re-validates every field and
        copies the data, and ``copy.copy`` goes through the pickle protocol; each cost
        more per TLP than the IOTLB look-up itself.  The requester's TLP is left as it
        crossed the link.
        """
        result = self.iommu.translate(int(tlp.requester_id), tlp.address, tlp.length * 4, is_write)
        if isinstance(result, FaultRecord):
            return None
        ((phys, _length),) = result
        if phys == tlp.address:  # pass-through (or an identity mapping): nothing to retarget
            return tlp
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
            await self._msi_write(tlp)
            return
        if not self.iommu.translation_enabled:
            await super().handle_mem_write_tlp(tlp)
            return
        host_tlp = self._translate(tlp, is_write=True)
        if host_tlp is None:
            return  # blocked posted write: dropped, the fault is logged
        if self.in_interrupt_window(host_tlp.address):
            self.msi_bogus += 1
            self.log.warning("DMA write from %s translated into the MSI window: dropped", tlp.requester_id)
            return
        await super().handle_mem_write_tlp(host_tlp)

"""Access Control Services in the root ports (PCIe Base 6.0 §6.12, §7.7.8), so that every
upstream request reaches the IOMMU before it is routed.

cocotbext-pcie's root port routes a device's memory request by its *untranslated* address:
one that falls inside the port's own memory window (a BAR under it) is treated as
peer-to-peer and dropped, and never reaches the IOMMU. With ACS the port forwards it
upstream instead, where it is translated like any other IOVA:

* Source Validation (SV): a request whose requester ID is not on the port's secondary
  bus range is refused (a read completes with UR, a write is dropped), counted in
  ``acs_violations`` and published as an :class:`~iommu.events.AcsViolation`.
* P2P Request Redirect (RR) and Upstream Forwarding (UF): memory requests from below go
  to the root complex, whatever their address.
* P2P Completion Redirect (CR) is advertised; completions only ever go upstream here.

The host enables these bits as Linux does when an IOMMU is on (``pci_enable_acs``). The
verdict is one rule (:meth:`AcsRootPort.acs_route`) that the TLP path
(:meth:`~AcsRootPort.downstream_recv`) and the fast fabric's requests
(:meth:`~AcsRootPort.upstream_read`) both apply.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cocotbext.pcie.core.caps import PciExtCap
from cocotbext.pcie.core.tlp import Tlp, TlpType
from cocotbext.pcie.core.utils import PcieId, byte_mask_update

from datasheet import pci
from fabric.rc import FabricRootPort
from fabric.transaction import UR

from .aer import AerRootPort
from .events import AcsViolation

if TYPE_CHECKING:
    from collections.abc import Sequence

    from fabric.transaction import Completion, MemRequest, WriteBurst

    from .rc import IommuRootComplex

# keyed by the TLP's (fmt, type): cheaper than building and hashing the TlpType member
MEM_REQUESTS = {t.value for t in (TlpType.MEM_READ, TlpType.MEM_READ_64, TlpType.MEM_WRITE, TlpType.MEM_WRITE_64)}
NON_POSTED = {t.value for t in (TlpType.MEM_READ, TlpType.MEM_READ_64)}
#: :meth:`AcsRootPort.acs_route` verdicts
REFUSED, REDIRECTED = False, True
#: P2P Request Redirect and Upstream Forwarding: every request from below goes up
REDIRECT_BITS = pci.PCI_ACS_RR | pci.PCI_ACS_UF
SUPPORTED = pci.PCI_ACS_SV | pci.PCI_ACS_RR | pci.PCI_ACS_CR | pci.PCI_ACS_UF


class AcsExtendedCapability(PciExtCap):
    """ACS capability of a downstream port: SV, RR, CR, UF capable; no egress control vector."""

    def __init__(self):
        super().__init__()
        self.cap_id = pci.PCI_EXT_CAP_ID_ACS
        self.cap_ver = 1
        self.length = pci.PCI_ACS_SIZEOF // 4
        self.capability = SUPPORTED
        self.control = 0

    def enabled(self, bits: int) -> bool:
        return self.control & bits == bits

    async def _read_register(self, reg: int) -> int:
        return self.capability | self.control << 16 if reg == 1 else 0

    async def _write_register(self, reg: int, data: int, mask: int) -> None:
        if reg == 1:  # only the supported control bits are RW
            self.control = byte_mask_update(self.control, mask >> 2, data >> 16, self.capability)


class AcsRootPort(FabricRootPort, AerRootPort):
    """A root port on ``rc``'s fabric, with AER (the error Messages it receives go to
    ``rc.events``) and ACS, that hands redirected requests straight to ``rc``'s TLP handling
    (the root complex's internal path to the IOMMU), preserving their order."""

    def __init__(self, rc: IommuRootComplex, *args: Any, **kwargs: Any):
        super().__init__(rc, *args, events=rc.events, **kwargs)
        self.acs_cap = AcsExtendedCapability()
        self.register_extended_capability(self.acs_cap)
        self.acs_violations = 0
        self._violation_topic = rc.iommu.events.topic(AcsViolation)

    def acs_route(self, requester: int, address: int, non_posted: bool) -> bool | None:
        """ACS's verdict on a memory request from below: :data:`REFUSED` (Source Validation
        failed: counted, published), :data:`REDIRECTED` (RR/UF: to the root complex,
        whatever the address) or None (ACS off: the bridge's own routing)."""
        control = self.acs_cap.control
        if not control:
            return None
        if self._source_invalid(control, requester):
            self.acs_violations += 1
            self.log.warning(
                "ACS violation: request from %s outside the secondary bus range: refused", PcieId.from_int(requester)
            )
            if self._violation_topic:
                self._violation_topic.emit(AcsViolation(requester, address, not non_posted))
            return REFUSED
        if control & REDIRECT_BITS == REDIRECT_BITS:
            return REDIRECTED
        return None

    def _source_invalid(self, control: int, requester: int) -> bool:
        """ACS Source Validation on and ``requester`` outside the secondary bus range."""
        return bool(control & pci.PCI_ACS_SV) and not self.sec_bus_num <= requester >> 8 <= self.sub_bus_num

    def redirects(self, requester: int) -> bool:
        """Whether :meth:`acs_route` redirects every request of ``requester`` to the root
        complex (RR and UF set, the source valid), without counting anything."""
        control = self.acs_cap.control
        return control & REDIRECT_BITS == REDIRECT_BITS and not self._source_invalid(control, requester)

    # -- TLP fabric ------------------------------------------------------------------------------
    async def downstream_recv(self, tlp: Tlp) -> None:
        kind = (tlp.fmt, tlp.type)
        if kind in MEM_REQUESTS:
            verdict = self.acs_route(int(tlp.requester_id), tlp.address, kind in NON_POSTED)
            if verdict is REDIRECTED:
                await self.rc.downstream_recv(tlp)
                return
            if verdict is REFUSED:
                tlp.release_fc()
                if kind in NON_POSTED:
                    await self.downstream_send(Tlp.create_ur_completion_for_tlp(tlp, self.pcie_id))
                return
        await super().downstream_recv(tlp)

    # -- fast fabric ------------------------------------------------------------------------------
    async def upstream_read(self, req: MemRequest) -> Completion:
        verdict = self.acs_route(req.requester, req.address, non_posted=True)
        if verdict is REDIRECTED:
            return await self.rc.mem_read_request(req)
        if verdict is REFUSED:
            return UR
        return await super().upstream_read(req)

    def upstream_read_burst(self, requester: int, cut: Sequence[tuple[int, int]]) -> bytes | None:
        """The read requests ``cut`` of ``requester`` at once when ACS redirects them to the
        root complex and it can serve them all from its caches and RAM
        (:meth:`IommuRootComplex.read_burst`); None, with nothing done, otherwise."""
        return self.rc.read_burst(requester, cut) if self.redirects(requester) else None

    async def upstream_writes(self, reqs: list[MemRequest] | WriteBurst) -> None:
        """A requester's posted writes in order: ACS's verdict is the same for each (it depends
        on the requester and the control bits alone), so it is taken once; a refusal is still
        counted and published per request."""
        first = reqs[0]
        verdict = self.acs_route(first.requester, first.address, non_posted=False)
        if verdict is REDIRECTED:
            await self.rc.mem_write_requests(reqs)
        elif verdict is None:
            await super().upstream_writes(reqs)
        else:
            for req in reqs[1:]:
                self.acs_route(req.requester, req.address, non_posted=False)

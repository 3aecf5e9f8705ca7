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

The host enables these bits as Linux does when an IOMMU is on (``pci_enable_acs``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cocotbext.pcie.core.caps import PciExtCap
from cocotbext.pcie.core.tlp import Tlp, TlpType
from cocotbext.pcie.core.utils import byte_mask_update

from datasheet import pci

from .aer import AerRootPort
from .events import AcsViolation

if TYPE_CHECKING:
    from .rc import IommuRootComplex

MEM_REQUESTS = {TlpType.MEM_READ, TlpType.MEM_READ_64, TlpType.MEM_WRITE, TlpType.MEM_WRITE_64}
NON_POSTED = {TlpType.MEM_READ, TlpType.MEM_READ_64}
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


class AcsRootPort(AerRootPort):
    """A root port (with AER) and ACS that hands redirected requests straight to ``rc``'s TLP
    handling (the root complex's internal path to the IOMMU), preserving their order."""

    def __init__(self, rc: IommuRootComplex, *args: Any, **kwargs: Any):
        super().__init__(rc.events, *args, **kwargs)
        self.rc = rc
        self.acs_cap = AcsExtendedCapability()
        self.register_extended_capability(self.acs_cap)
        self.acs_violations = 0
        self._violation_topic = rc.iommu.events.topic(AcsViolation)

    async def downstream_recv(self, tlp: Tlp) -> None:
        if tlp.fmt_type in MEM_REQUESTS and self.acs_cap.control:
            acs = self.acs_cap
            if acs.enabled(pci.PCI_ACS_SV) and not self.sec_bus_num <= tlp.requester_id.bus <= self.sub_bus_num:
                await self._violation(tlp)
                return
            if acs.enabled(pci.PCI_ACS_RR | pci.PCI_ACS_UF):
                await self.rc.downstream_recv(tlp)
                return
        await super().downstream_recv(tlp)

    async def _violation(self, tlp: Tlp) -> None:
        self.acs_violations += 1
        self.log.warning("ACS violation: request from %s outside the secondary bus range: refused", tlp.requester_id)
        if self._violation_topic:
            self._violation_topic.emit(AcsViolation(int(tlp.requester_id), tlp.address, tlp.fmt_type not in NON_POSTED))
        tlp.release_fc()
        if tlp.fmt_type in NON_POSTED:
            await self.downstream_send(Tlp.create_ur_completion_for_tlp(tlp, self.pcie_id))

"""Root Ports with Advanced Error Reporting (PCIe Base 6.0 §6.2.4.1, §6.2.6, §7.8.4.9-11).

A function below the port signals an error with an ERR_COR, ERR_NONFATAL or ERR_FATAL
Message routed to the Root Complex. cocotbext-pcie's root port has no use for Messages (it
cannot even route one), so :class:`AerRootPort` takes them where they enter it, on its
secondary side, and does what the spec gives a Root Port to do:

* Root Error Status records the first Message of each kind with its requester in Error
  Source Identification; later ones while it is set only set the "Multiple ... Received"
  bit (so a flood from one function costs the host one interrupt per service round);
* the Advanced Error Interrupt goes to the host as an MSI (the port's MSI capability) when a
  "Received" bit becomes set while Root Error Command enables its kind, or the enable is set
  while the bit is (the rising edge of status AND enable);
* each Message is published as an :class:`~iommu.events.AerMessage`.

The port knows nothing of the devices below it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cocotb
from cocotbext.pcie.core.bridge import RootPort
from cocotbext.pcie.core.caps import MsiCapability
from cocotbext.pcie.core.caps.aer import AerExtendedCapability
from cocotbext.pcie.core.tlp import Tlp, TlpType

from datasheet import pci
from observe import EventBus

from .events import AerMessage

MESSAGES = {TlpType.MSG_TO_RC, TlpType.MSG_DATA_TO_RC}


class RootPortAerCapability(AerExtendedCapability):
    """The AER capability of a Root Port, with Root Error Command, Status and Source ID."""

    def __init__(self, interrupt: Callable[[], None]):
        super().__init__()
        self.length = pci.PCI_ERR_ROOT_SIZEOF // 4
        self.interrupt = interrupt

    def _pending(self) -> tuple[bool, bool]:
        """(correctable, uncorrectable) Received bits that Root Error Command enables."""
        cor = self.err_cor_received and self.correctable_error_reporting_enable
        fatal = self.fatal_error_messages_received and self.fatal_error_reporting_enable
        nonfatal = self.nonfatal_error_messages_received and self.nonfatal_error_reporting_enable
        return bool(cor), bool(self.err_fatal_nonfatal_received and (fatal or nonfatal))

    async def _write_register(self, reg: int, data: int, mask: int) -> None:
        before = self._pending()
        await super()._write_register(reg, data, mask)
        if reg == pci.PCI_ERR_ROOT_COMMAND // 4 and any(now and not was for now, was in zip(self._pending(), before)):
            self.interrupt()

    def receive(self, code: int, source: int) -> bool:
        """Record an error Message from ``source`` (§7.8.4.10-11); True if it must interrupt."""
        if code == pci.PCI_MSG_ERR_COR:
            if self.err_cor_received:
                self.multiple_err_cor_received = True
                return False
            self.err_cor_received = True
            self.err_cor_source_identification = source
            return bool(self.correctable_error_reporting_enable)
        fatal = code == pci.PCI_MSG_ERR_FATAL
        if fatal:
            self.fatal_error_messages_received = True
        else:
            self.nonfatal_error_messages_received = True
        if self.err_fatal_nonfatal_received:
            self.multiple_err_fatal_nonfatal_received = True
            return False
        self.err_fatal_nonfatal_received = True
        self.err_fatal_nonfatal_source_identification = source
        self.first_uncorrectable_fatal = fatal
        return bool(self.fatal_error_reporting_enable if fatal else self.nonfatal_error_reporting_enable)


class AerRootPort(RootPort):
    """A root port that collects error Messages and raises the Advanced Error Interrupt.
    ``events`` is the platform's bus (:class:`~iommu.events.AerMessage`)."""

    def __init__(self, *args: Any, events: EventBus, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.aer_cap = RootPortAerCapability(self._interrupt)
        self.register_extended_capability(self.aer_cap)
        self.msi_cap = MsiCapability()
        self.msi_cap.msi_64bit_address_capable = True
        self.register_capability(self.msi_cap)
        self.messages_received = 0
        self.interrupts = 0
        self._message = events.topic(AerMessage)

    async def downstream_recv(self, tlp: Tlp) -> None:
        if tlp.fmt_type not in MESSAGES:
            await super().downstream_recv(tlp)
            return
        tlp.release_fc()
        code = pci.msg_code(tlp.first_be, tlp.last_be)
        source = int(tlp.requester_id)
        if code not in pci.PCI_MSG_ERR_NAMES:
            self.log.warning("Message %#04x from %s: not an error Message, dropped", code, tlp.requester_id)
            return
        self.messages_received += 1
        interrupt = self.aer_cap.receive(code, source)
        if self._message:
            self._message.emit(AerMessage(int(self.pcie_id), source, pci.PCI_MSG_ERR_NAMES[code], interrupt))
        if interrupt:
            self._interrupt()

    def _interrupt(self) -> None:
        cocotb.start_soon(self._advanced_error_interrupt())

    async def _advanced_error_interrupt(self) -> None:
        """The port's MSI (§6.2.4.1.2); without MSI enabled and bus mastering the host is not told."""
        if not (self.msi_cap.msi_enable and self.bus_master_enable):
            self.log.warning("Advanced Error Interrupt not sent: MSI or bus mastering disabled")
            return
        self.interrupts += 1
        await self.msi_cap.issue_msi_interrupt()

"""The host's AER service (Linux drivers/pci/pcie/aer.c, and err.c's ``pcie_do_recovery``).

:func:`pci_aer_init` prepares one function (``pci_aer_init``: status cleared, error reporting
enabled in Device Control). :class:`AerService` is the service bound to one root port
(``aer_probe``): it enables Root Error Command, takes the port's Advanced Error Interrupt (MSI)
and for each interrupt

1. reads and clears Root Error Status and Error Source Identification (``aer_isr``);
2. finds the function(s) that reported: the one Error Source names, and, when the port saw
   more than one Message, every function below the port whose AER status shows an unmasked
   error of that kind (``find_source_device``);
3. reads each one's status, mask, severity, First Error Pointer and Header Log, and logs them
   (:attr:`AerService.errors`, ``aer_print_error``);
4. handles it (``handle_error_source``): a correctable error is cleared and the bound driver's
   ``cor_error_detected`` called; an uncorrectable one runs the recovery sequence,
   error_detected -> mmio_enabled, or a reset and slot_reset -> resume (:meth:`pcie_do_recovery`).

Where this host differs from Linux (docs/security.md, "AER as modelled"):

* Recovery runs on the function that reported the error, not on every function below the
  port: a VF's error is Function-specific (PCIe Base 6.0 §6.2.4, §9.4), and broadcasting it
  would call every other guest's handlers and, on NEED_RESET, reset them all.
* The reset of a VF is a Function Level Reset of that VF (with its configuration saved and
  restored), for a fatal error as for a driver's NEED_RESET, as Linux resets an RCiEP
  (``aer_root_reset`` -> ``pcie_reset_flr``) instead of the link. The PF is not reset by the
  host (a PF FLR clears its SR-IOV state and takes every VF away): its driver resets the
  device in slot_reset, as Linux leaves a non-fatal NEED_RESET to the drivers.
* Per-function rate limit: a function reporting more than :data:`AER_RATELIMIT_BURST` errors
  of one kind within :data:`AER_RATELIMIT_INTERVAL_NS` has the status bits it keeps
  reporting set in its AER Mask register: it goes on logging them, but sends no more
  Messages for them, and the other functions' errors are served as before.
  :meth:`AerService.unmask` lifts that (the host does when it gives the function to a new
  guest).
"""

from __future__ import annotations

import collections
import enum
import logging
from dataclasses import dataclass, field

import cocotb
from cocotb.triggers import Event, First, Timer
from cocotb.utils import get_sim_time
from cocotbext.pcie.core.pci import PciBus, PciDevice

from datasheet import pci
from pcicore.config import (
    find_capability,
    find_ext_capability,
    pci_find_capability,
    pci_find_ext_capability,
)
from pcicore.driver import PciChannelState, PciErsResult, merge_result, pci_err_handlers
from pcicore.irq import pci_alloc_irq_vectors, pci_free_irq_vectors
from pcicore.reset import pci_reset_function

#: the per-function rate limit (Linux rate-limits AER logging per device at 10 per 5 s; the
#: simulated time scale is microseconds, so the window is 1 ms)
AER_RATELIMIT_BURST = 10
AER_RATELIMIT_INTERVAL_NS = 1_000_000

log = logging.getLogger("cocotb.pcicore.aer")

ALL_ONES = 0xFFFFFFFF
DEVSTA_ERRORS = pci.PCI_EXP_DEVSTA_CED | pci.PCI_EXP_DEVSTA_NFED | pci.PCI_EXP_DEVSTA_FED | pci.PCI_EXP_DEVSTA_URD
ROOT_CMD_ALL = pci.PCI_ERR_ROOT_CMD_COR_EN | pci.PCI_ERR_ROOT_CMD_NONFATAL_EN | pci.PCI_ERR_ROOT_CMD_FATAL_EN
ROOT_COR = pci.PCI_ERR_ROOT_COR_RCV | pci.PCI_ERR_ROOT_MULTI_COR_RCV
ROOT_UNCOR = pci.PCI_ERR_ROOT_UNCOR_RCV | pci.PCI_ERR_ROOT_MULTI_UNCOR_RCV


class AerSeverity(enum.Enum):
    """Linux's AER_CORRECTABLE / AER_NONFATAL / AER_FATAL."""

    CORRECTABLE = "Correctable"
    NONFATAL = "Uncorrectable (Non-Fatal)"
    FATAL = "Uncorrectable (Fatal)"


@dataclass(frozen=True)
class AerErrInfo:
    """One error as the service read it from the function (Linux ``struct aer_err_info``)."""

    time_ns: float
    source_id: int
    severity: AerSeverity
    status: int  # the unmasked status bits
    mask: int
    first_error: int | None = None  # bit the First Error Pointer names
    tlp_header: tuple[int, int, int, int] | None = None
    multi: bool = False  # found by scanning (the port saw more than one Message)

    @property
    def names(self) -> list[str]:
        table = pci.AER_COR_NAMES if self.severity is AerSeverity.CORRECTABLE else pci.AER_UNCOR_NAMES
        return [table.get(bit, f"bit{bit}") for bit in range(32) if self.status >> bit & 1]

    def __str__(self) -> str:
        text = f"{pci.rid_str(self.source_id)}: AER: {self.severity.value} error: status {self.status:#010x}"
        text += f", mask {self.mask:#010x} [{', '.join(self.names)}]"
        if self.first_error is not None:
            text += f" (First) {pci.AER_UNCOR_NAMES.get(self.first_error, self.first_error)}"
        if self.tlp_header is not None:
            text += " TLP Header: " + " ".join(f"{dw:08x}" for dw in self.tlp_header)
        return text


@dataclass
class AerRecovery:
    """One run of the recovery sequence: what each step returned, and how it ended."""

    source_id: int
    state: PciChannelState
    steps: list[str] = field(default_factory=list)
    result: PciErsResult | None = None


async def aer_cap(dev: PciDevice) -> int | None:
    return await find_ext_capability(dev, pci.PCI_EXT_CAP_ID_ERR)


async def pcie_clear_device_status(dev: PciDevice, exp: int | None = None) -> None:
    """Clear the Device Status error bits (RW1C); ``exp``: the PCIe capability's offset if
    the caller has it (else it is looked up)."""
    if exp is None:
        exp = await find_capability(dev, pci.PCI_CAP_ID_EXP)
    if exp is not None:
        await dev.config_write_word(exp + pci.PCI_EXP_DEVSTA, DEVSTA_ERRORS)


async def pci_aer_init(dev: PciDevice) -> bool:
    """Prepare one function for the AER service (Linux ``pci_aer_init``): clear its AER and
    Device Status, enable its error reporting in Device Control. False without AER. A new
    function, just enumerated: the capability offsets are the ones enumeration found
    (Linux's ``pdev->aer_cap`` and ``pdev->pcie_cap``)."""
    pos = await pci_find_ext_capability(dev, pci.PCI_EXT_CAP_ID_ERR)
    if pos is None:
        return False
    await dev.config_write_dword(pos + pci.PCI_ERR_UNCOR_STATUS, ALL_ONES)
    await dev.config_write_dword(pos + pci.PCI_ERR_COR_STATUS, ALL_ONES)
    exp = await pci_find_capability(dev, pci.PCI_CAP_ID_EXP)
    await pcie_clear_device_status(dev, exp)
    devctl = await dev.config_read_word(exp + pci.PCI_EXP_DEVCTL) & ~pci.PCI_EXP_DEVCTL_BCR_FLR
    await dev.config_write_word(exp + pci.PCI_EXP_DEVCTL, devctl | pci.PCI_EXP_AER_FLAGS)
    return True


def functions_below(bus: PciBus) -> list[PciDevice]:
    """Every function on ``bus`` and the buses below it (VFs' virtual buses included)."""
    found = list(bus.devices)
    for child in bus.children:
        found += functions_below(child)
    return found


class AerService:
    """The AER service of root port ``port`` (its host view); :meth:`probe` starts it."""

    def __init__(self, port: PciDevice):
        self.port = port
        self.errors: list[AerErrInfo] = []
        self.recoveries: list[AerRecovery] = []
        self.interrupts = 0
        self.masked: dict[int, tuple[int, int]] = {}  # RID -> (uncorrectable, correctable) bits it masked
        self._recent: dict[tuple[int, AerSeverity], collections.deque[float]] = {}
        self._pos: int | None = None
        self._irq = Event()
        self._idle = Event()  # set while :attr:`idle`
        self._idle.set()
        self._task = None
        self._serving = False

    # -- aer_probe ------------------------------------------------------------------------------
    async def probe(self) -> None:
        """Enable AER below the port and on it (``aer_enable_rootport``), take its interrupt."""
        port = self.port
        self._pos = pos = await aer_cap(port)
        if pos is None:
            raise RuntimeError(f"{port.pcie_id}: root port without AER")
        for dev in functions_below(port.subordinate):
            await pci_aer_init(dev)
        await port.config_write_dword(pos + pci.PCI_ERR_ROOT_STATUS, ALL_ONES)
        if await pci_alloc_irq_vectors(port, 1, 1) != 1:
            raise RuntimeError(f"{port.pcie_id}: no interrupt for the AER service")
        port.request_irq(0, self._aer_irq)
        await port.config_write_dword(pos + pci.PCI_ERR_ROOT_COMMAND, ROOT_CMD_ALL)
        self._task = cocotb.start_soon(self._aer_isr())

    def remove(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._serving = False
        self._idle.set()  # nothing will be served: nobody waits for it
        pci_free_irq_vectors(self.port)

    async def _aer_irq(self) -> None:
        self.interrupts += 1
        self._irq.set()
        self._idle.clear()

    @property
    def idle(self) -> bool:
        """No interrupt waiting and no error being served (a host operation on a function,
        such as rebinding it, waits for this as Linux's would for the device lock)."""
        return not (self._serving or self._irq.is_set())

    async def wait_idle(self, timeout_ns: int) -> bool:
        """Wait until :attr:`idle` (at most ``timeout_ns`` of simulated time); whether it is."""
        if not self.idle:
            await First(self._idle.wait(), Timer(timeout_ns, "ns"))
        return self.idle

    async def _aer_isr(self) -> None:
        """Serve the port's errors in order, one interrupt's worth at a time (Linux's
        threaded ``aer_isr``): read Root Error Status, clear what was read, handle it."""
        port, pos = self.port, self._pos
        while True:
            await self._irq.wait()
            self._serving = True
            self._irq.clear()
            while True:
                status = await port.config_read_dword(pos + pci.PCI_ERR_ROOT_STATUS)
                if not status & (ROOT_COR | ROOT_UNCOR):
                    break
                source = await port.config_read_dword(pos + pci.PCI_ERR_ROOT_ERR_SRC)
                await port.config_write_dword(pos + pci.PCI_ERR_ROOT_STATUS, status)
                # uncorrectable first: a correctable Advisory Non-Fatal report clears the
                # non-fatal status bits it stands for, which an ERR_NONFATAL may share
                if status & ROOT_UNCOR:
                    first = source >> 16 if status & pci.PCI_ERR_ROOT_UNCOR_RCV else None
                    await self._serve(False, first, bool(status & pci.PCI_ERR_ROOT_MULTI_UNCOR_RCV))
                if status & ROOT_COR:
                    first = source & 0xFFFF if status & pci.PCI_ERR_ROOT_COR_RCV else None
                    await self._serve(True, first, bool(status & pci.PCI_ERR_ROOT_MULTI_COR_RCV))
            self._serving = False
            if not self._irq.is_set():
                self._idle.set()

    async def _serve(self, correctable: bool, first: int | None, multi: bool) -> None:
        try:
            await self._serve_sources(correctable, first, multi)
        except Exception:  # a function that vanished mid-service must not stop the service
            log.exception("AER: error service failed")

    async def _serve_sources(self, correctable: bool, first: int | None, multi: bool) -> None:
        for dev in await self.find_source_devices(correctable, first, multi):
            info = await self.aer_get_device_error_info(dev, correctable, multi)
            if info is None:
                continue
            self.errors.append(info)
            log.error("%s", info)
            await self._ratelimit(dev, info)
            await self.handle_error_source(dev, info)

    # -- find_source_device, aer_get_device_error_info ----------------------------------------
    async def find_source_devices(self, correctable: bool, first: int | None, multi: bool) -> list[PciDevice]:
        """The function Error Source names, and with ``multi`` every other function below the
        port whose AER status shows an unmasked error of the kind."""
        functions = functions_below(self.port.subordinate)
        found = [dev for dev in functions if first is not None and int(dev.pcie_id) == first]
        if multi or not found:
            for dev in functions:
                if dev not in found and await self._has_error(dev, correctable):
                    found.append(dev)
        return found

    async def _has_error(self, dev: PciDevice, correctable: bool) -> bool:
        pos = await aer_cap(dev)
        if pos is None:
            return False
        status_reg, mask_reg = self._registers(correctable)
        status = await dev.config_read_dword(pos + status_reg)
        return status != ALL_ONES and bool(status & ~await dev.config_read_dword(pos + mask_reg))

    @staticmethod
    def _registers(correctable: bool) -> tuple[int, int]:
        if correctable:
            return pci.PCI_ERR_COR_STATUS, pci.PCI_ERR_COR_MASK
        return pci.PCI_ERR_UNCOR_STATUS, pci.PCI_ERR_UNCOR_MASK

    async def aer_get_device_error_info(self, dev: PciDevice, correctable: bool, multi: bool) -> AerErrInfo | None:
        """Status, mask and (uncorrectable) severity, First Error Pointer and Header Log."""
        pos = await aer_cap(dev)
        if pos is None:
            return None
        status_reg, mask_reg = self._registers(correctable)
        status = await dev.config_read_dword(pos + status_reg)
        mask = await dev.config_read_dword(pos + mask_reg)
        if status == ALL_ONES or not status & ~mask:
            return None
        status &= ~mask
        rid, now = int(dev.pcie_id), get_sim_time("ns")
        if correctable:
            return AerErrInfo(now, rid, AerSeverity.CORRECTABLE, status, mask, multi=multi)
        severity = await dev.config_read_dword(pos + pci.PCI_ERR_UNCOR_SEVER)
        fep = await dev.config_read_dword(pos + pci.PCI_ERR_CAP) & pci.PCI_ERR_CAP_FEP_MASK
        header = None
        if status >> fep & 1:
            header = tuple([await dev.config_read_dword(pos + pci.PCI_ERR_HEADER_LOG + 4 * i) for i in range(4)])
        kind = AerSeverity.FATAL if status & severity else AerSeverity.NONFATAL
        return AerErrInfo(now, rid, kind, status, mask, fep if header else None, header, multi)

    # -- handle_error_source ----------------------------------------------------------------------
    async def handle_error_source(self, dev: PciDevice, info: AerErrInfo) -> None:
        """A correctable error is cleared and the driver told; an uncorrectable one is recovered."""
        if info.severity is not AerSeverity.CORRECTABLE:
            state = PciChannelState.FROZEN if info.severity is AerSeverity.FATAL else PciChannelState.NORMAL
            await self.pcie_do_recovery(dev, state, info)
            return
        pos = await aer_cap(dev)
        if pos is None:  # gone meanwhile
            return
        await dev.config_write_dword(pos + pci.PCI_ERR_COR_STATUS, info.status)
        if info.status & pci.PCI_ERR_COR_ADV_NFAT:
            # the uncorrectable errors the function signalled as Advisory Non-Fatal (Linux's
            # anfe_get_uncor_status): unmasked, non-fatal, of the ANF kinds
            uncor = await dev.config_read_dword(pos + pci.PCI_ERR_UNCOR_STATUS)
            mask = await dev.config_read_dword(pos + pci.PCI_ERR_UNCOR_MASK)
            sever = await dev.config_read_dword(pos + pci.PCI_ERR_UNCOR_SEVER)
            anfe = uncor & ~mask & ~sever & pci.AER_ANFE_UNC_MASK
            if anfe:
                await dev.config_write_dword(pos + pci.PCI_ERR_UNCOR_STATUS, anfe)
        await pcie_clear_device_status(dev)
        handlers = pci_err_handlers(dev)
        if handlers is not None:
            await handlers.cor_error_detected()

    # -- pcie_do_recovery -------------------------------------------------------------------------
    async def pcie_do_recovery(self, dev: PciDevice, state: PciChannelState, info: AerErrInfo) -> PciErsResult:
        """error_detected -> (FROZEN: reset) -> mmio_enabled if all can recover -> reset and
        slot_reset if one needs it -> resume; on the reporting function only (see above)."""
        rec = AerRecovery(int(dev.pcie_id), state)
        self.recoveries.append(rec)
        handlers = pci_err_handlers(dev)
        if handlers is None:
            rec.steps.append("error_detected:no_aer_driver")
            return self._failed(dev, rec, PciErsResult.NO_AER_DRIVER)
        vote = await handlers.error_detected(state)
        rec.steps.append(f"error_detected:{vote.value}")
        status = merge_result(PciErsResult.CAN_RECOVER, vote)
        if status in (PciErsResult.NO_AER_DRIVER, PciErsResult.DISCONNECT):
            return self._failed(dev, rec, status)
        if state is PciChannelState.FROZEN and not await self._reset(dev, rec):
            return self._failed(dev, rec, PciErsResult.DISCONNECT)
        if pci_err_handlers(dev) is not handlers:  # unbound meanwhile (Linux: under the device lock)
            return self._failed(dev, rec, PciErsResult.DISCONNECT)
        if status is PciErsResult.CAN_RECOVER:
            vote = await handlers.mmio_enabled()
            rec.steps.append(f"mmio_enabled:{vote.value}")
            status = merge_result(PciErsResult.RECOVERED, vote)
        if status is PciErsResult.NEED_RESET:
            if state is PciChannelState.NORMAL and not await self._reset(dev, rec):
                return self._failed(dev, rec, PciErsResult.DISCONNECT)
            if pci_err_handlers(dev) is not handlers:
                return self._failed(dev, rec, PciErsResult.DISCONNECT)
            vote = await handlers.slot_reset()
            rec.steps.append(f"slot_reset:{vote.value}")
            status = merge_result(PciErsResult.RECOVERED, vote)
        if status is not PciErsResult.RECOVERED or pci_err_handlers(dev) is not handlers:
            return self._failed(dev, rec, status)
        await handlers.resume()
        rec.steps.append("resume")
        await pcie_clear_device_status(dev)
        pos = await aer_cap(dev)
        if pos is not None:
            await dev.config_write_dword(pos + pci.PCI_ERR_UNCOR_STATUS, info.status)
        rec.result = PciErsResult.RECOVERED
        log.info("%s: AER: device recovery successful (%s)", pci.rid_str(rec.source_id), ", ".join(rec.steps))
        return rec.result

    def _failed(self, dev: PciDevice, rec: AerRecovery, status: PciErsResult) -> PciErsResult:
        rec.result = status
        log.error("%s: AER: device recovery failed (%s)", pci.rid_str(rec.source_id), ", ".join(rec.steps))
        return status

    async def _reset(self, dev: PciDevice, rec: AerRecovery) -> bool:
        """Reset a reporting VF alone: an FLR with its configuration saved and restored (its
        vectors are freed: the driver allocates them again in slot_reset). Any other function
        is left to its driver's slot_reset."""
        if not getattr(dev, "is_virtfn", False):
            rec.steps.append("reset:by_driver")
            return True
        await pci_reset_function(dev)
        rec.steps.append("reset:flr")
        return True

    # -- per-function rate limit -------------------------------------------------------------------
    async def _ratelimit(self, dev: PciDevice, info: AerErrInfo) -> None:
        """More than AER_RATELIMIT_BURST errors of a kind within the interval: mask what the
        function keeps reporting, in that function only."""
        rid = info.source_id
        kind = AerSeverity.CORRECTABLE if info.severity is AerSeverity.CORRECTABLE else AerSeverity.NONFATAL
        recent = self._recent.setdefault((rid, kind), collections.deque())
        recent.append(info.time_ns)
        while recent and info.time_ns - recent[0] > AER_RATELIMIT_INTERVAL_NS:
            recent.popleft()
        if len(recent) <= AER_RATELIMIT_BURST:
            return
        pos = await aer_cap(dev)
        if pos is None:
            return
        correctable = kind is AerSeverity.CORRECTABLE
        reg = pos + self._registers(correctable)[1]
        await dev.config_write_dword(reg, await dev.config_read_dword(reg) | info.status)
        uncor, cor = self.masked.get(rid, (0, 0))
        self.masked[rid] = (uncor, cor | info.status) if correctable else (uncor | info.status, cor)
        recent.clear()
        log.error(
            "%s: AER: more than %d %s errors in %d us: %s masked in this function",
            pci.rid_str(rid),
            AER_RATELIMIT_BURST,
            kind.value,
            AER_RATELIMIT_INTERVAL_NS // 1000,
            ", ".join(info.names),
        )

    async def unmask(self, dev: PciDevice) -> None:
        """Lift the masks the rate limit set in ``dev`` (the function goes to a new owner)."""
        uncor, cor = self.masked.pop(int(dev.pcie_id), (0, 0))
        pos = await aer_cap(dev)
        for reg, bits in ((pci.PCI_ERR_UNCOR_MASK, uncor), (pci.PCI_ERR_COR_MASK, cor)):
            if bits and pos is not None:
                await dev.config_write_dword(pos + reg, await dev.config_read_dword(pos + reg) & ~bits)
        for kind in AerSeverity:
            self._recent.pop((int(dev.pcie_id), kind), None)

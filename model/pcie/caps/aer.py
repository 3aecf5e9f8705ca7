"""Advanced Error Reporting of one function (PCIe Base 6.0 §6.2, §7.8.4).

The registers are cocotbext-pcie's :class:`AerExtendedCapability`; this adds what a function
does when it detects an error (§6.2.5, the error-logging flowchart): set the status bit, and
unless the error is masked, log the TLP header and the First Error Pointer if no earlier
error holds them, then say which Message the error calls for by its severity. Errors of the
Advisory Non-Fatal cases (§6.2.3.2.4) with a non-fatal severity are signalled as
correctable. Whether the Message is sent depends on Device Control and Command, which the
function (:meth:`model.pcie.function.NicFunction.signal_error`) applies.

Every register here is sticky (RW1CS, RWS, ROS): an FLR leaves it alone (§6.6.2).
"""

from __future__ import annotations

from dataclasses import dataclass

from cocotbext.pcie.core.caps.aer import AerExtendedCapability

from datasheet import pci

#: status bit -> the stem of the library's ``<stem>_status`` / ``_mask`` / ``_severity`` attributes
UNCORRECTABLE = {
    pci.PCI_ERR_UNC_DLP: "data_link_protocol_error",
    pci.PCI_ERR_UNC_SURPDN: "surprise_down_error",
    pci.PCI_ERR_UNC_POISON_TLP: "poisoned_tlp_received",
    pci.PCI_ERR_UNC_FCP: "flow_control_protocol_error",
    pci.PCI_ERR_UNC_COMP_TIME: "completion_timeout",
    pci.PCI_ERR_UNC_COMP_ABORT: "completer_abort",
    pci.PCI_ERR_UNC_UNX_COMP: "unexpected_completion",
    pci.PCI_ERR_UNC_RX_OVER: "receiver_overflow",
    pci.PCI_ERR_UNC_MALF_TLP: "malformed_tlp",
    pci.PCI_ERR_UNC_ECRC: "ecrc_error",
    pci.PCI_ERR_UNC_UNSUP: "unsupported_request_error",
    pci.PCI_ERR_UNC_ACSV: "acs_violation",
    pci.PCI_ERR_UNC_INTN: "uncorrectable_internal_error",
}
CORRECTABLE = {
    pci.PCI_ERR_COR_RCVR: "receiver_error",
    pci.PCI_ERR_COR_BAD_TLP: "bad_tlp",
    pci.PCI_ERR_COR_BAD_DLLP: "bad_dllp",
    pci.PCI_ERR_COR_REP_ROLL: "replay_num_rollover",
    pci.PCI_ERR_COR_REP_TIMER: "replay_timer_timeout",
    pci.PCI_ERR_COR_ADV_NFAT: "advisory_nonfatal_error",
    pci.PCI_ERR_COR_INTERNAL: "corrected_internal_error",
    pci.PCI_ERR_COR_LOG_OVER: "header_log_overflow",
}

CORRECTABLE_SEVERITY = "correctable"
ADVISORY = "advisory"  # an uncorrectable error signalled as correctable (§6.2.3.2.4)
NONFATAL = "nonfatal"
FATAL = "fatal"


def error_name(error: int, correctable: bool = False) -> str:
    """Linux's name of an AER status bit (``UnsupReq``, ``CmpltTO``...)."""
    bit = error.bit_length() - 1
    names = pci.AER_COR_NAMES if correctable else pci.AER_UNCOR_NAMES
    return names.get(bit, f"bit{bit}")


@dataclass(frozen=True)
class Verdict:
    """What one detected error calls for: ``message`` (a ``PCI_MSG_ERR_*`` code) unless the masks
    keep it quiet (``message`` None, ``why`` says which mask); ``logged``: it took the Header Log."""

    error: int
    severity: str
    message: int | None
    why: str = ""
    logged: bool = False


class NicAerCapability(AerExtendedCapability):
    """A function's AER capability: no ECRC, one Header Log, Completion Timeout headers logged."""

    #: every register survives an FLR (RW1CS / RWS / ROS, PCIe Base 6.0 §7.8.4)
    sticky = True

    def __init__(self):
        super().__init__()
        self.completion_timeout_prefix_header_log_capable = True

    # -- register views as integers -----------------------------------------------------------
    def _flags(self, table: dict[int, str], kind: str) -> int:
        return sum(bit for bit, stem in table.items() if getattr(self, f"{stem}_{kind}"))

    @property
    def uncor_status(self) -> int:
        return self._flags(UNCORRECTABLE, "status")

    @property
    def uncor_mask(self) -> int:
        return self._flags(UNCORRECTABLE, "mask")

    @property
    def uncor_severity(self) -> int:
        return self._flags(UNCORRECTABLE, "severity")

    @property
    def cor_status(self) -> int:
        return self._flags(CORRECTABLE, "status")

    @property
    def cor_mask(self) -> int:
        return self._flags(CORRECTABLE, "mask")

    def _first_error_pending(self) -> bool:
        """The First Error Pointer names a status bit still set: the Header Log is taken (§7.8.4.7)."""
        return bool(self.uncor_status >> self.first_error_pointer & 1)

    # -- what a detected error does --------------------------------------------------------------
    def record(
        self, error: int, header: bytes | None = None, advisory: bool = False, correctable: bool = False
    ) -> Verdict:
        """Log ``error``, a ``PCI_ERR_UNC_*`` bit (``PCI_ERR_COR_*`` with ``correctable``: the two
        registers share bit positions) detected in the TLP whose header is ``header`` (§6.2.5).
        ``advisory``: one of the Advisory Non-Fatal cases of §6.2.3.2.4 (a UR or CA completion
        sent, an Unexpected Completion received)."""
        if correctable:
            stem = CORRECTABLE[error]
            setattr(self, f"{stem}_status", True)
            if getattr(self, f"{stem}_mask"):
                return Verdict(error, CORRECTABLE_SEVERITY, None, "masked")
            return Verdict(error, CORRECTABLE_SEVERITY, pci.PCI_MSG_ERR_COR)
        stem = UNCORRECTABLE[error]
        logged = not self._first_error_pending()
        setattr(self, f"{stem}_status", True)
        fatal = getattr(self, f"{stem}_severity")
        severity = FATAL if fatal else ADVISORY if advisory else NONFATAL
        if getattr(self, f"{stem}_mask"):  # not logged, not reported
            return Verdict(error, severity, None, "masked")
        if logged:
            self.first_error_pointer = error.bit_length() - 1
            raw = (header or b"").ljust(16, b"\0")[:16]
            self.header_log = [int.from_bytes(raw[i : i + 4], "big") for i in range(0, 16, 4)]
        if severity == ADVISORY:
            self.advisory_nonfatal_error_status = True
            if self.advisory_nonfatal_error_mask:
                return Verdict(error, severity, None, "Advisory Non-Fatal masked", logged)
            return Verdict(error, severity, pci.PCI_MSG_ERR_COR, logged=logged)
        return Verdict(error, severity, pci.PCI_MSG_ERR_FATAL if fatal else pci.PCI_MSG_ERR_NONFATAL, logged=logged)

    async def _read_register(self, reg: int) -> int:
        value = await super()._read_register(reg)
        if reg == pci.PCI_ERR_CAP // 4:
            # the First Error Pointer is 5 bits (cocotbext-pcie 0.2.16 reads only 4 of them)
            value = value & ~pci.PCI_ERR_CAP_FEP_MASK | self.first_error_pointer & pci.PCI_ERR_CAP_FEP_MASK
        return value

    async def _write_register(self, reg: int, data: int, mask: int) -> None:
        if reg == pci.PCI_ERR_CAP // 4:
            return  # ECRC and multiple header recording are not capable: their enables are RO 0
        await super()._write_register(reg, data, mask)

"""PCIe function shells of the NIC: config space, BAR decode and the transaction layer's checks.

:class:`NicFunction` holds what PF and VF share: the Type 0 header, PM, the PCIe
capability with FLR, the MSI-X capability, AER, and the rule for unimplemented config
registers (read 0, write ignored, logged and counted in ``config_unimplemented``). Its
BAR0 and MSI-X BAR decode onto its slice of the device core
(:class:`~model.core.slice.FunctionSlice`), mapped once by :meth:`map_slice`; the shell
is also the slice's bus-master interface (DMA, MSI-X messages, Bus Master Enable).

Errors the function detects as a completer or requester (PCIe Base 6.0 §6.2.3.2, Table 6-5)
are logged in its AER capability and signalled with an error Message from one place,
:meth:`NicFunction.send_error_message`:

* Malformed TLP: a memory write whose payload exceeds Max_Payload_Size (dropped);
* Poisoned TLP Received: a poisoned memory write (dropped), poisoned data for its own read;
* Unsupported Request: a memory request while the function is not in D0 (PCI PM: D1-D3hot
  accept configuration requests only), completed with UR when non-posted;
* Completer Abort: an MSI-X Table or PBA access that is not an aligned DWORD or QWORD
  (§7.7.2), completed with CA when non-posted;
* Unexpected Completion: a completion whose tag has no request outstanding (e.g. one
  arriving after its request timed out);
* Completion Timeout: a read of its own DMA not completed within the Device Control 2
  Completion Timeout.

A UR or CA completion to one of its own reads is the completer's error to report: the
function sets Received Master / Target Abort and the read fails (the queue's DMA_FAULT).
"""

from __future__ import annotations

import copy
import struct
from typing import TYPE_CHECKING, Protocol

import cocotb
from cocotb.queue import Queue
from cocotb.triggers import Event, Timer
from cocotbext.pcie.core.endpoint import MemoryEndpoint
from cocotbext.pcie.core.tlp import CplStatus, Tlp, TlpType
from cocotbext.pcie.core.utils import PcieId

from datasheet import device, pci
from model import events as ev
from model.pcie.caps import NicAerCapability, NicMsixCapability, NicPcieCapability
from model.pcie.caps.aer import ADVISORY, CORRECTABLE_SEVERITY, FATAL, error_name

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from model.core.slice import FunctionSlice

#: Type 0 header state an FLR returns to its reset value (PCIe Base 6.0 §6.6.2): the whole
#: Command register, Status error bits, Cache Line Size, Interrupt Line, the BARs
HEADER_RESET = (
    "io_space_enable",
    "memory_space_enable",
    "bus_master_enable",
    "parity_error_response_enable",
    "serr_enable",
    "interrupt_disable",
    "interrupt_status",
    "master_data_parity_error",
    "signaled_target_abort",
    "received_target_abort",
    "received_master_abort",
    "signaled_system_error",
    "detected_parity_error",
    "cache_line_size",
    "latency_timer",
    "start_bist",
    "interrupt_line",
    "expansion_rom_addr",
    "expansion_rom_enable",
    "bar",
)
#: PCIe capability fields an FLR leaves alone (§6.6.2: link-wide settings the hierarchy owns)
PCIE_CAP_PRESERVED = frozenset(
    {
        "max_payload_size",
        "aspm_control",
        "read_completion_boundary",
        "common_clock_configuration",
        "extended_synch",
        "enable_clock_power_management",
        "hardware_autonomous_width_disable",
        "captured_slot_power_limit_value",
        "captured_slot_power_limit_scale",
    }
)


#: TLP kinds by their (fmt, type) value: a look-up without building and hashing ``TlpType`` members
MEM_READS = frozenset(t.value for t in (TlpType.MEM_READ, TlpType.MEM_READ_64))
MEM_WRITES = frozenset(t.value for t in (TlpType.MEM_WRITE, TlpType.MEM_WRITE_64))
MEM = MEM_READS | MEM_WRITES
CPL = frozenset(t.value for t in (TlpType.CPL, TlpType.CPL_DATA, TlpType.CPL_LOCKED, TlpType.CPL_LOCKED_DATA))
COMPLETER_STATUS = {pci.PCI_ERR_UNC_UNSUP: CplStatus.UR, pci.PCI_ERR_UNC_COMP_ABORT: CplStatus.CA}
#: the Completer ID of the root complex's completions (cocotbext-pcie's RootComplex)
ROOT_COMPLEX = PcieId(0, 0, 0)
#: the Tag values a requester may use: 8 bits with Extended Tag (PCIe Base 6.0 §2.2.6.2), the
#: range of cocotbext-pcie's per-tag completion lists
TAGS = 256


class PerTag(dict):
    """``Function.rx_cpl_queues`` / ``rx_cpl_sync`` (a ``Queue`` or ``Event`` per Tag, indexed by
    Tag), each built when its Tag is first used: a function uses the few Tags its outstanding
    reads need (32 without Extended Tag), and the library's lists, 512 objects per function, made
    256 VF shells some 400 000 long-lived objects for the garbage collector to walk. Indexed as
    the lists are: a Tag outside 0..255 raises IndexError."""

    def __init__(self, make: Callable[[], object]):
        super().__init__()
        self._make = make

    def __missing__(self, tag: int) -> object:
        if not 0 <= tag < TAGS:
            raise IndexError(f"tag {tag} out of range")
        made = self[tag] = self._make()
        return made


class RequestFailed(Exception):
    """A memory read of the function failed: UR / CA completion, Completion Timeout, poisoned data."""


class MemoryRequest(Protocol):
    """A memory request as the transaction-level fabric hands it over: the fields of the
    TLP header it stands for; for a read, what its completion does besides its status
    (``poisoned`` data; ``delay_ns`` late, None if never sent)."""

    requester: int
    address: int  # DWORD-aligned
    dwords: int
    nbytes: int
    first_pad: int
    first_be: int
    last_be: int
    write: bool
    poisoned: bool
    delay_ns: int | None


class RequestSpace(Protocol):
    """A memory space that carries a function's reads one request at a time and hands back
    each completion for the function to check (the transaction-level fabric's bus-master
    space): the status, the bytes read (empty unless Successful) and the annotated request."""

    async def read_request(self, address: int, nbytes: int) -> tuple[CplStatus, bytes, MemoryRequest]: ...


def joined(results: list[tuple[bytes, str | None]]) -> bytes:
    """The data of a read from its requests' (data, failure) in order; :class:`RequestFailed`
    naming every failure if any request failed."""
    failures = [failure for _, failure in results if failure]
    if failures:
        raise RequestFailed("; ".join(failures))
    return b"".join(chunk for chunk, _ in results)


def tlp_header(tlp: Tlp) -> bytes:
    """The header of ``tlp`` as it crossed the link, for the Header Log."""
    return bytes(tlp.pack_header())


def request_tlp(req: MemoryRequest) -> Tlp:
    """The TLP ``req`` stands for (its header fields; no tag: the fast fabric has none)."""
    tlp = Tlp()
    if req.write:
        tlp.fmt_type = TlpType.MEM_WRITE_64 if req.address > 0xFFFFFFFF else TlpType.MEM_WRITE
    else:
        tlp.fmt_type = TlpType.MEM_READ_64 if req.address > 0xFFFFFFFF else TlpType.MEM_READ
    tlp.requester_id = PcieId.from_int(req.requester)
    tlp.address, tlp.length, tlp.first_be, tlp.last_be = req.address, req.dwords, req.first_be, req.last_be
    return tlp


def request_header(req: MemoryRequest) -> bytes:
    """The header the TLP ``req`` stands for would carry, for the Header Log."""
    return tlp_header(request_tlp(req))


def completion_header(req: MemoryRequest, completer: PcieId, poisoned: bool = False) -> bytes:
    """The header of the (first) completion with data of read ``req``, as the root complex
    builds it (``RootComplex.handle_mem_read_tlp``), for the Header Log."""
    cpl = Tlp.create_completion_data_for_tlp(request_tlp(req), completer)
    cpl.length, cpl.byte_count = req.dwords, req.nbytes
    cpl.lower_address = (req.address + req.first_pad) & 0x7F
    cpl.ep = poisoned
    return tlp_header(cpl)


class NicFunction(MemoryEndpoint):
    """Common part of the PF and VF shells; ``fn`` is the function index (0 = PF, 1 + i = VF i)."""

    is_vf = False

    def __init__(self, fn: int, msix_vectors: int, events: ev.EventBus):
        super().__init__()
        self.rx_cpl_queues = PerTag(Queue)  # the library's lists go with their last reference
        self.rx_cpl_sync = PerTag(Event)
        self.fn = fn
        self.slice: FunctionSlice | None = None
        self.vendor_id = device.VENDOR_ID
        self.revision_id = device.REVISION_ID
        self.class_code = device.CLASS_CODE
        self.subsystem_vendor_id = device.SUBSYSTEM_VENDOR_ID
        self.config_unimplemented = 0
        self._config_write = events.topic(ev.ConfigWrite)
        self.tlp_class: type[Tlp] = Tlp  # the class of the TLPs its link delivers (handle_tlp)

        # replace the library's PCIe capability with the FLR-capable one, same slot
        self.deregister_capability(self.pcie_cap)
        self.pcie_cap = NicPcieCapability(self.flr)
        self.register_capability(self.pcie_cap)
        self.mem_region.cfg = self.pcie_cap

        self.pcie_cap.completion_timeout_ranges_supported = device.COMPLETION_TIMEOUT_RANGES
        self.pcie_cap.completion_timeout_disable_supported = True
        self.msix_cap = NicMsixCapability(msix_vectors, on_control_change=self._msix_control_changed)
        self.register_capability(self.msix_cap)
        self.aer_cap = NicAerCapability()
        self.register_extended_capability(self.aer_cap)
        self._aer_error = events.topic(ev.AerError)
        self.regions[device.REG_BAR] = (self._read_bar0, self._write_bar0)
        self.regions[device.MSIX_BAR] = (self._read_msix_bar, self._write_msix_bar)

    def map_slice(self, slice_: FunctionSlice) -> None:
        """Decode this function's BARs onto ``slice_`` of the device core (once, when built)."""
        self.slice = slice_

    def capture_reset_state(self) -> None:
        """Record the config state an FLR returns to; called once construction is complete."""
        self._header_reset = {name: copy.copy(getattr(self, name)) for name in HEADER_RESET}
        self._cap_reset = [
            (
                cap,
                {
                    k: copy.copy(v)
                    for k, v in vars(cap).items()
                    if not (cap is self.pcie_cap and k in PCIE_CAP_PRESERVED) and not callable(v)
                },
            )
            for cap in (*self.capabilities.list, *self.ext_capabilities.list)
            if not hasattr(cap, "reset") and not getattr(cap, "sticky", False)
        ]

    # -- bus-master interface (model.core.slice.FunctionPort) --------------------------------
    @property
    def rid(self) -> int:
        return int(self.pcie_id)

    async def dma_read(self, addr: int, length: int) -> bytes:
        """A memory read as this function (PCIe Base 6.0 §2.2.7, §2.3.2): split at
        Max_Read_Request_Size and 4 KiB, the requests in flight together, each under the
        function's Completion Timeout (§2.8). A failed request raises :class:`RequestFailed`
        once the requester logged what is its to log (a Completion Timeout, poisoned data)."""
        if not self.bus_master_enable:
            raise RequestFailed(f"read at {addr:#x}: bus mastering disabled")
        mrrs = 128 << self.pcie_cap.max_read_request_size
        one = pci.one_request(addr, length, mrrs)
        if one:
            cut = [(addr, length)]
        else:
            cut = list(pci.read_requests(addr, length, mrrs)) if length > 0 else []
        read_request = getattr(self.mem_address_space, "read_request", None)
        if read_request is not None:  # a RequestSpace (transaction level): no TLPs
            if not one and cut:
                data = self.mem_address_space.read_burst(cut)
                if data is not None:  # every request completed Successfully, nothing to note
                    return data
            return await self._read_transactions(read_request, cut)
        timeout = self.completion_timeout_ns() or 0
        requests = []
        for addr, size in cut:
            req = Tlp()
            req.fmt_type = TlpType.MEM_READ_64 if addr > 0xFFFFFFFF else TlpType.MEM_READ
            req.requester_id = self.pcie_id
            req.set_addr_be(addr, size)
            requests.append((req, size, cocotb.start_soon(self.perform_nonposted_operation(req, timeout, "ns"))))
        return joined([await self._completed(req, size, await task) for req, size, task in requests])

    async def _read_transactions(
        self, read_request: Callable[[int, int], Awaitable[tuple[CplStatus, bytes, MemoryRequest]]], cut: list
    ) -> bytes:
        """:meth:`dma_read` on the transaction-level fabric: each request's completion is
        handed back at once, checked as :meth:`_completed` checks the completion TLPs."""
        results = []
        for addr, size in cut:
            status, chunk, req = await read_request(addr, size)
            if req.poisoned or req.delay_ns != 0:
                results.append(await self._annotated(status, chunk, req))
            elif status != CplStatus.SC:
                results.append((b"", f"read at {req.address:#x}: {CplStatus(status).name} completion"))
            elif len(cut) == 1:
                return chunk
            else:
                results.append((chunk, None))
        return joined(results)

    async def _annotated(self, status: CplStatus, chunk: bytes, req: MemoryRequest) -> tuple[bytes, str | None]:
        """A read whose completion comes late, never, or with poisoned data (§2.8, §2.7.2.2):
        past the Completion Timeout the request fails with a Completion Timeout and a
        completion that comes later is Unexpected; poisoned data is Poisoned TLP Received.
        The timeout is the one programmed when the completion is due (§7.5.3.16 lets a
        function use the old or the new value for a request already pending)."""
        timeout = self.completion_timeout_ns() or 0
        late = req.delay_ns
        if late is None or (timeout and late > timeout):
            if not timeout:  # Completion Timeout disabled: the requester waits for ever
                await Event().wait()
            await Timer(timeout, "ns")
            if late is not None:
                cocotb.start_soon(self._unexpected_completion(req, late - timeout))
            await self.signal_error(pci.PCI_ERR_UNC_COMP_TIME, request_header(req))
            return b"", f"read at {req.address:#x}: completion timeout"
        if late:
            await Timer(late, "ns")
        if status != CplStatus.SC:
            return b"", f"read at {req.address:#x}: {CplStatus(status).name} completion"
        if req.poisoned:
            await self.signal_error(pci.PCI_ERR_UNC_POISON_TLP, completion_header(req, ROOT_COMPLEX, poisoned=True))
            return b"", f"read at {req.address:#x}: poisoned completion"
        return chunk, None

    async def _unexpected_completion(self, req: MemoryRequest, after_ns: int) -> None:
        """The completion of a request that timed out arrives ``after_ns`` later: its tag is
        no longer outstanding (Unexpected Completion, an Advisory Non-Fatal error, §6.2.3.2.4.1)."""
        await Timer(max(after_ns, 1), "ns")
        await self.signal_error(pci.PCI_ERR_UNC_UNX_COMP, completion_header(req, ROOT_COMPLEX), advisory=True)

    async def _completed(self, req: Tlp, size: int, cpls: list[Tlp]) -> tuple[bytes, str | None]:
        """The data of one read request from its completions, or why it failed."""
        data, received = bytearray(), 0
        for cpl in cpls:
            if cpl.status != CplStatus.SC:
                return b"", f"read at {req.address:#x}: {CplStatus(cpl.status).name} completion"
            if cpl.ep:
                await self.signal_error(pci.PCI_ERR_UNC_POISON_TLP, tlp_header(cpl))
                return b"", f"read at {req.address:#x}: poisoned completion"
            payload, offset = cpl.get_data(), cpl.lower_address & 3
            data += payload[offset : offset + cpl.byte_count]
            received += len(payload) - offset
        if received < size:
            await self.signal_error(pci.PCI_ERR_UNC_COMP_TIME, tlp_header(req))
            return b"", f"read at {req.address:#x}: completion timeout"
        return bytes(data[:size]), None

    async def dma_write(self, addr: int, data: bytes) -> None:
        await self.mem_write(addr, data)

    async def send_msi(self, addr: int, data: int) -> None:
        await self.mem_write(addr, struct.pack("<L", data))

    # -- error reporting (PCIe Base 6.0 §6.2) ----------------------------------------------------
    @property
    def controls(self) -> NicFunction:
        """The function whose Command, Device Control and Device Control 2 govern this one's
        error reporting, payload size and completion timeout (itself; the PF for a VF)."""
        return self

    def completion_timeout_ns(self) -> int | None:
        cap = self.controls.pcie_cap
        return device.completion_timeout_ns(cap.completion_timeout_value, cap.completion_timeout_disable)

    async def signal_error(
        self, error: int, header: bytes | None = None, *, advisory: bool = False, correctable: bool = False
    ) -> None:
        """Log and signal one error this function detected (§6.2.5): the AER capability logs it
        (``error`` a ``PCI_ERR_UNC_*`` bit, ``PCI_ERR_COR_*`` with ``correctable``) and says which
        Message it calls for; Device Status records it whatever the masks say; the Message goes
        out if Device Control (or SERR# Enable) allows it."""
        verdict = self.aer_cap.record(error, header, advisory, correctable)
        cap, ctl = self.pcie_cap, self.controls
        unsupported = error == pci.PCI_ERR_UNC_UNSUP and not correctable
        if unsupported:
            cap.unsupported_request_detected = True
        if verdict.severity in (CORRECTABLE_SEVERITY, ADVISORY):
            cap.correctable_error_detected = True
        elif verdict.severity == FATAL:
            cap.fatal_error_detected = True
        else:
            cap.nonfatal_error_detected = True
        message, why = verdict.message, verdict.why
        if message is not None and not self._reporting_enabled(message, unsupported):
            message, why = None, "reporting disabled"
        if message in (pci.PCI_MSG_ERR_NONFATAL, pci.PCI_MSG_ERR_FATAL) and ctl.serr_enable:
            self.signaled_system_error = True
        name = error_name(error, correctable)
        sent = pci.PCI_MSG_ERR_NAMES.get(message)
        if sent:
            self.log.warning("AER: %s (%s) %s", name, verdict.severity, sent)
        else:  # logged in the capability and published; enumeration probes make many of these
            self.log.info("AER: %s (%s) not signalled: %s", name, verdict.severity, why)
        if self._aer_error:
            self._aer_error.emit(ev.AerError(self.fn, self.rid, name, verdict.severity, sent, why, verdict.logged))
        if message is not None:
            await self.send_error_message(message)

    def _reporting_enabled(self, message: int, unsupported: bool) -> bool:
        ctl = self.controls
        cap = ctl.pcie_cap
        if unsupported and not cap.unsupported_request_reporting_enable:
            return False
        if message == pci.PCI_MSG_ERR_COR:
            return bool(cap.correctable_error_reporting_enable)
        if message == pci.PCI_MSG_ERR_FATAL:
            return bool(cap.fatal_error_reporting_enable or ctl.serr_enable)
        return bool(cap.non_fatal_error_reporting_enable or ctl.serr_enable)

    async def send_error_message(self, code: int) -> None:
        """The one place an error Message leaves the function (§2.2.8.3): a Message routed to
        the Root Complex, carrying the function's own Requester ID (each VF its own, §9.4.1)."""
        msg = Tlp()
        msg.fmt_type = TlpType.MSG_TO_RC
        msg.requester_id = self.pcie_id
        msg.first_be, msg.last_be = pci.msg_code_byte_enables(code)
        await self.upstream_send(msg)

    # -- transaction layer: what the function receives ---------------------------------------
    async def upstream_send(self, tlp: Tlp) -> None:
        """``Function.upstream_send``, each TLP the function originates as one of the class its
        link delivers (:attr:`tlp_class`): on the TLP fabric the fabric's TLPs, which answer the
        same type look-ups and checks from tables (the library's own build and hash ``TlpType``
        members on every check, twice per TLP on its way out)."""
        if type(tlp) is Tlp and self.tlp_class is not Tlp:
            tlp.__class__ = self.tlp_class
        await super().upstream_send(tlp)

    async def handle_tlp(self, tlp: Tlp) -> None:
        """Check each received TLP before the library acts on it (§2.3, §6.2.3.2), then act as
        ``Function.handle_tlp`` does, telling a completion by its ``(fmt, type)``: to its Tag's
        queue; a request to the handler of its type (the library tests the type against a set
        of ``TlpType`` members it builds and hashes on every call)."""
        self.tlp_class = type(tlp)
        if (tlp.fmt, tlp.type) in CPL:
            if not self.tag_active[tlp.tag]:
                tlp.release_fc()
                await self.signal_error(pci.PCI_ERR_UNC_UNX_COMP, tlp_header(tlp), advisory=True)
                return
            self.rx_cpl_queues[tlp.tag].put_nowait(tlp)
            self.rx_cpl_sync[tlp.tag].set()
            return
        error = self._request_error(tlp)
        if error is None:
            handler = self.rx_tlp_handler.get(tlp.fmt_type)
            if handler is None:  # the library's answer to a TLP no handler takes
                await super().handle_tlp(tlp)
                return
            tlp.release_fc()
            await handler(tlp)
            return
        tlp.release_fc()
        non_posted = (tlp.fmt, tlp.type) in MEM_READS
        status = COMPLETER_STATUS.get(error)
        if non_posted and status is not None:
            cpl = Tlp.create_completion_for_tlp(tlp, self.pcie_id, status=status)
            await self.send(cpl)
        await self.signal_error(error, tlp_header(tlp), advisory=non_posted and status is not None)

    def _request_error(self, tlp: Tlp) -> int | None:
        kind = (tlp.fmt, tlp.type)
        if kind not in MEM:
            return None
        write = kind in MEM_WRITES
        return self.request_error(write, self.match_bar(tlp.address), tlp.length, tlp.first_be, tlp.last_be, tlp.ep)

    def request_error(
        self, write: bool, bar: tuple[int, int] | None, dwords: int, first_be: int, last_be: int, poisoned: bool = False
    ) -> int | None:
        """The error a memory request to this function is (a ``PCI_ERR_UNC_*`` bit), None if
        it is served (§2.3.1); ``bar`` is the (BAR, offset) its address decodes to, the other
        arguments are the request's TLP header fields."""
        if write and dwords * 4 > 128 << self.controls.pcie_cap.max_payload_size:
            return pci.PCI_ERR_UNC_MALF_TLP
        if poisoned:
            return pci.PCI_ERR_UNC_POISON_TLP
        if self.pm_cap.power_state != pci.PCI_D0:
            return pci.PCI_ERR_UNC_UNSUP
        msix = bar is not None and bar[0] == device.MSIX_BAR
        if msix and not self._msix_access_ok(bar[1], dwords, first_be, last_be):
            return pci.PCI_ERR_UNC_COMP_ABORT
        return None

    async def refuse_request(self, req: MemoryRequest, bar: int, offset: int) -> CplStatus | None:
        """:meth:`handle_tlp`'s checks for a request the transaction-level fabric hands over
        without a TLP, decoded to ``offset`` in BAR ``bar``: None if it is served; else the error
        is logged and signalled as for a TLP, and the status is the refused read's completion
        (a refused write is dropped)."""
        error = self.request_error(req.write, (bar, offset), req.dwords, req.first_be, req.last_be)
        if error is None:
            return None
        status = COMPLETER_STATUS.get(error)
        completed = not req.write and status is not None
        if completed and status == CplStatus.CA:
            self.signaled_target_abort = True  # as Function.send does for a CA completion
        await self.signal_error(error, request_header(req), advisory=completed)
        return status if status is not None else CplStatus.UR

    def _msix_access_ok(self, offset: int, dwords: int, first_be: int, last_be: int) -> bool:
        """MSI-X Table and PBA fields take aligned DWORD or QWORD accesses only (§7.7.2)."""
        vectors = self.msix_cap.msix_table_size + 1
        spans = (
            (device.MSIX_TABLE_OFFSET, vectors * pci.PCI_MSIX_ENTRY_SIZE),
            (device.MSIX_PBA_OFFSET, (vectors + 63) // 64 * 8),
        )
        if not any(start < offset + dwords * 4 and offset < start + size for start, size in spans):
            return True  # outside both: the unimplemented-offset rule
        if dwords == 1:
            return first_be == 0xF
        return dwords == 2 and first_be == last_be == 0xF and offset % 8 == 0

    # -- BAR decode onto the slice ----------------------------------------------------------
    async def _read_bar0(self, addr: int, length: int) -> bytes:
        return self.slice.bar_read(device.REG_BAR, addr, length)

    async def _write_bar0(self, addr: int, data: bytes) -> None:
        self.slice.bar_write(device.REG_BAR, addr, bytes(data))

    async def _read_msix_bar(self, addr: int, length: int) -> bytes:
        return self.slice.bar_read(device.MSIX_BAR, addr, length)

    async def _write_msix_bar(self, addr: int, data: bytes) -> None:
        self.slice.bar_write(device.MSIX_BAR, addr, bytes(data))

    def _msix_control_changed(self) -> None:
        if self.slice is not None:
            self.slice.msix.deliver_pending()

    # -- resets -----------------------------------------------------------------------------
    async def flr(self) -> None:
        """Function Level Reset (PCIe Base 6.0 §6.6.2): every register of the function back to
        its reset value but the link-wide ones; then the device state of its slice."""
        self.log.info("Function Level Reset")
        for name, value in self._header_reset.items():
            setattr(self, name, copy.copy(value))
        for cap, state in self._cap_reset:
            for name, value in state.items():
                setattr(cap, name, copy.copy(value))
        self.slice.flr()

    # -- config space -------------------------------------------------------------------------
    def _implemented(self, reg: int) -> bool:
        if reg < 16:
            return True
        if reg < 64:
            return self.capabilities.find_by_reg(reg) is not None
        if reg < 1024:
            return self.ext_capabilities.find_by_reg(reg) is not None
        return False

    async def read_config_register(self, reg: int) -> int:
        if not self._implemented(reg):
            self.config_unimplemented += 1
            self.log.debug("config read of unimplemented register 0x%03x: reads 0", reg * 4)
            return 0
        return await super().read_config_register(reg)

    async def write_config_register(self, reg: int, data: int, mask: int) -> None:
        if self._config_write:
            self._config_write.emit(ev.ConfigWrite(self.fn, int(self.pcie_id), reg * 4, data, mask))
        if not self._implemented(reg):
            self.config_unimplemented += 1
            self.log.warning("config write to unimplemented register 0x%03x (data 0x%08x): ignored", reg * 4, data)
            return
        bme = self.bus_master_enable
        await super().write_config_register(reg, data, mask)
        if self.bus_master_enable and not bme and self.slice is not None:
            self.slice.msix.deliver_pending()  # messages held while bus mastering was off

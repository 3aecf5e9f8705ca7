"""Transaction-level requests: the memory and configuration requests of the fast fabric.

A memory read or write is cut into the same requests cocotbext-pcie's ``MemoryTlpRegion``
cuts it into as TLPs (Max_Read_Request_Size / Max_Payload_Size, 128-byte read completion
boundary, never across 4 KiB: PCIe 6.0 §2.2.7, §2.3.1.1), each a :class:`MemRequest` with
the fields a TLP header would carry (requester, DWORD address and length, byte enables).
A completer annotates a read request with what its completion does besides its status and
data (poisoned, late, never sent: the faults a test injects), as TLM-2.0's loosely timed
``b_transport`` annotates its transaction with a delay.
Every rule downstream (bridge windows, ACS, IOMMU translation, BAR decode, the root
complex's memory map) sees one request at a time, as it would see one TLP, so the IOMMU
translates and faults the same requests on both fabrics.  A write cut into several requests
travels as a :class:`WriteBurst`, which a completer may take a 4 KiB page at a time where
the outcome of each of its requests, counters included, is the same (TLM-2.0's burst
transaction); a read's requests may be served at once on the same terms
(:meth:`BusMasterRegion.read_burst`), else they go one by one.

Two regions plug the requests into cocotbext-pcie's address spaces:

* :class:`BusMasterRegion` is a function's view of memory (its ``mem_address_space``):
  DMA and MSI-X writes go to the root port above it (bus mastering checked, completions
  other than Successful raise, UR/CA noted in the function's Status register, as
  ``Function.upstream_recv`` does).  :meth:`BusMasterRegion.read_request` hands a
  requester that checks its own completions (Completion Timeout, poisoned data) one read
  request and its annotated completion.
* :class:`DownstreamRegion` is the root complex's view of the BAR space: host MMIO goes
  to the device through the bridges' windows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from cocotbext.axi import Region
from cocotbext.pcie.core.tlp import CplStatus

from datasheet import pci
from datasheet.pci import read_requests, request_dwords, write_requests

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from cocotbext.pcie.core.bridge import Bridge
    from cocotbext.pcie.core.device import Device
    from cocotbext.pcie.core.function import Function

#: completion status and the data of a read request's DWORDs (empty unless Successful)
Completion = tuple[CplStatus, bytes]
UR = (CplStatus.UR, b"")
CA = (CplStatus.CA, b"")
#: what a completer returns for a read it never completes (its request's ``delay_ns`` is None):
#: the read fails, as with a completion timeout, but no completion status is noted
WITHHELD = (CplStatus.UR, b"")
PAGE = pci.PCI_REQUEST_PAGE


class MemRequest:
    """One memory request as a TLP would carry it: DWORD-aligned ``address``, ``dwords``,
    ``first_pad`` bytes before the first enabled byte, ``nbytes`` enabled bytes (0: a
    zero-length request, byte enables off), the requester's Routing ID and, for a write,
    the ``payload`` bytes.  A completer's annotations of a read: ``poisoned`` (its completion
    carries poisoned data, EP set), ``delay_ns`` (its completion leaves that late; None: it is
    never sent)."""

    __slots__ = ("requester", "address", "dwords", "length", "first_pad", "nbytes", "payload", "poisoned", "delay_ns")

    def __init__(self, requester: int, addr: int, nbytes: int, payload: bytes | None = None):
        self.requester = requester
        self.address = addr & ~3
        self.first_pad = addr & 3
        self.nbytes = nbytes
        self.dwords = dwords = request_dwords(addr, nbytes)
        self.length = dwords << 2  # bytes the DWORDs cover (a TLP's Length field x 4)
        self.payload = payload
        self.poisoned = False
        self.delay_ns: int | None = 0

    @property
    def first_be(self) -> int:
        if not self.nbytes:
            return 0
        if self.dwords == 1:
            return ((1 << self.nbytes) - 1) << self.first_pad
        return 0xF << self.first_pad & 0xF

    @property
    def last_be(self) -> int:
        if not self.nbytes or self.dwords == 1:
            return 0
        return 0xF >> (-(self.first_pad + self.nbytes) & 3)

    @property
    def annotated(self) -> bool:
        """Whether a completer annotated this read (poisoned, late or withheld completion)."""
        return self.poisoned or self.delay_ns != 0

    @property
    def write(self) -> bool:
        return self.payload is not None

    def padded(self) -> bytes:
        """The write's DWORD-aligned data, as a TLP carries it (disabled lanes zero)."""
        data = bytes(self.first_pad) + bytes(self.payload or b"")
        return data + bytes(self.length - len(data))

    def at(self, address: int) -> MemRequest:
        """The same request retargeted to DWORD ``address`` (after translation)."""
        req = MemRequest.__new__(MemRequest)
        req.requester, req.dwords, req.length, req.first_pad = self.requester, self.dwords, self.length, self.first_pad
        req.nbytes, req.payload = self.nbytes, self.payload
        req.poisoned, req.delay_ns = self.poisoned, self.delay_ns
        req.address = address
        return req

    def __repr__(self) -> str:
        kind = "write" if self.payload is not None else "read"
        return f"MemRequest({kind} {self.address:#x}+{self.length} from {self.requester:04x})"


class WriteBurst:
    """The posted writes one memory write of ``data`` at ``address`` by ``requester`` becomes
    at Max_Payload_Size ``mps`` (:func:`~datasheet.pci.write_requests`): a sequence of
    :class:`MemRequest`, cut when first looked at.  A completer that can take the requests
    of a 4 KiB page at once, with the outcome each would have had, reads the burst by
    :meth:`pages` instead, and cuts (:meth:`cut`) only the pages it cannot.  (A sequence, not a
    ``collections.abc.Sequence``: a completer tells it from a list by its type, which an ABC
    would make a call of its own per request.)"""

    __slots__ = ("requester", "address", "data", "mps", "_requests")

    def __init__(self, requester: int, address: int, data: bytes, mps: int):
        self.requester = requester
        self.address = address
        self.data = data
        self.mps = mps
        self._requests: list[MemRequest] | None = None

    def cut(self, address: int, length: int) -> list[MemRequest]:
        """The requests of the ``length`` bytes at ``address``: all of the burst, or a page of it."""
        base, data, rid = self.address, self.data, self.requester
        cut = write_requests(address, length, self.mps)
        return [MemRequest(rid, a, k, data[a - base : a - base + k]) for a, k in cut]

    @property
    def requests(self) -> list[MemRequest]:
        if self._requests is None:
            self._requests = self.cut(self.address, len(self.data))
        return self._requests

    def __len__(self) -> int:
        return len(self.requests)

    def __getitem__(self, index: Any) -> Any:
        if index == 0 and self._requests is None:  # the first request (ACS's verdict) cuts nothing else
            address, nbytes = next(write_requests(self.address, len(self.data), self.mps))
            return MemRequest(self.requester, address, nbytes, self.data[:nbytes])
        return self.requests[index]

    def __iter__(self) -> Iterator[MemRequest]:
        return iter(self.requests)

    def pages(self) -> Iterator[tuple[int, int, int]]:
        """(address, bytes, requests) of each 4 KiB page the burst writes, in order: the
        requests of a page are those :meth:`cut` gives for it (a request never crosses 4 KiB,
        so the full cut restarts at every page)."""
        addr, end, mps = self.address, self.address + len(self.data), self.mps
        if addr == end:
            yield addr, 0, 1
        while addr < end:
            n = min(end - addr, PAGE - (addr & (PAGE - 1)))
            rest = n - (mps - (addr & 3))
            yield addr, n, 1 + (-(-rest // mps) if rest > 0 else 0)
            addr += n


def in_window(bridge: Bridge, address: int) -> bool:
    """Whether ``address`` falls in ``bridge``'s memory or prefetchable window (it routes the
    request to its secondary side)."""
    return (
        bridge.mem_base <= address <= bridge.mem_limit
        or bridge.prefetchable_mem_base <= address <= bridge.prefetchable_mem_limit
    )


@runtime_checkable
class Routable(Protocol):
    """A device that routes requests to its functions itself (one whose functions are not
    all in ``Device.functions``, such as an SR-IOV device's VFs): the function a
    configuration request reaches, and the function, BAR index and offset a memory
    address decodes to."""

    def route_config(self, rid: int, type0: bool) -> Function | None: ...

    def route_memory(self, address: int) -> tuple[Function, int, int] | None: ...


@runtime_checkable
class Completer(Protocol):
    """A device that checks each memory request as its TLP handler would before serving it
    (PCIe 6.0 §2.3.1: Unsupported Request, Completer Abort, Malformed TLP, each logged in the
    function's AER capability): None to serve ``req`` at ``hit`` (the function, BAR index and
    offset :meth:`Routable.route_memory` decoded; None: no BAR decodes it), else the status a
    refused read completes with (a refused write is dropped)."""

    async def check_memory_request(
        self, hit: tuple[Function, int, int] | None, req: MemRequest
    ) -> CplStatus | None: ...


class EndpointRoutes:
    """Routing for a plain cocotbext-pcie ``Device``, as its ``upstream_recv`` routes TLPs:
    a Type 0 configuration request gives it its bus number (PCIe 6.0 §2.2.6.2) and reaches
    the function with that device and function number; a memory request reaches the first
    function whose BAR decodes it; a Type 1 request reaches none."""

    def __init__(self, device: Device):
        self.device = device

    def route_config(self, rid: int, type0: bool) -> Function | None:
        if not type0:
            return None
        self.device.bus_num = rid >> 8
        dev, fn = rid >> 3 & 0x1F, rid & 7
        return next((f for f in self.device.functions if f.device_num == dev and f.function_num == fn), None)

    def route_memory(self, address: int) -> tuple[Function, int, int] | None:
        for function in self.device.functions:
            bar = function.match_bar(address)
            if bar:
                return function, bar[0], bar[1]
        return None


def routes_of(device: Device) -> Routable:
    """How requests reach ``device``'s functions: its own routing if it has one."""
    return device if isinstance(device, Routable) else EndpointRoutes(device)


async def config_access(function: Function, rid: int, reg: int, data: int | None = None, first_be: int = 0) -> int:
    """A Type 0 configuration read (``data`` None) or write of DWORD ``reg`` at ``function``,
    as its config TLP handler does it: the function captures its bus number first."""
    bus = rid >> 8
    if function.bus_num != bus:
        function.pcie_id = function.pcie_id._replace(bus=bus)
    if data is None:
        return await function.read_config_register(reg)
    await function.write_config_register(reg, data, first_be)
    return 0


async def function_read(function: Function, bar: int, offset: int, req: MemRequest) -> Completion:
    """A memory read request at ``offset`` in BAR ``bar`` of a function (what
    ``MemoryEndpoint.handle_mem_read_tlp`` does once the BAR matched): the DWORDs."""
    return CplStatus.SC, bytes(await function.read_region(bar, offset, req.length))


async def function_write(function: Function, bar: int, offset: int, req: MemRequest) -> None:
    """A posted memory write at ``offset`` in BAR ``bar`` (``handle_mem_write_tlp``): the
    enabled bytes."""
    if req.nbytes:
        await function.write_region(bar, offset + req.first_pad, req.payload)


class UpstreamPort(Protocol):
    """The root port a function's requests go up through (``FabricRootPort``)."""

    async def upstream_read(self, req: MemRequest) -> Completion: ...

    async def upstream_write(self, req: MemRequest) -> None: ...

    async def upstream_writes(self, reqs: list[MemRequest] | WriteBurst) -> None:
        """The posted writes one memory write was cut into, in order (each as
        :meth:`upstream_write` handles it): a list, or a :class:`WriteBurst`."""
        ...

    def upstream_read_burst(self, requester: int, cut: Sequence[tuple[int, int]]) -> bytes | None:
        """The data of the read requests ``cut`` (address, bytes) at once, when each would
        complete Successfully with nothing else to note; None, with nothing done, when they
        must go one by one (:meth:`upstream_read`)."""
        ...


class BusMasterRegion(Region):
    """A function's memory space on the fast fabric: its memory requests, cut as TLPs would
    be, handed to the root port above.  Same outcomes as cocotbext-pcie's ``MemoryTlpRegion``:
    no request while Bus Master Enable is clear, an exception for any read whose completion
    is not Successful (after every request of the read was issued), posted writes that
    nobody acknowledges."""

    def __init__(self, function: Function, port: UpstreamPort):
        super().__init__(2**64)
        self.function = function
        self.port = port

    async def read(self, address: int, length: int, **kwargs: Any) -> bytes:
        func = self.function
        if not func.bus_master_enable:
            raise Exception("Bus mastering not enabled")  # cocotbext-pcie's own exception
        rid = int(func.pcie_id)
        mrrs = 128 << func.pcie_cap.max_read_request_size
        if pci.one_request(address, length, mrrs):
            req = MemRequest(rid, address, length)
            status, payload = await self.port.upstream_read(req)
            if status == CplStatus.SC:
                return payload[address & 3 : (address & 3) + length]
            self._abort(status, req)
            raise Exception("Unsuccessful completion")
        data = bytearray()
        failed = False
        for addr, n in read_requests(address, length, mrrs):
            req = MemRequest(rid, addr, n)
            status, payload = await self.port.upstream_read(req)
            if status == CplStatus.SC:
                data += payload[addr & 3 : (addr & 3) + n]
                continue
            failed = True
            self._abort(status, req)
        if failed:
            raise Exception("Unsuccessful completion")
        return bytes(data)

    def read_burst(self, cut: Sequence[tuple[int, int]]) -> bytes | None:
        """The data of the read requests ``cut`` (address, bytes) of one read, at once, or None
        when they must go one by one (:meth:`UpstreamPort.upstream_read_burst`). Bus Master
        Enable is the caller's to check."""
        return self.port.upstream_read_burst(int(self.function.pcie_id), cut)

    async def read_request(self, address: int, nbytes: int) -> tuple[CplStatus, bytes, MemRequest]:
        """One read request of ``nbytes`` at ``address`` (the caller cut it: within
        Max_Read_Request_Size and 4 KiB) and its completion: the status, the ``nbytes`` read
        (empty unless Successful) and the request with the completer's annotations, for a
        requester that checks its completions itself (``NicFunction.dma_read``).  Bus Master
        Enable is the caller's to check; an unsuccessful status is noted as :meth:`read` does."""
        req = MemRequest(int(self.function.pcie_id), address, nbytes)
        status, payload = await self.port.upstream_read(req)
        if status == CplStatus.SC:
            pad = address & 3
            return status, payload[pad : pad + nbytes], req
        self._abort(status, req)
        return status, b"", req

    def _abort(self, status: CplStatus, req: MemRequest) -> None:
        """What ``Function.upstream_recv`` notes of an unsuccessful completion (Status register);
        nothing for a completion never sent (:data:`WITHHELD`)."""
        if req.delay_ns is None:
            return
        if status == CplStatus.UR:
            self.function.received_master_abort = True
        elif status == CplStatus.CA:
            self.function.received_target_abort = True

    async def write(self, address: int, data: bytes, **kwargs: Any) -> None:
        func = self.function
        if not func.bus_master_enable:
            raise Exception("Bus mastering not enabled")
        rid = int(func.pcie_id)
        mps = 128 << func.pcie_cap.max_payload_size
        data = bytes(data)
        n = len(data)
        if pci.one_request(address, n, mps):
            await self.port.upstream_write(MemRequest(rid, address, n, data))
            return
        await self.port.upstream_writes(WriteBurst(rid, address, data, mps))


class DownstreamPath(Protocol):
    """Where the root complex's requests to BAR space go (``FabricRootComplex``)."""

    max_read_request_size: int
    max_payload_size: int

    async def downstream_read(self, req: MemRequest) -> Completion: ...

    async def downstream_write(self, req: MemRequest) -> None: ...


class DownstreamRegion(Region):
    """The root complex's BAR space on the fast fabric (in place of its ``MemoryTlpRegion``):
    MMIO cut into requests as TLPs would be; a read that is not completed Successfully
    raises, a write nobody claims is dropped."""

    def __init__(self, rc: DownstreamPath):
        super().__init__(2**64)
        self.rc = rc

    async def read(self, address: int, length: int, **kwargs: Any) -> bytes:
        mrrs = 128 << self.rc.max_read_request_size
        data = bytearray()
        failed = False
        for addr, n in read_requests(address, length, mrrs):
            status, payload = await self.rc.downstream_read(MemRequest(0, addr, n))
            if status != CplStatus.SC:
                failed = True
            else:
                data += payload[addr & 3 : (addr & 3) + n]
        if failed:
            raise Exception("Unsuccessful completion")
        return bytes(data)

    async def write(self, address: int, data: bytes, **kwargs: Any) -> None:
        data = bytes(data)
        if 0 < len(data) <= 4 - (address & 3):  # one DWORD (a register write): one request
            await self.rc.downstream_write(MemRequest(0, address, len(data), data))
            return
        mps = 128 << self.rc.max_payload_size
        for addr, n in write_requests(address, len(data), mps):
            pos = addr - address
            await self.rc.downstream_write(MemRequest(0, addr, n, data[pos : pos + n]))

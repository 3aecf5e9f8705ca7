"""The root complex and its root ports, on either fabric.

:class:`FabricRootComplex` is cocotbext-pcie's ``RootComplex`` with the fabric chosen at
construction.  On ``tlp`` it is the stock one; its root ports link to their device through
:class:`~fabric.link.SleepingSimPort` pairs.  On ``fast``, configuration requests
(``config_read``/``config_write``, which enumeration, ``PciDevice`` and the host PCI core
use) and MMIO to BAR space (every ``bar_window``) are routed by the same rules the
bridges apply to TLPs (PCIe 6.0 §7.5.1.3: bus numbers, memory windows; Type 1 to Type 0
conversion on the secondary bus) and end in the function's own config and BAR handlers;
a device's memory requests come up through :meth:`FabricRootPort.upstream_read` /
:meth:`~FabricRootPort.upstream_write` and end in :meth:`FabricRootComplex.mem_read_request`
/ :meth:`~FabricRootComplex.mem_write_request`, the root complex's memory map (host RAM,
the MSI region) with the stock handlers' outcomes.  A root complex that remaps DMA
(:class:`iommu.IommuRootComplex`) overrides those two, root ports with ACS
(:class:`iommu.acs.AcsRootPort`) override the port's two.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from cocotbext.pcie.core import RootComplex
from cocotbext.pcie.core.bridge import Bridge, RootPort
from cocotbext.pcie.core.tlp import CplStatus
from cocotbext.pcie.core.utils import PcieId

from simtask import start_eagerly

from . import FAST, resolve
from .direct import DirectPort
from .link import SleepingSimPort, sleeping_twin, swap_port
from .memory import RcHostMemory
from .region import TlpMemoryRegion
from .routing import CPL, KIND, TableRouting, use_table_routing
from .space import BusMasterSpace, HostAddressSpace
from .tlp import CheckedTlp
from .transaction import (
    CA,
    UR,
    BusMasterRegion,
    Completer,
    Completion,
    DownstreamRegion,
    MemRequest,
    Routable,
    WriteBurst,
    config_access,
    function_read,
    function_write,
    in_window,
    routes_of,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from cocotbext.axi import AddressSpace, Region
    from cocotbext.pcie.core.device import Device
    from cocotbext.pcie.core.function import Function
    from cocotbext.pcie.core.switch import SwitchPort

UR_DWORD = b"\xff\xff\xff\xff"  # what a configuration read that completes with UR returns


def replace_region(space: AddressSpace, old: Region, new: Region) -> Region:
    """Register ``new`` in ``space`` wherever ``old`` was (same base, size and offset)."""
    entries = [entry for entry in space.regions if entry[3] is old]
    space.regions[:] = [entry for entry in space.regions if entry[3] is not old]
    for base, size, offset, _region in entries:
        space.register_region(new, base, size, offset=offset)
    return new


class FabricRootPort(TableRouting, RootPort):
    """A root port that links to its device over its root complex's fabric (and routes TLPs
    by :class:`~fabric.routing.TableRouting`)."""

    def __init__(self, rc: FabricRootComplex, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.rc = rc
        self.device: Device | None = None  # the device below (fast fabric)
        self.routes: Routable | None = None  # how requests reach its functions
        self.completer: Completer | None = None  # the device's own checks, if it has them

    def connect(self, device: Any) -> None:
        """Link ``device`` (a cocotbext-pcie ``Device``, or another port) below this port."""
        if self.rc.fabric != FAST:
            if hasattr(device, "set_port"):  # a device: both ends sleep while idle
                swap_port(device.upstream_port, sleeping_twin(device.upstream_port), device.set_port)
            swap_port(self.downstream_port, sleeping_twin(self.downstream_port), self.set_downstream_port)
            super().connect(device)
            return
        self.device = device
        self.routes = routes_of(device)
        self.completer = device if isinstance(device, Completer) else None
        swap_port(self.downstream_port, DirectPort(), self.set_downstream_port)
        swap_port(device.upstream_port, DirectPort(), device.set_port)
        self.downstream_port.connect(device.upstream_port)
        attach = getattr(device, "on_function", None)  # a device that adds functions later (VFs)
        functions = [] if attach else device.functions
        for function in functions:
            self.attach_function(function)
        if attach:
            attach(self.attach_function)

    def attach_function(self, function: Function) -> None:
        """Give ``function`` its bus-master path through this port (fast fabric): a memory
        space of the same bounds (an access past 2**64 fails as before) whose one region is a
        :class:`BusMasterRegion` instead of the TLP region."""
        function.mem_address_space = BusMasterSpace(BusMasterRegion(function, self))

    # -- configuration and memory requests from above (fast fabric) -------------------------
    def config_target(self, rid: int) -> Function | None:
        """The function below that a configuration request to ``rid`` reaches: Type 0 on the
        secondary bus, Type 1 beyond it (claimed only by a device with functions there)."""
        if self.routes is None:
            return None
        return self.routes.route_config(rid, (rid >> 8) == self.sec_bus_num)

    async def downstream_read(self, req: MemRequest) -> Completion:
        """A memory read this port routes to its secondary side."""
        hit = self.routes.route_memory(req.address) if self.routes is not None else None
        if self.completer is not None:
            status = await self.completer.check_memory_request(hit, req)
            if status is not None:
                return status, b""
        if hit is None:
            self.log.warning("No BAR match: memory read request did not match any BARs: %r", req)
            return UR
        return await function_read(*hit, req)

    async def downstream_write(self, req: MemRequest) -> None:
        hit = self.routes.route_memory(req.address) if self.routes is not None else None
        if self.completer is not None:
            if await self.completer.check_memory_request(hit, req) is not None:
                return
        if hit is None:
            self.log.warning("No BAR match: memory write request did not match any BARs: %r", req)
            return
        await function_write(*hit, req)

    # -- memory requests from below (fast fabric) ----------------------------------------------
    async def upstream_read(self, req: MemRequest) -> Completion:
        """A memory read from the device below (``Bridge.downstream_recv``): one that falls in
        this port's own window is not forwarded (UR); the rest go up."""
        if in_window(self, req.address):
            self.log.warning("No address match: memory read request did not match primary bus: %r", req)
            return UR
        return await self.rc.route_read(self, req)

    def upstream_read_burst(self, requester: int, cut: Sequence[tuple[int, int]]) -> bytes | None:
        """None: this port routes each read request by address (:meth:`upstream_read`)."""
        return None

    async def upstream_write(self, req: MemRequest) -> None:
        await self.upstream_writes([req])

    async def upstream_writes(self, reqs: list[MemRequest] | WriteBurst) -> None:
        for req in reqs:
            if in_window(self, req.address):
                self.log.warning("No address match: memory write request did not match primary bus: %r", req)
                continue
            await self.rc.route_write(self, req)


def link_full(port: SwitchPort) -> bool:
    """The link below switch port ``port`` (a root port's) cannot queue another TLP now."""
    link = None if port.upstream else getattr(port.bridge, "downstream_port", None)
    return isinstance(link, SleepingSimPort) and link.tx_queue.full()


class FabricRootComplex(RootComplex):
    """cocotbext-pcie's root complex on the fabric ``fabric`` (None: ``$FABRIC``, else tlp)."""

    def __init__(self, *args: Any, fabric: str | None = None, **kwargs: Any):
        kwargs.setdefault("mem_address_space", HostAddressSpace())
        self.fabric = resolve(fabric)  # before the switch adds its first port
        self.arbitrating: set[SwitchPort] = set()  # switch ports sending what they were handed
        self.handed_over: set[SwitchPort] = set()  # rounds left to the port's arbitration task
        super().__init__(*args, **kwargs)
        self.host_memory = RcHostMemory(self)  # RAM, synchronously
        use_table_routing(self.upstream_bridge)
        self.default_downstream_bridge = lambda: FabricRootPort(self)  # root ports made from now on
        if self.fabric == FAST:
            # the BAR space: MMIO becomes requests routed by the bridges' windows, not TLPs
            self.mem_region = replace_region(self.mem_address_space, self.mem_region, DownstreamRegion(self))
        else:  # MMIO as TLPs, a one-request read without a task of its own
            self.mem_region = replace_region(self.mem_address_space, self.mem_region, TlpMemoryRegion(self))

    def add_switch_port(self, port: SwitchPort) -> None:
        """``Switch.add_switch_port``; on the TLP fabric a TLP entering the switch is routed
        in its sender's turn (:meth:`route_tlp`) instead of through the port's ingress queue
        and routing task."""
        super().add_switch_port(port)
        if self.fabric == FAST:
            return
        route = partial(self.route_tlp, port)
        if port.upstream:
            port.bridge.downstream_tx_handler = route
        else:
            port.bridge.upstream_tx_handler = route

    async def route_tlp(self, port: SwitchPort, tlp: Any) -> None:
        """``Switch._run_routing`` for one TLP entering at ``port``: onto the queue of the first
        other port that claims it (its own function, or its secondary side; for the upstream
        port, whatever its secondary side does not hold), which sends it on (:meth:`arbitrate`),
        as the stock routing task does. A TLP no port claims goes to that task, which answers
        it as before (a warning, an Unsupported Request completion for a request)."""
        tlp.ingress_port = port.bridge
        for other, tx_queue in port.tx_queues:
            bridge = other.bridge
            if bridge.match_tlp(tlp) or bridge.match_tlp_secondary(tlp) != other.upstream:
                tx_queue.put_nowait(tlp)
                if other not in self.arbitrating:
                    self.arbitrating.add(other)
                    if link_full(other):  # the round would wait at once: the port's own task runs it
                        self.handed_over.add(other)
                        other.rx_event.set()
                    else:
                        start_eagerly(self.arbitrate(other))
                return
        await port.ingress_queue.put(tlp)

    async def arbitrate(self, port: SwitchPort) -> None:
        """``Switch._run_arbitration``'s round: send what the other ports queued for ``port``,
        one TLP from each queue in turn, until all are empty. :meth:`route_tlp` starts it
        eagerly, in the routing sender's turn, when ``port`` is not already sending (the stock
        arbitration task waits for ``rx_event`` and runs it a scheduler round later); a TLP
        queued meanwhile joins the round under way."""
        try:
            while True:
                sent = False
                for rx_queue in port.rx_queues:
                    if not rx_queue.empty():
                        await port.tx_handler(rx_queue.get_nowait())
                        sent = True
                if not sent:
                    return
        finally:
            self.arbitrating.discard(port)

    async def _run_arbitration(self, port: SwitchPort) -> None:
        """``Switch._run_arbitration``; on the TLP fabric it serves, with :meth:`arbitrate`, what
        the stock routing task queues (``rx_event``) and the rounds :meth:`route_tlp` hands over
        (:attr:`handed_over`: the port's link could not take a TLP at once, so an eager round
        would only have become a task of its own)."""
        if self.fabric == FAST:
            await super()._run_arbitration(port)
            return
        while True:
            await port.rx_event.wait()
            port.rx_event.clear()
            if port in self.handed_over:
                self.handed_over.discard(port)
                await self.arbitrate(port)
            elif port not in self.arbitrating:
                self.arbitrating.add(port)
                await self.arbitrate(port)

    async def handle_tlp(self, tlp: Any) -> None:
        """``RootComplex.handle_tlp``: a completion goes to its tag's queue, found by its
        ``(fmt, type)`` (the stock method builds and hashes ``TlpType`` members for it); any
        other TLP to the stock handlers."""
        if KIND.get((tlp.fmt, tlp.type)) == CPL:
            self.rx_cpl_queues[tlp.tag].put_nowait(tlp)
            self.rx_cpl_sync[tlp.tag].set()
            return
        await super().handle_tlp(tlp)

    async def send(self, tlp: Any) -> None:
        """Every TLP the root complex originates (requests, completions) goes down as a
        :class:`~fabric.tlp.CheckedTlp`: the bridges on its way check it by table look-ups."""
        tlp.__class__ = CheckedTlp
        await super().send(tlp)

    # -- configuration requests --------------------------------------------------------------------
    def config_target(self, dev: PcieId) -> Function | None:
        """The function a configuration request to ``dev`` reaches, routed as the host bridge
        and the root ports route it; None if none claims it (UR)."""
        rid = int(dev)
        bus = dev.bus
        bridge = self.upstream_bridge
        if bus == bridge.sec_bus_num:  # the root complex's own bus: Type 0 to its ports
            if rid == 0:
                return None
            return next(
                (ep for ep in self.endpoints if ep.device_num == dev.device and ep.function_num == dev.function), None
            )
        if not bridge.sec_bus_num <= bus <= bridge.sub_bus_num:
            return None
        for port in self.endpoints:
            if isinstance(port, Bridge) and port.sec_bus_num <= bus <= port.sub_bus_num:
                return port.config_target(rid) if isinstance(port, FabricRootPort) else None
        return None

    async def config_read(self, dev: PcieId, addr: int, length: int, timeout: int = 0, timeout_unit: str = "ns") -> Any:
        if self.fabric != FAST:
            return await super().config_read(dev, addr, length, timeout, timeout_unit)
        dev = PcieId(dev)
        data = bytearray()
        n = 0
        while n < length:
            first_pad = addr % 4
            byte_length = min(length - n, 4 - first_pad)
            target = self.config_target(dev)
            if target is None:
                dword = UR_DWORD
            else:
                dword = (await config_access(target, int(dev), addr >> 2)).to_bytes(4, "little")
            data.extend(dword[first_pad:])
            n += byte_length
            addr += byte_length
        return data[:length]

    async def config_write(self, dev: PcieId, addr: int, data: Any, timeout: int = 0, timeout_unit: str = "ns") -> None:
        if self.fabric != FAST:
            await super().config_write(dev, addr, data, timeout, timeout_unit)
            return
        dev = PcieId(dev)
        data = bytes(data)
        n = 0
        while n < len(data):
            first_pad = addr % 4
            byte_length = min(len(data) - n, 4 - first_pad)
            target = self.config_target(dev)
            if target is not None:
                value = int.from_bytes(bytes(first_pad) + data[n : n + byte_length], "little")
                await config_access(target, int(dev), addr >> 2, value, ((1 << byte_length) - 1) << first_pad)
            n += byte_length
            addr += byte_length

    # -- memory requests to BAR space (fast fabric) ----------------------------------------------
    def port_for(self, address: int, exclude: Any = None) -> FabricRootPort | None:
        """The root port whose window holds ``address`` (the first, in switch port order)."""
        for port in self.endpoints:
            if port is not exclude and isinstance(port, FabricRootPort) and in_window(port, address):
                return port
        return None

    async def downstream_read(self, req: MemRequest) -> Completion:
        """A read the root complex sends to BAR space: through the host bridge's window, then
        the root port whose window holds it."""
        port = self.port_for(req.address) if in_window(self.upstream_bridge, req.address) else None
        if port is None:
            self.log.warning("No address match: memory read request could not be routed: %r", req)
            return UR
        return await port.downstream_read(req)

    async def downstream_write(self, req: MemRequest) -> None:
        port = self.port_for(req.address) if in_window(self.upstream_bridge, req.address) else None
        if port is None:
            self.log.warning("No address match: memory write request could not be routed: %r", req)
            return
        await port.downstream_write(req)

    # -- memory requests from below (fast fabric) ----------------------------------------------
    async def route_read(self, port: FabricRootPort, req: MemRequest) -> Completion:
        """A read from below ``port``, routed as the root complex's switch routes it: up to the
        root complex unless the host bridge's window holds it, then peer to peer to the port
        whose window does, else UR."""
        if not in_window(self.upstream_bridge, req.address):
            return await self.mem_read_request(req)
        peer = self.port_for(req.address, exclude=port)
        if peer is None:
            self.log.warning("No address match: memory read request could not be routed: %r", req)
            return UR
        return await peer.downstream_read(req)

    async def route_write(self, port: FabricRootPort, req: MemRequest) -> None:
        if not in_window(self.upstream_bridge, req.address):
            await self.mem_write_request(req)
            return
        peer = self.port_for(req.address, exclude=port)
        if peer is None:
            self.log.warning("No address match: memory write request could not be routed: %r", req)
            return
        await peer.downstream_write(req)

    async def mem_read_request(self, req: MemRequest) -> Completion:
        """A device's memory read at the root complex (``RootComplex.handle_mem_read_tlp``):
        UR outside every region, Completer Abort if the region fails, else the DWORDs.
        A read inside one RAM region is served from it directly."""
        ram = self.host_memory.span(req.address, req.length)
        if ram is not None:
            mem, off = ram
            return CplStatus.SC, mem[off : off + req.length]
        if not self.mem_address_space.find_regions(req.address, req.length):
            self.log.warning("Memory request did not match any regions: %r", req)
            return UR
        try:
            data = await self.mem_address_space.read(req.address, req.length)
        except Exception:  # noqa: BLE001 -- as the stock handler: any failure is a Completer Abort
            self.log.warning("Memory read operation failed: %r", req)
            return CA
        return CplStatus.SC, data

    def write_ram(self, address: int, req: MemRequest) -> bool:
        """Write the posted request ``req`` at DWORD ``address`` (its own, or where it was
        translated to) if one RAM region holds it; False if none does."""
        ram = self.host_memory.span(address, req.length)
        if ram is None:
            return False
        mem, off = ram
        off += req.first_pad
        mem[off : off + req.nbytes] = req.payload
        return True

    async def mem_write_request(self, req: MemRequest) -> None:
        """A device's posted memory write at the root complex (``handle_mem_write_tlp``):
        dropped outside every region or if the region fails."""
        if self.write_ram(req.address, req):
            return
        if not self.mem_address_space.find_regions(req.address, req.length):
            self.log.warning("Memory request did not match any regions: %r", req)
            return
        if not req.nbytes:
            return
        try:
            await self.mem_address_space.write(req.address + req.first_pad, req.payload)
        except Exception:  # noqa: BLE001
            self.log.warning("Memory write operation failed: %r", req)

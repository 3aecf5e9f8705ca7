"""The fabric switch and the transaction-level fabric's request rules, without a simulator.

The requests the fast fabric cuts a memory access into must be the TLPs cocotbext-pcie's
``MemoryTlpRegion`` would send (same addresses, DWORD counts and byte enables), or the
IOMMU would translate and fault different requests on the two fabrics.
"""

from __future__ import annotations

import itertools
import random

import pytest
from cocotbext.pcie.core.region import MemoryTlpRegion
from cocotbext.pcie.core.tlp import Tlp, TlpType
from cocotbext.pcie.core.utils import PcieId

import fabric
from datasheet.pci import one_request
from fabric.region import TlpMemoryRegion
from fabric.tlp import CheckedTlp
from fabric.transaction import PAGE, MemRequest, WriteBurst, in_window, read_requests, write_requests
from tests.conftest import run_sync


def test_resolve_picks_argument_then_environment_then_tlp(monkeypatch):
    monkeypatch.delenv(fabric.ENV, raising=False)
    assert fabric.resolve() == fabric.TLP
    monkeypatch.setenv(fabric.ENV, "FAST")
    assert fabric.resolve() == fabric.FAST
    assert fabric.resolve("tlp") == fabric.TLP  # an explicit choice wins
    monkeypatch.setenv(fabric.ENV, "")
    assert fabric.resolve() == fabric.TLP
    with pytest.raises(ValueError, match="unknown fabric"):
        fabric.resolve("pcie6")


def tlp_reads(addr: int, length: int, mrrs: int) -> list[tuple[int, int]]:
    """(address, bytes) of each read request cocotbext-pcie's MemoryTlpRegion.read issues
    (its splitting loop, restated)."""
    out, n = [], 0
    while n < length:
        first_pad = addr % 4
        byte_length = length - n
        if byte_length > mrrs - first_pad:
            byte_length = min(byte_length, mrrs - (addr & 0x7F))
        byte_length = min(byte_length, 0x1000 - (addr & 0xFFF))
        out.append((addr, byte_length))
        n += byte_length
        addr += byte_length
    return out


def tlp_writes(addr: int, length: int, mps: int) -> list[tuple[int, int]]:
    out, n = [], 0
    while n < length:
        byte_length = min(length - n, mps - addr % 4, 0x1000 - (addr & 0xFFF))
        out.append((addr, byte_length))
        n += byte_length
        addr += byte_length
    return out


@pytest.mark.parametrize("mrrs", [128, 256, 512, 4096])
def test_read_requests_match_the_tlps_cocotbext_sends(mrrs):
    rng = random.Random(mrrs)
    for _ in range(2000):
        addr = rng.choice([0, 3, 0x7F, 0xFFD, PAGE - 1]) + rng.randrange(1 << 20)
        length = rng.choice([1, 2, 3, 4, 16, 60, 64, 1500, 4096, 9000, rng.randrange(1, 20000)])
        assert list(read_requests(addr, length, mrrs)) == tlp_reads(addr, length, mrrs), (addr, length)


@pytest.mark.parametrize("max_size", [128, 256, 512, 4096])
def test_one_request_is_when_cocotbext_sends_exactly_one(max_size):
    """``datasheet.pci.one_request`` (the one-request paths of both fabrics: ``TlpMemoryRegion``,
    the bus-master region, the device's DMA reads) holds exactly when cocotbext-pcie's read or
    write loop would send the access as one request; anything else takes the cut."""
    rng = random.Random(max_size)
    for _ in range(4000):
        addr = rng.choice([0, 3, 0x7F, 0x80, 0xFFD, PAGE - 1]) + rng.randrange(1 << 20)
        length = rng.choice([0, 1, 2, 3, 4, 60, 64, 125, 128, 512, 4096, rng.randrange(1, 5000)])
        assert one_request(addr, length, max_size) == (len(tlp_reads(addr, length, max_size)) == 1), (addr, length)
        assert one_request(addr, length, max_size) == (len(tlp_writes(addr, length, max_size)) == 1), (addr, length)


@pytest.mark.parametrize("mps_code", [0, 1, 2])
def test_a_root_complex_write_sends_the_tlps_cocotbext_sends(mps_code):
    """``TlpMemoryRegion.write`` sends what cocotbext-pcie's ``MemoryTlpRegion.write`` sends,
    field for field (empty writes, writes past Max_Payload_Size or across 4 KiB included); a
    write that is one request is built as a ``CheckedTlp``, the rest take the stock path."""

    class Host:  # what a region writes through: Max_Payload_Size, bus mastering, the sender
        max_payload_size = mps_code
        bus_master_enable = True
        pcie_id = PcieId(0, 0, 0)

        def __init__(self):
            self.sent = []

        async def perform_posted_operation(self, tlp):
            self.sent.append(tlp)

    ours, stock = Host(), Host()
    region, reference = TlpMemoryRegion(ours), MemoryTlpRegion(stock)
    rng = random.Random(mps_code)
    for _ in range(2000):
        addr = rng.choice([0, 3, 0x7F, 0xFFD, PAGE - 1, 1 << 32]) + rng.randrange(1 << 20)
        data = bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 1, 3, 4, 8, 64, 128, 200, 1514, 4100])))
        ours.sent.clear()
        stock.sent.clear()
        run_sync(region.write(addr, data))
        run_sync(reference.write(addr, data))
        assert [vars(t) for t in ours.sent] == [vars(t) for t in stock.sent], (addr, len(data))
        one = len(stock.sent) == 1 and len(data) > 0
        assert all(type(t) is (CheckedTlp if one else Tlp) for t in ours.sent), (addr, len(data))
    ours.bus_master_enable = False
    with pytest.raises(Exception, match="Bus mastering not enabled"):
        run_sync(region.write(0x1000, b"1234"))


@pytest.mark.parametrize("mps", [128, 256, 512])
def test_write_requests_match_the_tlps_cocotbext_sends(mps):
    rng = random.Random(mps)
    for _ in range(2000):
        addr = rng.randrange(1 << 20)
        length = rng.choice([1, 3, 4, 8, 64, 1514, 4096, rng.randrange(1, 10000)])
        assert list(write_requests(addr, length, mps)) == tlp_writes(addr, length, mps), (addr, length)


def test_zero_length_accesses_are_one_request_with_no_bytes_enabled():
    assert list(read_requests(0x1002, 0, 512)) == [(0x1002, 0)]
    assert list(write_requests(0x1002, 0, 128)) == [(0x1002, 0)]
    req = MemRequest(0x100, 0x1002, 0)
    assert (req.address, req.dwords, req.first_be, req.last_be) == (0x1000, 1, 0, 0)


@pytest.mark.parametrize(
    "addr,length", [(0, 4), (1, 1), (2, 2), (3, 2), (5, 9), (0x1FFC, 4), (6, 64), (0xFFE, 2), (2, 4), (1, 6), (0, 8)]
)
def test_request_header_fields_are_the_tlps(addr, length):
    """Address, Length, First/Last BE and payload as ``Tlp.set_addr_be_data`` sets them."""
    data = bytes(range(1, length + 1))
    tlp = Tlp()
    tlp.set_addr_be_data(addr, data)
    req = MemRequest(0x0102, addr, length, data)
    assert (req.address, req.dwords, req.first_be, req.last_be) == (tlp.address, tlp.length, tlp.first_be, tlp.last_be)
    assert req.padded() == bytes(tlp.get_data())
    moved = req.at(0x5000 | (addr & 0xFFC))
    assert (moved.address, moved.dwords, moved.first_pad, moved.payload) == (
        0x5000 | (addr & 0xFFC),
        req.dwords,
        req.first_pad,
        data,
    )


class Window:
    mem_base, mem_limit = 0xC000_0000, 0xC00F_FFFF
    prefetchable_mem_base, prefetchable_mem_limit = 0x8000_0000_0000_0000, 0x8000_0000_000F_FFFF


def test_bridge_windows_decode_both_ranges_inclusive():
    w = Window()
    assert in_window(w, 0xC000_0000) and in_window(w, 0xC00F_FFFF) and not in_window(w, 0xC010_0000)
    assert in_window(w, 0x8000_0000_0000_1000) and not in_window(w, 0xBFFF_FFFF)


def test_a_function_reached_through_a_bus_master_region_raises_like_cocotbext():
    """Bus mastering off: no request at all; an unsuccessful completion: after every request
    of the read went out, with the function's Received Master Abort set."""
    from cocotbext.pcie.core.tlp import CplStatus  # noqa: PLC0415

    from fabric.transaction import UR, BusMasterRegion  # noqa: PLC0415

    class Port:
        def __init__(self):
            self.reads = []

        async def upstream_read(self, req):
            self.reads.append(req.address)
            return UR if req.address == 0x2000 else (CplStatus.SC, bytes(req.length))

    class Cap:
        max_read_request_size = 0  # 128 bytes
        max_payload_size = 0

    class Func:
        bus_master_enable = False
        pcie_id = 0x0101
        pcie_cap = Cap()
        received_master_abort = False
        received_target_abort = False

    func, port = Func(), Port()
    region = BusMasterRegion(func, port)
    with pytest.raises(Exception, match="Bus mastering not enabled"):
        run_sync(region.read(0x1000, 4))
    assert port.reads == []
    func.bus_master_enable = True
    assert run_sync(region.read(0x1F80, 0x80)) == bytes(0x80)
    with pytest.raises(Exception, match="Unsuccessful completion"):
        run_sync(region.read(0x1F80, 0x180))
    assert port.reads[-3:] == [0x1F80, 0x2000, 0x2080]  # all issued, then the failure
    assert func.received_master_abort and not func.received_target_abort
    func.received_master_abort = False
    with pytest.raises(Exception, match="Unsuccessful completion"):
        run_sync(region.read(0x2001, 2))  # one request
    assert func.received_master_abort


def test_checked_tlps_answer_as_stock_tlps_do(capsys):
    """A TLP the TLP fabric's links hand up as a ``CheckedTlp`` is the copy the stock port makes
    (``Tlp(tlp)``) and has the same type, flow-control class, validation result and messages
    and representation as the stock ``Tlp``."""

    def outcome(call):
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 -- the same exception, whatever it is
            return type(exc)

    rng = random.Random(12)
    for kind in TlpType:
        for _ in range(100):
            stock = Tlp()
            stock.fmt_type = kind
            stock.length = rng.choice([0, 1, 2, 4, 1024, rng.randrange(2000)])
            stock.address = rng.randrange(1 << 20)
            stock.byte_count, stock.lower_address = rng.randrange(5000), rng.randrange(128)
            stock.data = bytearray(rng.choice([stock.length * 4, rng.randrange(100)]))
            stock.th, stock.tag, stock.seq = rng.random() < 0.5, rng.randrange(256), rng.randrange(4096)
            stock.requester_id, stock.completer_id = (PcieId.from_int(rng.randrange(1 << 16)) for _ in "rc")
            checked = CheckedTlp.copy_of(stock)  # what a link port hands up
            stock = Tlp(stock)  # what a stock port hands up
            assert type(checked) is CheckedTlp and vars(checked) == vars(stock), kind
            assert checked.data is not stock.data
            verdict = stock.check()
            printed = capsys.readouterr().out
            assert checked.check() == verdict and capsys.readouterr().out == printed, kind
            assert checked.fmt_type is stock.fmt_type and repr(checked) == repr(stock)
            for query in ("get_fc_type", "is_posted", "is_nonposted", "is_completion"):
                assert outcome(getattr(checked, query)) == outcome(getattr(stock, query)), (kind, query)


def test_table_routing_decides_as_the_stock_bridge_does():
    """The root ports and the host bridge route by ``fabric.routing.TableRouting``: for every
    TLP type, IDs on, below and beside the bridge's buses and addresses in and around its
    windows and BARs, the same answer as cocotbext-pcie's ``match_tlp`` and
    ``match_tlp_secondary``, or the same exception."""
    from types import SimpleNamespace  # noqa: PLC0415

    from cocotbext.pcie.core.bridge import Bridge  # noqa: PLC0415
    from cocotbext.pcie.core.function import Function  # noqa: PLC0415

    from fabric.routing import TableRouting  # noqa: PLC0415

    def outcome(method, bridge, tlp):
        try:
            return method(bridge, tlp)
        except Exception as exc:  # noqa: BLE001 -- the same exception, whatever it is
            return type(exc), str(exc)

    bar = (0x9000_0000, 0xFFFF_0000)  # one 64 KiB memory BAR
    port = SimpleNamespace(
        device_num=0,
        function_num=1,
        pcie_id=PcieId(0, 0, 1),
        sec_bus_num=2,
        sub_bus_num=4,
        io_base=0x1000,
        io_limit=0x1FFF,
        mem_base=0xC000_0000,
        mem_limit=0xC0FF_FFFF,
        prefetchable_mem_base=0x8000_0000_0000,
        prefetchable_mem_limit=0x8000_00FF_FFFF,
        match_bar=lambda addr, io=False: None if io or (addr ^ bar[0]) & bar[1] else (0, addr & ~bar[1]),
    )
    ids = [PcieId(0, 0, 0), PcieId(0, 0, 1), PcieId(0, 1, 1), PcieId(1, 0, 0), PcieId(2, 0, 0), PcieId(4, 31, 7)]
    ids += [PcieId(5, 0, 0)]
    addresses = [0, 0x1000, 0x1FFF, 0x2000, 0x9000_0010, 0x9001_0000, 0xBFFF_FFFF, 0xC000_0000, 0xC0FF_FFFF]
    addresses += [0xC100_0000, 0x8000_0000_0000, 0x8000_00FF_FFFF, 0x8000_0100_0000]
    host_bridge = SimpleNamespace(**{**vars(port), "sec_bus_num": 0, "sub_bus_num": 255})
    for kind, bridge in itertools.product(TlpType, (port, host_bridge)):
        for rid in ids:
            for cid in ids:
                for address in addresses:
                    tlp = Tlp()
                    tlp.fmt_type = kind
                    tlp.requester_id, tlp.completer_id, tlp.address = rid, cid, address
                    where = (kind, bridge.sec_bus_num, rid, cid, hex(address))
                    assert outcome(TableRouting.match_tlp, bridge, tlp) == outcome(Function.match_tlp, bridge, tlp), (
                        where
                    )
                    assert outcome(TableRouting.match_tlp_secondary, bridge, tlp) == outcome(
                        Bridge.match_tlp_secondary, bridge, tlp
                    ), where


@pytest.mark.parametrize("mps", [128, 256, 512])
def test_a_write_burst_is_the_cut_and_its_pages_cut_the_same(mps):
    """A :class:`WriteBurst` is the requests ``write_requests`` cuts the write into; read page
    by page, each page's requests are the full cut's requests in that page, counted right."""
    rng = random.Random(mps)
    for _ in range(500):
        addr = rng.randrange(1 << 20)
        length = rng.choice([1, 3, 8, 1514, 4096, 9000, rng.randrange(1, 20000)])
        data = rng.randbytes(length)
        burst = WriteBurst(0x0104, addr, data, mps)
        cut = list(write_requests(addr, length, mps))
        first = burst[0]
        assert (first.address + first.first_pad, first.nbytes, first.payload) == (addr, cut[0][1], data[: cut[0][1]])
        assert [(r.address + r.first_pad, r.nbytes, r.payload) for r in burst] == [
            (a, n, data[a - addr : a - addr + n]) for a, n in cut
        ]
        by_page = []
        for page_addr, n, count in burst.pages():
            requests = burst.cut(page_addr, n)
            assert len(requests) == count and {r.address // PAGE for r in requests} == {page_addr // PAGE}
            by_page += requests
        assert [(r.address, r.first_pad, r.nbytes) for r in by_page] == [
            (r.address, r.first_pad, r.nbytes) for r in burst
        ]
    assert list(WriteBurst(0x0104, 0x1002, b"", mps).pages()) == [(0x1002, 0, 1)]

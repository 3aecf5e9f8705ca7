"""Raw requests that return the completion status with the data, for people who bring their
own drivers and need to tell an Unsupported Request from a VF's legitimate 0xFFFF.

cocotbext-pcie's ``config_read`` and ``mem_read`` return all ones for Unsupported Request,
Configuration Request Retry Status, Completer Abort and a timeout alike. Each helper here
sends exactly one request TLP through the root complex and hands back the first
completion's status (PCIe Base §2.2.9: SC, UR, CRS, CA) or ``None`` when no completion
came before ``timeout_ns``. Memory writes are posted (§2.4): they have no completion, so
:func:`mem_write` returns nothing and an error shows only in the completer's logs (AER).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cocotbext.pcie.core.tlp import CplStatus, Tlp, TlpType
from cocotbext.pcie.core.utils import PcieId

if TYPE_CHECKING:
    from cocotbext.pcie.core import RootComplex

__all__ = ["Completion", "CplStatus", "config_read", "config_write", "mem_read", "mem_write"]

#: how long a raw request waits for its completion (the host's Completion Timeout)
DEFAULT_TIMEOUT_NS = 1_000_000
#: a memory read may not cross a 4 KiB boundary (PCIe Base §2.2.7)
PAGE = 4096


@dataclass(frozen=True)
class Completion:
    """Outcome of one non-posted request: ``status`` is None when the request timed out."""

    status: CplStatus | None
    data: bytes = b""

    @property
    def ok(self) -> bool:
        return self.status is CplStatus.SC

    def __str__(self) -> str:
        name = "timeout" if self.status is None else self.status.name
        return f"{name} {self.data.hex()}" if self.data else name


async def _nonposted(rc: RootComplex, req: Tlp, timeout_ns: int) -> tuple[CplStatus | None, list[Tlp]]:
    cpls = await rc.perform_nonposted_operation(req, timeout_ns, "ns")
    if not cpls:
        return None, []
    return CplStatus(cpls[0].status), cpls


def _config_request(rid: int | PcieId, fmt_type: TlpType) -> Tlp:
    req = Tlp()
    req.fmt_type = fmt_type
    req.requester_id = PcieId(0, 0, 0)
    req.completer_id = rid if isinstance(rid, PcieId) else PcieId.from_int(rid)
    return req


def _check_dword(offset: int, length: int) -> None:
    if length < 1 or offset % 4 + length > 4:
        raise ValueError(f"a configuration request covers bytes of one dword: {length} at {offset:#x}")


async def config_read(
    rc: RootComplex, rid: int | PcieId, offset: int, length: int = 4, timeout_ns: int = DEFAULT_TIMEOUT_NS
) -> Completion:
    """One Configuration Read of ``length`` bytes (within one dword) at ``offset`` of the
    function with Routing ID ``rid`` (which need not exist: that is what UR says)."""
    _check_dword(offset, length)
    req = _config_request(rid, TlpType.CFG_READ_1)
    req.set_addr_be(offset, length)
    status, cpls = await _nonposted(rc, req, timeout_ns)
    if status is not CplStatus.SC:
        return Completion(status)
    first = offset % 4
    return Completion(status, bytes(cpls[0].get_data()[first : first + length]))


async def config_write(
    rc: RootComplex, rid: int | PcieId, offset: int, data: bytes, timeout_ns: int = DEFAULT_TIMEOUT_NS
) -> Completion:
    """One Configuration Write of ``data`` (within one dword); configuration writes are
    non-posted, so the completion says whether the function took it."""
    _check_dword(offset, len(data))
    req = _config_request(rid, TlpType.CFG_WRITE_1)
    req.set_addr_be_data(offset, bytes(data))
    status, _cpls = await _nonposted(rc, req, timeout_ns)
    return Completion(status)


async def mem_read(rc: RootComplex, addr: int, length: int, timeout_ns: int = DEFAULT_TIMEOUT_NS) -> Completion:
    """One Memory Read request of ``length`` bytes at ``addr`` (not crossing 4 KiB);
    the data of every completion that answered it, in order."""
    if length < 1 or addr % PAGE + length > PAGE:
        raise ValueError(f"one memory read may not cross a 4 KiB boundary: {length} bytes at {addr:#x}")
    req = Tlp()
    req.fmt_type = TlpType.MEM_READ_64 if addr >> 32 else TlpType.MEM_READ
    req.requester_id = PcieId(0, 0, 0)
    req.set_addr_be(addr, length)
    status, cpls = await _nonposted(rc, req, timeout_ns)
    if status is not CplStatus.SC:
        return Completion(status)
    data = b"".join(bytes(cpl.get_data()) for cpl in cpls)
    first = addr % 4
    return Completion(status, data[first : first + length])


async def mem_write(rc: RootComplex, addr: int, data: bytes) -> None:
    """One posted Memory Write of ``data`` at ``addr`` (no completion to wait for)."""
    await rc.mem_write(addr, bytes(data))

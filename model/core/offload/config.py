"""Each function's offload registers, decoded: ``FN_OFFLOAD[fn]``, its ``RSS_KEY`` and ``RSS_RETA``
elements (PF BAR0, written by the PF driver only). A bus write to any of them drops the
decoded copies; they are decoded again on the next frame."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from datasheet import device, regs
from datasheet.descriptors import RssType, hash_types_of

if TYPE_CHECKING:
    from model.core.regfile import RegisterFile

FIELD = {f.name: f for f in regs.FN_OFFLOAD.fields}
KEY_WORDS = device.RSS_KEY_SIZE // 4
RETA_WORDS = device.RSS_RETA_SIZE // regs.RETA_PER_WORD
OFFLOAD_REGS = (regs.FN_OFFLOAD, regs.RSS_KEY, regs.RSS_RETA)


@dataclass(frozen=True)
class FnOffloads:
    """One function's offload configuration."""

    hash_types: frozenset[RssType]
    key: bytes
    table: tuple[int, ...]
    rxcsum: bool
    rxvlan: bool
    txcsum: bool
    tso: bool
    txvlan: bool


def offloads_of(rf: RegisterFile, fn: int) -> FnOffloads:
    value = rf.get(regs.FN_OFFLOAD, fn)
    key = regs.rss_key_bytes([rf.get(regs.RSS_KEY, fn * KEY_WORDS + k) for k in range(KEY_WORDS)])
    table = regs.reta_entries([rf.get(regs.RSS_RETA, fn * RETA_WORDS + k) for k in range(RETA_WORDS)])
    return FnOffloads(
        hash_types=hash_types_of(value),
        key=key,
        table=tuple(table),
        rxcsum=bool(FIELD["RXCSUM"].get(value)),
        rxvlan=bool(FIELD["RXVLAN"].get(value)),
        txcsum=bool(FIELD["TXCSUM"].get(value)),
        tso=bool(FIELD["TSO"].get(value)),
        txvlan=bool(FIELD["TXVLAN"].get(value)),
    )


class OffloadTables:
    """Decoded :class:`FnOffloads` per function, over the PF's register file."""

    def __init__(self, pf_regs: RegisterFile):
        self.rf = pf_regs
        self._cache: dict[int, FnOffloads] = {}
        for reg in OFFLOAD_REGS:
            pf_regs.on_write(reg, self._written)

    def _written(self, old: int, new: int) -> None:
        self._cache.clear()

    def invalidate(self) -> None:
        """Decode again (PF reset: the registers went back to their reset values)."""
        self._cache.clear()

    def of(self, fn: int) -> FnOffloads:
        found = self._cache.get(fn)
        if found is None:
            found = self._cache[fn] = offloads_of(self.rf, fn)
        return found

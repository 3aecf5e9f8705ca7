"""Programming a function's offloads (FN_OFFLOAD, RSS_KEY, RSS_RETA, element ``fn`` of the PF's
BAR0): the PF's own from its net device, each VF's from what it asked through the mailbox
within what the administrator allows (``PfDriver.set_vf_offloads``).

The PF keeps a shadow of what it last wrote per function (the registers' reset values after a
PF reset) and writes only the dwords that change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from datasheet import device, regs
from datasheet.descriptors import HENA_MASK
from datasheet.mailbox import Offload
from pf_driver.vf_info import VfInfo, VfState

if TYPE_CHECKING:
    from collections.abc import Iterable

    from pf_driver.driver import PfDriver

FIELD = {f.name: f for f in regs.FN_OFFLOAD.fields}
#: FN_OFFLOAD bits of the offloads that are plain enables (RSS is its hash types)
ENABLE_FIELDS = {
    Offload.RXCSUM: FIELD["RXCSUM"],
    Offload.RXVLAN: FIELD["RXVLAN"],
    Offload.TXCSUM: FIELD["TXCSUM"],
    Offload.TSO: FIELD["TSO"],
    Offload.TXVLAN: FIELD["TXVLAN"],
}
KEY_WORDS = device.RSS_KEY_SIZE // 4
RETA_WORDS = device.RSS_RETA_SIZE // regs.RETA_PER_WORD


def fn_offload_value(enabled: Offload, hena: int) -> int:
    """FN_OFFLOAD of a function with ``enabled`` offloads and hash types ``hena`` (applied only with RSS)."""
    value = hena & HENA_MASK if enabled & Offload.RSS else 0
    for offload, f in ENABLE_FIELDS.items():
        if enabled & offload:
            value |= f.mask
    return value


async def program_offloads(pf: PfDriver, fn: int, value: int, key: bytes, table: Iterable[int]) -> None:
    """Write function ``fn``'s offload registers where they differ from what the PF last wrote."""
    want = (value, tuple(regs.rss_key_words(key)), tuple(regs.reta_words(list(table))))
    have = pf.offload_shadow.get(fn, (0, (0,) * KEY_WORDS, (0,) * RETA_WORDS))
    for k, (new, old) in enumerate(zip(want[1], have[1])):
        if new != old:
            await pf.write_reg(regs.RSS_KEY, new, fn * KEY_WORDS + k)
    for k, (new, old) in enumerate(zip(want[2], have[2])):
        if new != old:
            await pf.write_reg(regs.RSS_RETA, new, fn * RETA_WORDS + k)
    if want[0] != have[0]:
        await pf.write_reg(regs.FN_OFFLOAD, want[0], fn)
    pf.offload_shadow[fn] = want


async def program_vf_offloads(pf: PfDriver, vf: VfInfo) -> None:
    """VF ``vf``'s offloads after a request, a VFLR, a PF reset or an administrator change: what
    it enabled and the PF allows, none before its RESET or while disabled."""
    active = vf.state not in (VfState.NOT_RESET, VfState.DISABLED)
    enabled = vf.offloads & vf.allowed_offloads if active else Offload(0)
    await program_offloads(
        pf, device.vf_port(vf.index), fn_offload_value(enabled, vf.rss_hena), vf.rss_key, vf.rss_table
    )

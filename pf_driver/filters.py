"""Programming the embedded switch from the PF driver's per-function state.

Every function's filters (unicast MAC, multicast list, VLANs, promiscuous and
spoof-check flags, port VLAN) live in the PF's BAR0 (SW_* registers, element
``fn``: 0 = PF, 1 + i = VF i). VFs ask through the mailbox; only the PF writes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from datasheet import device, regs
from pf_driver.vf_info import VfInfo, VfState

if TYPE_CHECKING:
    from collections.abc import Iterable

    from pf_driver.driver import PfDriver

FN_CTRL = {f.name: f for f in regs.SW_FN_CTRL.fields}
VALID = regs.SW_VLAN.field("VALID")


async def program_function(
    pf: PfDriver,
    fn: int,
    mac: bytes | None,
    multicast: Iterable[bytes] = (),
    vlans: Iterable[int] = (),
    bam: bool = True,
    rx_en: bool = True,
    upe: bool = False,
    mpe: bool = False,
    spoofchk: bool = False,
    pvid: int | None = None,
    defq: int = 0,
) -> None:
    lo, hi = regs.sw_mac_words(mac) if mac else (0, 0)
    await pf.write_reg(regs.SW_MAC_LO, lo, fn)
    await pf.write_reg(regs.SW_MAC_HI, hi, fn)
    mc = list(multicast)[: device.SW_MC_PER_FN]
    words = [regs.sw_mac_words(mc[k]) if k < len(mc) else (0, 0) for k in range(device.SW_MC_PER_FN)]
    # each function's slots of an array are contiguous: one write per array
    await pf.write_regs(regs.SW_MC_LO, [lo for lo, _ in words], fn * device.SW_MC_PER_FN)
    await pf.write_regs(regs.SW_MC_HI, [hi for _, hi in words], fn * device.SW_MC_PER_FN)
    vids = sorted(vlans)[: device.SW_VLANS_PER_FN]
    await pf.write_regs(
        regs.SW_VLAN,
        [VALID.put(vids[k], 1) if k < len(vids) else 0 for k in range(device.SW_VLANS_PER_FN)],
        fn * device.SW_VLANS_PER_FN,
    )
    ctrl = 0
    for name, on in (
        ("BAM", bam),
        ("RX_EN", rx_en),
        ("UPE", upe),
        ("MPE", mpe),
        ("SPOOFCHK", spoofchk),
        ("PVLAN_EN", pvid is not None),
    ):
        ctrl = FN_CTRL[name].put(ctrl, int(on))
    ctrl = FN_CTRL["PVID"].put(FN_CTRL["DEFQ"].put(ctrl, defq), pvid or 0)
    await pf.write_reg(regs.SW_FN_CTRL, ctrl, fn)


async def program_vf(pf: PfDriver, vf: VfInfo) -> None:
    """The switch view of VF ``vf`` after a request, a VFLR or an administrator change."""
    active = vf.state not in (VfState.NOT_RESET, VfState.DISABLED)
    await program_function(
        pf,
        device.vf_port(vf.index),
        vf.mac if active else None,
        vf.multicast,
        vf.vlans,
        rx_en=active,
        upe=vf.promisc_unicast,
        mpe=vf.promisc_multicast,
        spoofchk=vf.spoofchk,
        pvid=vf.admin_vlan,
    )

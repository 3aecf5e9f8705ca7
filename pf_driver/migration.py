"""The PF driver as a VFIO migration variant driver (after mlx5vf and hisi_acc_vfio_pci):
VFIO migration v2 states per VF, built on the device's migration engine (``PF_MIG_*``).

``include/uapi/linux/vfio.h`` defines the states and the arcs a driver implements; userspace
asks for one state at a time and the VFIO core walks multi-step requests arc by arc
(``vfio_mig_get_next_state``, here :func:`mig_path`). This driver implements exactly the
single arcs of :data:`VFIO_ARCS`; any other request is refused with :class:`MigrationError`
and the state is unchanged. The device state moves as ``docs/migration.md`` tabulates:
PRE_COPY runs the device (the dirty pages are the IOMMU's to track), STOP_COPY saves the
blob (then read with :meth:`VfMigration.save_data`, VFIO's data_fd ``read``), RESUMING takes
one (:meth:`VfMigration.load_data`, data_fd ``write``) and the arc RESUMING -> STOP loads it
into the device, which checks all of it first; a refused blob fails that arc and leaves the
VF in RESUMING, as it was.

The blob the device saves is extended with a PF_POLICY section: this driver's policy for the
VF (MAC, VLAN, trust, spoof check, promiscuous modes, link state, offloads it allows, what the
VF configured), applied on the destination when the blob loads.
"""

from __future__ import annotations

import json
from collections import deque
from typing import TYPE_CHECKING

from cocotb.triggers import Timer

from datasheet import device, regs
from datasheet import migration as mig
from datasheet.mailbox import Offload
from datasheet.migration import (
    DEVICE_STATE,
    VFIO_ARCS,
    Blob,
    BlobError,
    MigError,
    MigOp,
    MigState,
    Section,
    SectionType,
    VfioMigState,
)
from pf_driver.filters import program_vf
from pf_driver.offloads import program_vf_offloads
from pf_driver.vf_info import LinkState, RingConfig, VfInfo, VfState

if TYPE_CHECKING:
    from iommu import DmaBuffer
    from pf_driver.driver import PfDriver

CMD = {f.name: f for f in regs.PF_MIG_CMD.fields}
STATUS = {f.name: f for f in regs.PF_MIG_STATUS.fields}
#: how often and how long the driver polls PF_MIG_STATUS
POLL_NS = 200
TIMEOUT_NS = 10_000_000


S = VfioMigState
__all__ = [
    "DEVICE_STATE",
    "VFIO_ARCS",
    "MigrationError",
    "PfMigration",
    "VfMigration",
    "VfioMigState",
    "apply_policy",
    "mig_path",
    "policy_of",
]


def mig_path(current: VfioMigState, target: VfioMigState) -> list[VfioMigState]:
    """The arcs from ``current`` to ``target`` (VFIO core ``vfio_mig_get_next_state``: shortest
    path, never through ERROR); raises MigrationError if ``target`` cannot be reached."""
    paths, seen = deque([[current]]), {current}
    while paths:
        path = paths.popleft()
        if path[-1] is target:
            return path[1:]
        for nxt in sorted(VFIO_ARCS[path[-1]]):
            if nxt not in seen and nxt is not S.ERROR:
                seen.add(nxt)
                paths.append([*path, nxt])
    raise MigrationError(f"{target.name} cannot be reached from {current.name}")


class MigrationError(Exception):
    """A refused migration request; ``error`` is the device's reason when it refused."""

    def __init__(self, why: str, error: MigError | None = None):
        super().__init__(why if error is None or error.name in why else f"{why} ({error.name})")
        self.error = error


# -- the PF driver's policy section ---------------------------------------------------------------
def policy_of(vf: VfInfo) -> dict:
    rings = {
        kind: {str(q): [r.iova, r.length, r.buf_size] for q, r in table.items()}
        for kind, table in (("tx", vf.tx_rings), ("rx", vf.rx_rings))
    }
    return {
        "state": vf.state.value,
        "mac": vf.mac.hex(),
        "admin_mac": vf.admin_mac,
        "admin_vlan": vf.admin_vlan,
        "trust": vf.trust,
        "spoofchk": vf.spoofchk,
        "link_state": vf.link_state.value,
        "api_version": list(vf.api_version) if vf.api_version else None,
        "multicast": [m.hex() for m in vf.multicast],
        "vlans": sorted(vf.vlans),
        "promisc_unicast": vf.promisc_unicast,
        "promisc_multicast": vf.promisc_multicast,
        "rings": rings,
        "allowed_offloads": int(vf.allowed_offloads),
        "offloads": int(vf.offloads),
        "rss_key": vf.rss_key.hex(),
        "rss_table": list(vf.rss_table),
        "rss_hena": vf.rss_hena,
    }


def apply_policy(vf: VfInfo, policy: dict) -> None:
    vf.state = VfState(policy["state"])
    vf.mac, vf.admin_mac, vf.admin_vlan = bytes.fromhex(policy["mac"]), policy["admin_mac"], policy["admin_vlan"]
    vf.trust, vf.spoofchk, vf.link_state = policy["trust"], policy["spoofchk"], LinkState(policy["link_state"])
    vf.api_version = tuple(policy["api_version"]) if policy["api_version"] else None
    vf.multicast = [bytes.fromhex(m) for m in policy["multicast"]]
    vf.vlans = set(policy["vlans"])
    vf.promisc_unicast, vf.promisc_multicast = policy["promisc_unicast"], policy["promisc_multicast"]
    vf.tx_rings = {int(q): RingConfig(*r) for q, r in policy["rings"]["tx"].items()}
    vf.rx_rings = {int(q): RingConfig(*r) for q, r in policy["rings"]["rx"].items()}
    vf.allowed_offloads, vf.offloads = Offload(policy["allowed_offloads"]), Offload(policy["offloads"])
    vf.rss_key, vf.rss_table, vf.rss_hena = bytes.fromhex(policy["rss_key"]), policy["rss_table"], policy["rss_hena"]


class VfMigration:
    """One VF's VFIO migration state (mlx5vf's ``mlx5vf_pci_core_device``)."""

    def __init__(self, owner: PfMigration, index: int):
        self.owner = owner
        self.index = index
        self.state = S.RUNNING
        self.saved: bytes | None = None  # STOP_COPY's data, read by save_data()
        self.incoming: bytes | None = None  # RESUMING's data, written by load_data()

    async def set_state(self, new: VfioMigState) -> None:
        """One arc (``VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE``); raises MigrationError and leaves the
        state unchanged if ``new`` is not one arc away or the device refuses."""
        old = self.state
        if new not in VFIO_ARCS[old]:
            raise MigrationError(f"VF {self.index}: {old.name} -> {new.name} is not a VFIO migration arc")
        if new is S.PRE_COPY and self.owner.pf.vf_info(self.index).state is VfState.DISABLED:
            raise MigrationError(f"VF {self.index}: disabled after error events: reset it first", MigError.VF_ERROR)
        if old is S.RESUMING:
            await self._load()
        if DEVICE_STATE[new] is not DEVICE_STATE[old]:
            await self.owner.command(self.index, MigOp.SET_STATE, DEVICE_STATE[new])
        if new is S.STOP_COPY:
            self.saved = await self.owner.save(self.index)
        elif new is S.RESUMING:
            self.incoming = None
        if old is S.STOP_COPY:
            self.saved = None
        self.state = new

    async def set_state_path(self, target: VfioMigState) -> None:
        """Walk to ``target`` one arc at a time, as the VFIO core does for userspace."""
        for step in mig_path(self.state, target):
            await self.set_state(step)

    def save_data(self) -> bytes:
        """The blob of STOP_COPY (data_fd ``read``)."""
        if self.state is not S.STOP_COPY or self.saved is None:
            raise MigrationError(f"VF {self.index}: no saved state outside STOP_COPY ({self.state.name})")
        return self.saved

    def load_data(self, blob: bytes) -> None:
        """Hand RESUMING the blob (data_fd ``write``); it is checked and loaded on RESUMING -> STOP."""
        if self.state is not S.RESUMING:
            raise MigrationError(f"VF {self.index}: data written outside RESUMING ({self.state.name})")
        self.incoming = bytes(blob)

    async def _load(self) -> None:
        if self.incoming is None:
            raise MigrationError(f"VF {self.index}: RESUMING -> STOP without data")
        try:
            blob = Blob.parse(self.incoming)
        except BlobError as exc:
            raise MigrationError(f"VF {self.index}: blob refused: {exc}", exc.error) from None
        section = blob.section(SectionType.PF_POLICY)
        if section is None or not section.flags & mig.SECTION_HOST:
            raise MigrationError(f"VF {self.index}: blob without the PF's policy section", MigError.MALFORMED)
        policy = self.owner.check_policy(self.index, section.payload, blob.section(SectionType.SWITCH))
        await self.owner.load(self.index, blob.device_part().pack())
        await self.owner.apply_policy(self.index, policy)


class PfMigration:
    """The PF driver's migration support: one :class:`VfMigration` per VF, the PF_MIG_* commands
    and the DMA buffer the blobs cross (allocated from the PF's DMA API on first use)."""

    def __init__(self, pf: PfDriver):
        self.pf = pf
        self.vfs: dict[int, VfMigration] = {}
        self._buffer: tuple[DmaBuffer, int] | None = None

    def vf(self, index: int) -> VfMigration:
        if not 0 <= index < self.pf.num_vfs:
            raise MigrationError(f"VF {index}: no such VF ({self.pf.num_vfs} enabled)")
        return self.vfs.setdefault(index, VfMigration(self, index))

    def reset(self, index: int | None = None) -> None:
        """VF ``index`` was reset (VFLR), or SR-IOV reconfigured (None): RUNNING again, nothing
        saved or written (vfio's ``reset_done``)."""
        if index is None:
            self.vfs.clear()
        else:
            self.vfs.pop(index, None)

    def buffer(self) -> tuple[DmaBuffer, int]:
        if self._buffer is None:
            self._buffer = self.pf.dma.dma_alloc_coherent(device.MIG_BLOB_MAX)
        return self._buffer

    async def command(self, index: int, op: MigOp, target: MigState = MigState.RUNNING) -> None:
        """Write PF_MIG_CMD, wait for BUSY to clear; raises MigrationError with the device's ERR."""
        value = CMD["TARGET"].put(CMD["OP"].put(CMD["VF"].put(0, index), int(op)), int(target))
        await self.pf.write_reg(regs.PF_MIG_CMD, value)
        waited = 0
        while True:
            status = await self.pf.read_reg(regs.PF_MIG_STATUS)
            if not STATUS["BUSY"].get(status):
                break
            if waited >= TIMEOUT_NS:
                raise MigrationError(f"VF {index}: {op.name} did not complete in {TIMEOUT_NS} ns")
            await Timer(POLL_NS, "ns")
            waited += POLL_NS
        error = MigError(STATUS["ERR"].get(status))
        if error is not MigError.NONE or not STATUS["DONE"].get(status):
            raise MigrationError(f"VF {index}: {op.name} refused by the device: {error.name}", error)

    async def _program_buffer(self, length: int) -> DmaBuffer:
        buf, iova = self.buffer()
        await self.pf.write_reg(regs.PF_MIG_ADDR_LO, iova & 0xFFFFFFFF)
        await self.pf.write_reg(regs.PF_MIG_ADDR_HI, iova >> 32)
        await self.pf.write_reg(regs.PF_MIG_LEN, length)
        return buf

    async def save(self, index: int) -> bytes:
        """SAVE into the buffer, then append this driver's policy for the VF (re-sealing the CRC)."""
        buf = await self._program_buffer(device.MIG_BLOB_MAX)
        await self.command(index, MigOp.SAVE)
        length = await self.pf.read_reg(regs.PF_MIG_LEN)
        blob = Blob.parse(buf.read(0, length))
        policy = json.dumps(policy_of(self.pf.vf_info(index)), sort_keys=True).encode()
        blob.sections.append(Section(int(SectionType.PF_POLICY), policy, mig.SECTION_HOST))
        return blob.pack()

    async def load(self, index: int, raw: bytes) -> None:
        if len(raw) > device.MIG_BLOB_MAX:
            raise MigrationError(f"VF {index}: a blob of {len(raw)} bytes", MigError.BAD_MAGIC)
        buf = await self._program_buffer(len(raw))
        buf.write(0, raw)
        await self.command(index, MigOp.LOAD)

    def check_policy(self, index: int, payload: bytes, switch: Section | None) -> dict:
        """The blob's PF_POLICY, checked against this PF before anything is loaded: the stream is
        not trusted to give the VF a MAC another function uses (its frames would be stolen)."""
        try:
            policy = json.loads(payload)
            probe = VfInfo(index, bytes(6))
            apply_policy(probe, policy)
        except (ValueError, KeyError, TypeError) as exc:
            raise MigrationError(f"VF {index}: PF_POLICY unreadable: {exc}", MigError.POLICY) from None
        mac = probe.mac
        active = (VfState.NOT_RESET, VfState.DISABLED)  # these have no filter programmed
        others = {self.pf.mac} | {vf.mac for vf in self.pf.mailbox.vfs if vf.index != index and vf.state not in active}
        if len(mac) != 6 or mac[0] & 1 or not any(mac) or mac in others:
            raise MigrationError(f"VF {index}: PF_POLICY MAC {mac.hex(':')} refused", MigError.POLICY)
        words = switch.words if switch is not None else []
        if len(words) < 3 or regs.sw_mac_decode(words[1], words[2]) not in (mac, None):
            raise MigrationError(f"VF {index}: the SWITCH section's MAC is not the policy's", MigError.POLICY)
        if probe.admin_vlan is not None and not 0 < probe.admin_vlan < 4095:
            raise MigrationError(f"VF {index}: PF_POLICY VLAN {probe.admin_vlan} refused", MigError.POLICY)
        return policy

    async def apply_policy(self, index: int, policy: dict) -> None:
        """The destination takes over the VF's policy: VfInfo, then the switch and offload
        registers through the usual path (the same values the device loaded; the shadow follows)."""
        vf = self.pf.vf_info(index)
        apply_policy(vf, policy)
        await program_vf(self.pf, vf)
        await program_vf_offloads(self.pf, vf)

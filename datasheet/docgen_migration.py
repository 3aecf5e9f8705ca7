"""docs/migration.md: the VF migration engine, its states and the blob format, generated from
:mod:`datasheet.migration` and :mod:`datasheet.regs`, with the hand-written parts (the
quiescing rule, the orchestrator's algorithm) beside the tables."""

from __future__ import annotations

import struct

from datasheet import device, regs
from datasheet import migration as mig

INTRO = """\
A VF can be live-migrated: its device state saved on one NIC and loaded into a VF of another,
while the guest's memory is copied from host to host, with traffic running. The PF driver does
the device side as a Linux VFIO migration *variant driver* does (mlx5vf, hisi_acc_vfio_pci):
it offers userspace the VFIO v2 states of each VF and drives a per-VF migration engine in the
device through PF registers, moving the state blob by DMA. The IOMMU records the pages the
device writes (second-level A/D bits, [iommu.md](iommu.md#dirty-page-tracking-vt-d-3x-second-level-ad-bits)).
The VMM's part, the orchestrator, is `tb/lib/migration.py`; the test is `tb/tests/test_migration.py`."""

QUIESCE = """\
## Quiescing (what STOP means)

* **RUNNING_P2P**: the VF's TX is quiesced. No TX descriptor is fetched and no frame started;
  a frame whose buffers are being read is sent and written back. RX runs.
* **STOP**: RX too. The frame being written into the VF's buffers is finished and written back;
  frames waiting for buffers, and every frame the switch hands the VF while it is stopped, are
  dropped and counted in `STAT_RX_DROPS` (the `Delivery` event says `accepted=False`). Every
  MSI-X message the VF would send (a moderated interrupt falling due, a mailbox message from
  the PF) is held in its PBA and sent once the VF runs again, on whichever NIC that is.
* The SET_STATE command completes only once no DMA turn of the VF is running: from then on the
  VF issues no DMA and raises no interrupt. The PF driver's final read of `PF_MIG_STATUS`
  pushes any posted write of the VF ahead of it (PCIe ordering), so the IOMMU's dirty bits are
  complete when the VMM reads them.
* **Descriptors fetched but not completed are abandoned**, not saved: the ring's head is the
  resume point, and the device that loads the state fetches them again. A frame is never sent
  twice: a TX descriptor is completed (head moved) in the same turn as its frame is sent.
* An FLR or software reset of the VF ends any migration state: the VF is RUNNING again (its
  queues disabled by the reset)."""

LOAD = """\
## Loading

LOAD reads `PF_MIG_LEN` bytes at `PF_MIG_ADDR` and checks all of it before changing anything:
magic and lengths, format version, CRC-32, the compatibility record against this device,
then every section (the six device sections once each, in order, each of its exact length,
REGS naming exactly MIGRATED_REGS). Only then does it apply the state: the registers, each
ring at its saved geometry, head and tail (quiesced until RUNNING), the MSI-X vector controls
and PBA, the mailbox, and the VF's switch port and offload registers in the PF's BAR0. MSI-X
Message Address and Data are not loaded: they name the host's interrupt (its remapping entry,
the requester it validates), which each host programs for its own VF (VFIO_DEVICE_SET_IRQS).
The PF driver then applies its PF_POLICY section (MAC, VLAN, trust, spoof check, promiscuous
modes, offloads) to its own state and reprograms the VF's filters from it, the values the
device already loaded."""

ORCHESTRATOR = """\
## The orchestrator (`tb/lib/migration.py`)

Source and destination are two hosts in one simulation (`build_system(..., harness=False)`
builds the second): each has its own root complex, IOMMU, host memory, NIC and PF driver. (A
second root port on the same root complex would need the VF bus numbers and VF BAR space that
Linux reserves while scanning; cocotbext-pcie's scan does not, and `pci_iov_init` extends the
bridge window after it, which only works for one NIC per root complex.) Their uplinks meet in
a learning bridge with a host station behind it (`tb/lib/bridge.py`). The guest is the VF
driver; its memory is what its DMA API holds: the mappings of its IOMMU domain and the buffers
behind them. Guest CPU writes reach memory through `DmaBuffer`s, which the VMM logs (KVM's dirty
log); device writes are found by the IOMMU's dirty bits.

1. **Set-up.** The source VF enters PRE_COPY, the destination VF RESUMING; dirty tracking on
   the source domain and the CPU dirty log start.
2. **Pre-copy**, the guest running. Round 0 reproduces the guest's IOVA layout in the
   destination VF's domain (`DmaDevice.map_at`: the same IOVAs, the same permissions, memory
   of the destination host) and copies every page. Each later round, `round_ns` later, copies
   the pages dirtied since (`iommu_read_and_clear_dirty` and the CPU log), new mappings whole,
   and drops vanished ones. It stops when a round copied at most `converge_pages` pages. After
   `max_rounds` rounds that did not, the VMM gives up (`MigrationAborted`): the source VF goes
   back to RUNNING, the destination VF is reset, the guest never stopped.
3. **Stop-and-copy.** The guest is paused (its vCPUs: nothing more posted, NAPI polls run out);
   PRE_COPY_P2P, then STOP_COPY: the source quiesces and the PF saves the blob. The blob travels
   (`transfer`); the destination host allocates the VF's interrupt vectors, sets Bus Master
   Enable, and takes the blob: RESUMING -> STOP checks and loads it. If it is refused (a blob
   corrupted in transit), the source goes back to RUNNING and the guest resumes there.
4. **Switch-over**, with no simulated time in between: the last dirty pages are copied, every
   mapped page of the two sides is compared, the guest's buffers are moved onto the
   destination's memory (`DmaDevice.adopt`: its handles follow, as an EPT update does), the
   guest's interrupt handlers are bound to the destination VF's vectors, and its driver is told
   its device is now the destination VF (`VfDriver.vmm_resume`: no re-probe, rings and buffers
   at the same IOVAs, queue state, MAC and API kept).
5. **Resume.** The destination VF goes RUNNING (STOP -> RUNNING_P2P -> RUNNING; held interrupts
   are sent); the downtime ends. The guest resumes, the destination host announces the VF's MAC
   (a RARP from its uplink, as QEMU's `announce-self`) so the bridge learns where it is, and the
   source host reads what its stopped VF dropped since the save, then resets it (`PF_VFRTRIG`:
   its filters go when the PF serves the VFLR event).

`MigrationReport` gives the downtime (guest paused to destination RUNNING), the pre-copy rounds
and pages per round, the pages copied while stopped, the blob's size, the pages compared at
switch-over and how many differed, and the source's drops after the save.

What `tb/tests/test_migration.py` checks, on both fabrics, with four flows running (guest ->
peer VF on the source, peer -> guest, station -> guest through the uplink, guest -> station):
every frame the guest posted is received exactly once; every frame sent to the guest is
received once or counted dropped (the VF's `STAT_RX_DROPS`, which continues from the source,
plus the source's drops after the save); the guest's memory is identical at switch-over; the
VF's counters continue (`STAT_TX_PACKETS`/`STAT_RX_PACKETS` on the destination count every
frame since the guest opened the VF); a guest that keeps dirtying memory makes the VMM give up
and stays on the source; a blob tampered with in transit is refused and the guest stays."""


def _reg_rows() -> list[str]:
    out = ["| offset | register | access | fields | description |", "|---|---|---|---|---|"]
    for r in (
        regs.PF_MIG_ADDR_LO,
        regs.PF_MIG_ADDR_HI,
        regs.PF_MIG_LEN,
        regs.PF_MIG_CMD,
        regs.PF_MIG_STATUS,
        regs.PF_MIG_STATE,
    ):
        offset = f"`{r.offset:#07x}`" + (" + 4n" if r.count > 1 else "")
        fields = "<br>".join(f"`{f.name}` [{f.bits}]: {f.doc}" for f in r.fields)
        out.append(f"| {offset} | `{r.name}` | {r.access.value} | {fields} | {r.doc} |")
    return out


def render_migration() -> str:
    out = ["# VF live migration", "", "Tables generated by `make docs` from `datasheet/migration.py`; do not edit.", ""]
    out += [INTRO, "", "## The PF's migration engine (`PF_MIG_*`)", ""]
    out += _reg_rows()
    out += [
        "",
        "Write `PF_MIG_CMD` to start a command; `PF_MIG_STATUS.BUSY` is set until it completes with "
        "`DONE` or an `ERR`. A command written while one runs is ignored (and logged). A refused "
        "command changes nothing.",
        "",
        "| `OP` | name | what it does |",
        "|---|---|---|",
    ]
    out += [f"| {op.value} | `{op.name}` | {mig.OP_DOCS[op]} |" for op in mig.MigOp]
    out += ["", "### Device states and arcs (`PF_MIG_STATE[n]`, `SET_STATE`)", ""]
    out += ["| state | value | arcs to |", "|---|---|---|"]
    out += [
        f"| `{s.name}` | {s.value} | {', '.join(f'`{t.name}`' for t in sorted(mig.DEVICE_ARCS[s]))} |"
        for s in mig.MigState
    ]
    out += ["", "### Errors (`PF_MIG_STATUS.ERR`)", "", "| code | name | cause |", "|---|---|---|"]
    out += [f"| {e.value} | `{e.name}` | {mig.ERROR_DOCS[e]} |" for e in mig.MigError]
    out += ["", QUIESCE, "", "## The VFIO states the PF driver offers (`pf_driver/migration.py`)", ""]
    out += [
        "`PfDriver.vf_migration(n)` is VF n's state machine. `set_state` takes exactly one arc (an "
        "illegal one raises `MigrationError`, nothing changes); `set_state_path` walks several, as "
        "the VFIO core's `vfio_mig_get_next_state` does; `save_data` and `load_data` stand for "
        "reading and writing VFIO's data_fd in STOP_COPY and RESUMING.",
        "",
        "| VFIO state | value | device state | arcs to | the driver |",
        "|---|---|---|---|---|",
    ]
    for s in mig.VfioMigState:
        dev = mig.DEVICE_STATE.get(s)
        arcs = ", ".join(f"`{t.name}`" for t in sorted(mig.VFIO_ARCS[s])) or "none"
        out.append(f"| `{s.name}` | {s.value} | {f'`{dev.name}`' if dev else '-'} | {arcs} | {mig.VFIO_ACTIONS[s]} |")
    out += ["", "## The blob", "", _BLOB_TEXT, "", "### Header", "", "| offset | bytes | field | meaning |"]
    out += ["|---|---|---|---|"]
    offset = 0
    for name, fmt, doc in mig.HEADER_FIELDS:
        size = struct.calcsize("<" + fmt)
        out.append(f"| {offset} | {size} | `{name}` | {doc} |")
        offset += size
    out += [
        "",
        f"Format version {mig.FORMAT_VERSION[0]}.{mig.FORMAT_VERSION[1]}; the header is {mig.HEADER_SIZE} bytes; "
        f"LOAD accepts at most {device.MIG_BLOB_MAX} bytes.",
        "",
        "### Sections",
        "",
        f"Each section: type (2 bytes), flags (2 bytes; bit 0 `HOST` = {mig.SECTION_HOST}: written by "
        "the PF driver, skipped by the device), payload length (4 bytes), the payload, padded to 4 bytes.",
        "",
        "| type | name | dwords (this device) | contents |",
        "|---|---|---|---|",
    ]
    compat = mig.Compat()
    for kind in mig.SectionType:
        words = mig.section_words(kind, compat) if kind in mig.DEVICE_SECTIONS else "-"
        out.append(f"| `{kind.value:#04x}` | `{kind.name}` | {words} | {mig.SECTION_DOCS[kind]} |")
    out += [
        "",
        "MIGRATED_REGS: " + ", ".join(f"`{r.name}`" for r in mig.MIGRATED_REGS) + ".",
        "",
        "MBX_FLAGS (bit: meaning): " + ", ".join(f"{bit}: `{name}`" for name, bit in mig.MBX_FLAGS.items()) + ".",
        "",
        LOAD,
        "",
        ORCHESTRATOR,
        "",
    ]
    return "\n".join(out)


_BLOB_TEXT = (
    "Opaque above the PF driver, self-describing for it and the device: a versioned header with the "
    "compatibility record the loading device must match and a CRC-32 over everything, then typed "
    "sections. Multi-byte fields are little-endian."
)

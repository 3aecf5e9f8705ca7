"""The system an attacker VF lives in, and what the campaign records of it."""

from __future__ import annotations

import functools
import logging
import random
from dataclasses import dataclass, field

from iommu.dma import DmaBuffer
from iommu.events import MsiRequest, Translation
from model import events as ev
from tb.lib.system import System, build_system

NUM_VFS = 4
TOTAL_VFS = 8
RING_SIZE = 64
CANARY_PAGES = 4
PAGE = 4096


class Recorder:
    """Everything the model and the IOMMU publish that the invariants look at, in order."""

    KINDS = (ev.FunctionError, ev.QueueStopped, ev.Reset, ev.MailboxViolation, ev.Interrupt, ev.Writeback, ev.AerError)

    def __init__(self, system: System):
        self.events: list = []
        for kind in self.KINDS:
            system.nic.events.subscribe(kind, self.events.append)
        iommu = system.rc.iommu
        for kind in (Translation, MsiRequest):
            iommu.events.subscribe(kind, self.events.append)

    def mark(self) -> int:
        return len(self.events)

    def since(self, mark: int, kind: type, **match) -> list:
        return [
            e for e in self.events[mark:] if isinstance(e, kind) and all(getattr(e, k) == v for k, v in match.items())
        ]


class EscapedLog(logging.Handler):
    """ERROR records that carry an exception, from anything but the attacker's own driver."""

    def __init__(self, attacker_logger: str):
        super().__init__(logging.ERROR)
        self.attacker_logger = attacker_logger
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.name != self.attacker_logger:
            self.records.append(record)


@dataclass
class World:
    system: System
    attacker_index: int
    canaries: list[DmaBuffer]
    rec: Recorder
    rng: random.Random
    escaped: EscapedLog = field(init=False)

    def __post_init__(self):
        self.escaped = EscapedLog(self.attacker.log.name)
        logging.getLogger().addHandler(self.escaped)

    @property
    def attacker(self):
        return self.system.vfs[self.attacker_index]

    @property
    def victims(self) -> list:
        return [vf for i, vf in enumerate(self.system.vfs) if i != self.attacker_index]

    @property
    def attacker_rid(self) -> int:
        return int(self.attacker.pdev.pcie_id)

    @property
    def attacker_fn(self) -> int:
        return 1 + self.attacker.vf_index

    @property
    def attacker_domain(self):
        return self.system.iommu_driver.domain_of(self.attacker_rid)

    def canary_intact(self) -> bool:
        return all(buf.read() == pattern(i) for i, buf in enumerate(self.canaries))

    async def heal(self) -> None:
        """Give the attacker's VF to a fresh guest: the host resets the function, re-admits it to
        the PF's service, assigns a new domain and binds a new driver."""
        await self.system.pf.reset_vf(self.attacker_index)
        await self.system.rebind_vf(self.attacker_index, RING_SIZE)
        self.escaped.attacker_logger = self.attacker.log.name


async def open_vfs(system: System, num_vfs: int) -> None:
    """Enable ``num_vfs`` VFs, each in its own domain with an open net device."""
    for vf in await system.enable_vfs(num_vfs):
        system.attach_vf_domain(vf)
        await vf.open(RING_SIZE)


@functools.cache
def pattern(i: int) -> bytes:
    """The bytes of canary page ``i`` (made once: each episode writes and checks them)."""
    return bytes((i * 37 + k * 11) & 0xFF for k in range(PAGE))


async def build_world(dut, rng: random.Random) -> World:
    """IOMMU on, PF open, NUM_VFS VFs each in its own domain and open; one of them is the attacker."""
    system = await build_system(dut, total_vfs=TOTAL_VFS, iommu=True)
    await system.pf.open(RING_SIZE)
    await open_vfs(system, NUM_VFS)
    canaries = []
    for i in range(CANARY_PAGES):  # host memory no domain maps
        buf = system.pf_dma.alloc_buffer(PAGE)
        buf.write(0, pattern(i))
        canaries.append(buf)
    return World(system, rng.randrange(NUM_VFS), canaries, Recorder(system), rng)

"""Isolation below the device (docs/iommu.md): VT-d interrupt remapping, and ACS in the root
port so that every upstream request is translated before it is routed.

Each VF's MSI-X table holds remappable messages the host wrote; a guest may overwrite its own
entries, and a VF may write the interrupt window by DMA: none of that raises another
function's interrupt, and every blocked request is in the fault log.
"""

from __future__ import annotations

import cocotb
from cocotb.triggers import First, Timer
from cocotbext.pcie.core.tlp import Tlp, TlpType
from cocotbext.pcie.core.utils import PcieId

import pcicore
from datasheet import device, pci, regs
from iommu import IOMMU_READ, IOMMU_WRITE, FaultReason
from iommu.events import AcsViolation, MsiRequest
from iommu.vtd_format import IRTE_SIZE, MSI_ADDR_IF, remappable_msi
from tb.lib.system import build_system
from tb.tests.test_iommu_nic import expect_ur, settle

PAGE = 4096


async def system_with(dut, num_vfs=2):
    system = await build_system(dut, total_vfs=8, iommu=True)
    await system.enable_vfs(num_vfs)
    assert system.iommu_driver.irq_remapping
    return system


def entry(vector: int) -> int:
    return device.MSIX_TABLE_OFFSET + vector * pci.PCI_MSIX_ENTRY_SIZE


async def read_entry(vf, vector: int) -> tuple[int, int]:
    table = vf.pdev.bar_window[device.MSIX_BAR]
    lo = await table.read_dword(entry(vector) + pci.PCI_MSIX_ENTRY_LOWER_ADDR)
    hi = await table.read_dword(entry(vector) + pci.PCI_MSIX_ENTRY_UPPER_ADDR)
    return hi << 32 | lo, await table.read_dword(entry(vector) + pci.PCI_MSIX_ENTRY_DATA)


async def write_entry(vf, vector: int, addr: int, data: int) -> None:
    """What a hostile guest does to its own MSI-X table."""
    table = vf.pdev.bar_window[device.MSIX_BAR]
    await table.write_dword(entry(vector) + pci.PCI_MSIX_ENTRY_LOWER_ADDR, addr & 0xFFFFFFFF)
    await table.write_dword(entry(vector) + pci.PCI_MSIX_ENTRY_UPPER_ADDR, addr >> 32)
    await table.write_dword(entry(vector) + pci.PCI_MSIX_ENTRY_DATA, data)
    await table.read_dword(entry(vector))


def all_vectors(system):
    return [v for pdev in (system.pf_dev, *system.pf.virtfns) for v in pdev.msi_vectors]


async def nothing_raised(system, action) -> list:
    """Run ``action``; assert no host vector of any function fired; return the IOMMU faults it
    caused.  The system settles first: the interrupts of what came before (the last VF's
    mailbox ACK raising the PF's vector) are not the action's."""
    await Timer(5, "us")
    vectors = all_vectors(system)
    for v in vectors:
        v.event.clear()
    mark = len(system.rc.iommu.faults.records)
    await action()
    await Timer(5, "us")
    raised = [v.data for v in vectors if v.event.is_set()]
    assert not raised, f"host vectors {raised} were raised"
    return system.rc.iommu.faults.records[mark:]


@cocotb.test()
async def remapped_messages_reach_only_their_own_vector(dut):
    """The host wrote each VF's table in remappable format, one IRTE per vector owned by the VF's
    RID; signalling a vector raises exactly that VF's host vector."""
    system = await system_with(dut)
    seen = []
    system.rc.iommu.events.subscribe(MsiRequest, seen.append)
    for index, vf in enumerate(system.vfs):
        model_vf = system.nic.vfs[index].slice
        for number in (0, device.VF_MSIX_VECTORS - 1):
            addr, data = await read_entry(vf, number)
            assert addr & MSI_ADDR_IF and data == 0, "the host did not program a remappable message"
            vector = vf.pdev.msi_vectors[number]
            vector.event.clear()
            assert model_vf.msix.signal(number) == "sent"
            await First(vector.event.wait(), Timer(20, "us"))
            assert vector.event.is_set()
            assert (seen[-1].source_id, seen[-1].vector) == (int(vf.pdev.pcie_id), vector.data)
    assert system.rc.iommu.faults.total == 0


@cocotb.test()
async def forged_source_bad_index_missing_entry_and_compat_format_are_blocked(dut):
    """A guest points its own MSI-X entry at another VF's IRTE, at an index past the table, at an
    entry nobody allocated, or writes a compatibility-format message: each is blocked, raises
    nothing, and is logged with the right reason and the guest's RID."""
    system = await system_with(dut)
    attacker, victim = system.vfs
    attacker_rid = int(attacker.pdev.pcie_id)
    model = system.nic.vfs[0].slice
    window, _size = system.rc.iommu.interrupt_window
    entries = system.rc.iommu.interrupts.entries
    victim_addr, victim_data = await read_entry(victim, 2)
    cases = [
        ((victim_addr, victim_data), FaultReason.IR_SOURCE_ID),
        (remappable_msi(window, entries + 3), FaultReason.IR_INDEX_BEYOND),
        (remappable_msi(window, entries - 1), FaultReason.IR_NOT_PRESENT),
        ((window, victim.pdev.msi_vectors[2].data), FaultReason.IR_COMPAT_BLOCKED),
    ]
    for (addr, data), reason in cases:
        await write_entry(attacker, 5, addr, data)

        async def fire():
            assert model.msix.signal(5) == "sent"  # the device sends; the platform decides

        faults = await nothing_raised(system, fire)
        assert [(f.source_id, f.reason) for f in faults] == [(attacker_rid, reason)], faults


@cocotb.test()
async def dma_into_the_interrupt_window_raises_nothing(dut):
    """A VF's DMA writes into the interrupt window, with another function's vector in its data
    or its IRTE's address: nothing is raised anywhere, every attempt is a logged fault."""
    system = await system_with(dut)
    vf = system.nic.vfs[0]
    window, _size = system.rc.iommu.interrupt_window
    pf_addr, _ = await read_entry(system.vfs[1], 0)
    targets = [
        (window, system.pf_dev.msi_vectors[0].data.to_bytes(4, "little")),  # compatibility format
        (pf_addr, bytes(4)),  # another VF's IRTE
        (window + 0x40, bytes(range(64))),
    ]  # a burst
    for addr, data in targets:

        async def write(addr=addr, data=data):
            await vf.mem_write(addr, data)

        faults = await nothing_raised(system, write)
        assert len(faults) == 1 and faults[0].reason.is_interrupt and faults[0].source_id == int(vf.pcie_id)


@cocotb.test()
async def dma_to_the_remapping_table_is_blocked(dut):
    """The interrupt remapping table lives in host memory no VF domain maps: a VF's write to it
    faults and the table is unchanged."""
    system = await system_with(dut)
    system.attach_vf_domain(0)
    vf = system.nic.vfs[0]
    irt = system.iommu_driver.irt
    memory = system.rc.host_memory
    before = memory.read(irt, 64 * IRTE_SIZE)
    mark = len(system.rc.iommu.faults.records)
    await vf.mem_write(irt, b"\xff" * 64)
    await settle()
    assert memory.read(irt, 64 * IRTE_SIZE) == before
    (fault,) = system.rc.iommu.faults.records[mark:]
    assert fault.reason is FaultReason.SLPTE_NOT_PRESENT and fault.address == irt and fault.is_write


@cocotb.test()
async def dma_to_an_iova_equal_to_a_bar_address_is_translated(dut):
    """ACS in the root port: a VF's DMA to an IOVA that numerically matches the PF's BAR0 goes to
    the IOMMU instead of being routed (or dropped) as peer-to-peer: mapped, the data lands in the
    host page; unmapped, it faults. The PF's registers never see it."""
    system = await system_with(dut)
    dev = system.attach_vf_domain(0)
    vf = system.nic.vfs[0]
    iova = system.pf_dev.bar_addr[device.REG_BAR]
    buf = dev.alloc_buffer(PAGE)
    system.iommu_driver.iommu_map(dev.domain, iova, buf.phys, PAGE, IOMMU_READ | IOMMU_WRITE)
    scratch = await system.pf.read_reg(regs.SCRATCH)
    await vf.mem_write(iova + 0x18, b"\x5a" * 8)
    await settle()
    assert buf.read(0x18, 8) == b"\x5a" * 8
    assert await vf.mem_read(iova + 0x18, 8) == b"\x5a" * 8
    system.iommu_driver.iommu_unmap(dev.domain, iova, PAGE)
    mark = len(system.rc.iommu.faults.records)
    await vf.mem_write(iova + 0x18, b"\xa5" * 8)
    await settle()
    await expect_ur(vf, iova + 0x18, 8)
    assert [(f.address, f.is_write) for f in system.rc.iommu.faults.records[mark:]][:2] == [
        (iova + 0x18, True),
        (iova + 0x18, False),
    ]
    assert buf.read(0x18, 8) == b"\x5a" * 8 and await system.pf.read_reg(regs.SCRATCH) == scratch


@cocotb.test()
async def root_port_acs_capability_and_source_validation(dut):
    """The root port shows ACS with SV, RR, CR and UF enabled by the host; a request whose
    requester ID is not below the port is refused (UR for a read) and counted."""
    system = await system_with(dut, num_vfs=1)
    port = system.pf_dev.upstream_bridge()
    pos = await pcicore.find_ext_capability(port, pci.PCI_EXT_CAP_ID_ACS)
    assert pos is not None
    wanted = pci.PCI_ACS_SV | pci.PCI_ACS_RR | pci.PCI_ACS_CR | pci.PCI_ACS_UF
    assert await port.config_read_word(pos + pci.PCI_ACS_CAP) & wanted == wanted
    assert await port.config_read_word(pos + pci.PCI_ACS_CTRL) & wanted == wanted
    violations = []
    system.rc.iommu.events.subscribe(AcsViolation, violations.append)
    before = system.rc.host_memory.read(0x1000, 64)
    for kind in (TlpType.MEM_WRITE, TlpType.MEM_READ):
        forged = Tlp()
        forged.fmt_type = kind
        forged.requester_id = PcieId(0x42, 0, 0)  # not on the port's secondary side
        if kind is TlpType.MEM_WRITE:
            forged.set_addr_be_data(0x1000, b"\xee" * 64)
        else:
            forged.set_addr_be(0x1000, 64)
        await system.nic.device.upstream_send(forged)  # a device forging its requester ID
    await settle()
    assert [(v.requester_id, v.is_write) for v in violations] == [(0x4200, True), (0x4200, False)]
    assert system.root_port.acs_violations == 2
    assert system.rc.host_memory.read(0x1000, 64) == before

"""Interrupt remapping hardware and its driver side (VT-d §5.1, §9.10), without a simulator."""

import pytest

from iommu import BytearrayMemory, FaultReason, Iommu, IommuDriver, PageAllocator
from iommu.vtd_format import (
    IRTE_SIZE,
    MSI_ADDR_IF,
    SVT_BUS,
    SVT_NONE,
    SVT_RID,
    irte,
    remappable_index,
    remappable_msi,
)

WINDOW = 0x8000_0000
VF = 0x0101  # 01:00.1
OTHER = 0x0102


@pytest.fixture
def drv():
    memory = BytearrayMemory(1 << 22)
    iommu = Iommu(memory, interrupt_window=(WINDOW, 1 << 20))
    driver = IommuDriver(iommu, PageAllocator(memory, 0x1000, (1 << 22) - 0x1000))
    driver.enable_irq_remapping(entries=64)
    return driver


def request(drv, rid, addr, value=0):
    return drv.iommu.interrupts.remap(rid, addr, value)


def last_fault(drv):
    return drv.iommu.faults.records[-1]


def test_remappable_message_round_trips_and_the_owner_delivers(drv):
    ((addr, data),) = drv.msi_compose_msg(VF, [77])
    assert addr & MSI_ADDR_IF and WINDOW <= addr < WINDOW + (1 << 20) and data == 0
    assert remappable_index(addr, data) == 0
    assert request(drv, VF, addr, data) == 77
    assert drv.iommu.interrupts.remapped == 1 and drv.iommu.faults.total == 0
    assert drv.irte_owner(0) == VF
    big = remappable_msi(WINDOW, 0x9123)  # handle bit 15 lives in address bit 2
    assert remappable_index(*big) == 0x9123


def test_each_blocked_request_is_logged_with_its_reason(drv):
    ((addr, _),) = drv.msi_compose_msg(VF, [5])
    cases = [
        (OTHER, addr, 0, FaultReason.IR_SOURCE_ID, 0),  # not the IRTE's owner
        (VF, remappable_msi(WINDOW, 64)[0], 0, FaultReason.IR_INDEX_BEYOND, 64),  # past the table
        (VF, remappable_msi(WINDOW, 9)[0], 0, FaultReason.IR_NOT_PRESENT, 9),  # never allocated
        (VF, WINDOW, 5, FaultReason.IR_COMPAT_BLOCKED, 0),  # compatibility format
        (VF, addr, None, FaultReason.IR_REQUEST_RESERVED, 0),  # not one dword
        (VF, addr | 1, 0, FaultReason.IR_REQUEST_RESERVED, 0),  # reserved address bits
    ]
    for rid, a, value, reason, index in cases:
        assert request(drv, rid, a, value) is None, reason
        record = last_fault(drv)
        assert (record.source_id, record.reason, record.address, record.is_write) == (rid, reason, index, True)
        assert (
            record.fault_reason
            == {
                FaultReason.IR_REQUEST_RESERVED: 0x20,
                FaultReason.IR_INDEX_BEYOND: 0x21,
                FaultReason.IR_NOT_PRESENT: 0x22,
                FaultReason.IR_COMPAT_BLOCKED: 0x25,
                FaultReason.IR_SOURCE_ID: 0x26,
            }[reason]
        )
        assert "INTR-REMAP" in str(record)
    assert drv.iommu.interrupts.blocked == len(cases)


def test_source_validation_types_and_qualifiers(drv):
    table, memory = drv.irt, drv.memory
    addr = remappable_msi(WINDOW, 10)[0]
    memory.write(table + 10 * IRTE_SIZE, irte(42, VF, svt=SVT_NONE))
    assert request(drv, 0x0777, addr) == 42  # no validation
    memory.write(table + 10 * IRTE_SIZE, irte(42, 0x0108, sq=0b11, svt=SVT_RID))
    assert request(drv, 0x010F, addr) == 42 and request(drv, 0x0110, addr) is None  # function bits ignored
    memory.write(table + 10 * IRTE_SIZE, irte(42, 0x0203, svt=SVT_BUS))  # buses 2..3
    assert request(drv, 0x0301, addr) == 42 and request(drv, 0x0401, addr) is None
    memory.write(table + 10 * IRTE_SIZE, irte(42, VF, svt=0b11))  # reserved SVT
    assert request(drv, VF, addr) is None


def test_reserved_bits_and_fault_processing_disable(drv):
    table, memory = drv.irt, drv.memory
    addr = remappable_msi(WINDOW, 11)[0]
    raw = bytearray(irte(42, VF))
    raw[3] = 0xFF  # bits 31:24 reserved
    memory.write(table + 11 * IRTE_SIZE, bytes(raw))
    assert request(drv, VF, addr) is None and last_fault(drv).reason is FaultReason.IR_ENTRY_RESERVED
    logged = len(drv.iommu.faults.records)
    memory.write(table + 11 * IRTE_SIZE, irte(42, OTHER, fpd=True))
    assert request(drv, VF, addr) is None  # blocked, not logged
    assert len(drv.iommu.faults.records) == logged and drv.iommu.faults.suppressed == 1


def test_compatibility_format_passes_only_when_allowed(drv):
    assert request(drv, VF, WINDOW, 33) is None
    assert last_fault(drv).reason is FaultReason.IR_COMPAT_BLOCKED
    drv.enable_irq_remapping(entries=64, allow_compat=True)  # GCMD.CFI
    assert request(drv, VF, WINDOW, 33) == 33


def test_table_size_is_validated_and_the_table_fills_up(drv):
    with pytest.raises(ValueError):
        drv.enable_irq_remapping(entries=100)
    drv.alloc_irte(VF, list(range(64)))
    with pytest.raises(MemoryError):
        drv.alloc_irte(VF, [1])

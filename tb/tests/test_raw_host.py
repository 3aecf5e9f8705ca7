"""Bring your own driver: a system enumerated and resourced by the host PCI core with no
driver bound, VF Enable done by the test, raw requests that return completion status, and
MSI-X vectors allocated and waited on (``build_system(bind_drivers=False)``, ``pcicore``)."""

from __future__ import annotations

import cocotb
from cocotb.triggers import Event, Timer, with_timeout
from cocotbext.pcie.core.utils import PcieId

import pcicore
from datasheet import descriptors as d
from datasheet import device, pci, regs
from pcicore.raw import CplStatus, config_read, config_write, mem_read
from tb.lib.system import build_system

MBX = regs.PF_MAILBOX.masks


def word(completion) -> int:
    return int.from_bytes(completion.data, "little")


@cocotb.test()
async def enumerated_and_resourced_with_no_driver_bound(dut):
    """No PF driver: the host still sized and placed the VF BARs and reserved the VF bus range,
    VF Enable is off until the test sets it through pcicore."""
    system = await build_system(dut, total_vfs=8, bind_drivers=False)
    assert system.pf is None
    pf = system.pf_dev
    sriov = pcicore.pci_iov(pf).state
    assert sriov.total_vfs == 8 and sriov.num_vfs == 0
    assert sriov.bar_base[device.REG_BAR] and sriov.bar_base[device.MSIX_BAR]
    pos = sriov.pos
    ctrl = await pf.config_read_word(pos + pci.PCI_SRIOV_CTRL)
    assert not ctrl & pci.PCI_SRIOV_CTRL_VFE and ctrl & pci.PCI_SRIOV_CTRL_ARI
    bar_lo = await pf.config_read_dword(pos + pci.PCI_SRIOV_BAR + 4 * device.REG_BAR)
    assert bar_lo & pci.PCI_BASE_ADDRESS_MEM_MASK == sriov.bar_base[device.REG_BAR] & 0xFFFFFFF0
    vfs = await pcicore.pci_enable_sriov(pf, 3)
    assert pcicore.pci_num_vf(pf) == 3 and [vf.device_id for vf in vfs] == [device.VF_DEVICE_ID] * 3
    assert [int(vf.pcie_id) for vf in vfs] == [pcicore.pci_iov(pf).vf_rid(n) for n in range(3)]
    await pcicore.pci_disable_sriov(pf)
    assert pcicore.pci_num_vf(pf) == 0


@cocotb.test()
async def raw_config_requests_tell_ur_from_a_vfs_all_ones(dut):
    """A VF's Vendor ID reads 0xFFFF with Successful Completion; a VF that is not enabled
    answers Unsupported Request: the raw helpers tell them apart, cocotbext's reads cannot."""
    system = await build_system(dut, total_vfs=8, bind_drivers=False)
    rc, pf = system.rc, system.pf_dev
    vfs = await pcicore.pci_enable_sriov(pf, 2)
    sc = await config_read(rc, vfs[0].pcie_id, pci.PCI_VENDOR_ID, 2)
    assert sc.status is CplStatus.SC and word(sc) == 0xFFFF
    disabled_vf = pcicore.pci_iov(pf).vf_rid(5)
    ur = await config_read(rc, disabled_vf, pci.PCI_VENDOR_ID, 2)
    assert ur.status is CplStatus.UR and ur.data == b""
    # cocotbext's own read gives the same bytes for both
    assert await rc.config_read(PcieId.from_int(disabled_vf), pci.PCI_VENDOR_ID, 2) == b"\xff\xff"
    assert await rc.config_read(vfs[0].pcie_id, pci.PCI_VENDOR_ID, 2) == b"\xff\xff"
    ok = await config_read(rc, pf.pcie_id, pci.PCI_VENDOR_ID, 2)
    assert ok.ok and word(ok) == device.VENDOR_ID
    assert (await config_write(rc, disabled_vf, pci.PCI_COMMAND, b"\x06\x00")).status is CplStatus.UR
    assert (await config_write(rc, vfs[1].pcie_id, pci.PCI_COMMAND, b"\x06\x00")).ok


@cocotb.test()
async def raw_memory_reads_report_ur_when_vf_mse_is_clear(dut):
    """A VF's BAR0 answers with data while VF MSE is set and with UR once it is cleared."""
    system = await build_system(dut, total_vfs=8, bind_drivers=False)
    rc, pf = system.rc, system.pf_dev
    vfs = await pcicore.pci_enable_sriov(pf, 1)
    bar0 = vfs[0].bar_addr[device.REG_BAR]
    nic_id = await mem_read(rc, bar0 + regs.NIC_ID.offset, 4)
    assert nic_id.ok and word(nic_id) == device.NIC_ID_MAGIC
    pos = pcicore.pci_iov(pf).state.pos
    ctrl = await pf.config_read_word(pos + pci.PCI_SRIOV_CTRL)
    await pf.config_write_word(pos + pci.PCI_SRIOV_CTRL, ctrl & ~pci.PCI_SRIOV_CTRL_MSE)
    refused = await mem_read(rc, bar0 + regs.NIC_ID.offset, 4)
    assert refused.status is CplStatus.UR, refused


@cocotb.test()
async def msix_vectors_allocated_and_waited_for(dut):
    """The test plays the PF driver: it posts a mailbox message to VF 0, which raises the VF's
    mailbox vector (VF_MBX_VECTOR) and no other; ``wait_for_irq`` sees exactly that."""
    system = await build_system(dut, total_vfs=8, bind_drivers=False)
    pf = system.pf_dev
    await pf.enable_device()
    vfs = await pcicore.pci_enable_sriov(pf, 2)
    vf = vfs[0]
    await vf.set_master()
    assert await pcicore.pci_alloc_irq_vectors(vf, 1, device.VF_MSIX_VECTORS) == device.VF_MSIX_VECTORS
    fired = []
    handled = Event()

    async def handler():
        fired.append(device.VF_MBX_VECTOR)
        handled.set()

    pcicore.request_irq(vf, device.VF_MBX_VECTOR, handler)
    bar0 = pf.bar_window[device.REG_BAR]
    await bar0.write_dword(regs.PF_MAILBOX.at(0), MBX["PFU"])
    assert await bar0.read_dword(regs.PF_MAILBOX.at(0)) & MBX["PFU"]
    await bar0.write_dword(regs.PF_MBMEM.at(0), 0x1234)
    await bar0.write_dword(regs.PF_MAILBOX.at(0), MBX["STS"])
    assert await pcicore.wait_for_irq(vf, device.VF_MBX_VECTOR, timeout_ns=100_000)
    await with_timeout(handled.wait(), 1, "us")  # the handler runs as its own task, as a hard IRQ would
    assert fired == [device.VF_MBX_VECTOR]
    assert not await pcicore.wait_for_irq(vf, device.VF_MBX_VECTOR + 1, timeout_ns=20_000)
    assert not await pcicore.wait_for_irq(vf, device.VF_MBX_VECTOR, timeout_ns=20_000)  # once per message


@cocotb.test()
async def a_device_write_naming_no_vector_is_counted_not_asserted(dut):
    """Without an IOMMU a VF can point an RX buffer at the MSI window; the frame it receives
    there names no vector: the root complex counts it (msi_bogus) and the simulation goes on."""
    system = await build_system(dut, total_vfs=4)
    (vf,) = await system.enable_vfs(1)
    await vf.open(ring_size=device.RING_MIN_DESCS)
    window, _size = system.rc.iommu.interrupt_window
    ring, ring_iova = vf.dma.dma_alloc_coherent(device.RING_MIN_DESCS * d.DESC_SIZE)
    ring.write(0, d.rx_desc(window, 2048))
    await vf.write_reg(regs.RXDCTL, 0, 1)
    await vf.write_reg(regs.RDBAL, ring_iova & 0xFFFFFFFF, 1)
    await vf.write_reg(regs.RDBAH, ring_iova >> 32, 1)
    await vf.write_reg(regs.RDLEN, device.RING_MIN_DESCS, 1)
    await vf.write_reg(regs.RXDCTL, regs.RXDCTL.field("ENABLE").mask, 1)
    await vf.write_reg(regs.RDT, 1, 1)
    bar0 = system.pf_dev.bar_window[device.REG_BAR]
    defq = regs.SW_FN_CTRL.field("DEFQ")
    port = device.vf_port(vf.vf_index)
    await bar0.write_dword(regs.SW_FN_CTRL.at(port), defq.put(await bar0.read_dword(regs.SW_FN_CTRL.at(port)), 1))
    before = system.rc.msi_bogus
    assert await system.nic.uplink.send(vf.mac + bytes.fromhex("020000000001") + b"\x88\xb5" + bytes(50))
    await Timer(50, "us")
    assert system.rc.msi_bogus > before
    assert await vf.read_reg(regs.NIC_ID) == device.NIC_ID_MAGIC  # the system still runs

"""Capability encoders and the register file, exercised without a simulator."""

import logging

import pytest
from conftest import run_sync

from datasheet import device, pci, regs
from model.core.regfile import RegisterFile
from model.pcie.caps import AriExtendedCapability, SriovExtendedCapability

LOG = logging.getLogger("test")


class Owner:
    def __init__(self):
        self.events = []

    async def sriov_vf_enable(self, n):
        self.events.append(("enable", n))

    async def sriov_vf_disable(self):
        self.events.append(("disable",))


def make_sriov(total=64):
    owner = Owner()
    cap = SriovExtendedCapability(owner, total, {0: device.VF_REG_BAR_SIZE, 2: device.VF_MSIX_BAR_SIZE}, LOG)
    return cap, owner


def rd(cap, off):
    return run_sync(cap.read_register(off // 4))


def wr(cap, off, value, mask=0xF):
    run_sync(cap.write_register(off // 4, value << (8 * (off % 4)), mask))


def test_sriov_header_and_reset_values():
    cap, _ = make_sriov(64)
    cap.next_cap = 0x200 // 4 * 4
    hdr = rd(cap, 0)
    assert hdr & 0xFFFF == pci.PCI_EXT_CAP_ID_SRIOV and (hdr >> 16) & 0xF == 1
    assert rd(cap, pci.PCI_SRIOV_INITIAL_VF) == 64 | 64 << 16
    assert rd(cap, pci.PCI_SRIOV_NUM_VF) == 0
    assert rd(cap, pci.PCI_SRIOV_VF_OFFSET) == device.FIRST_VF_OFFSET_NO_ARI | device.VF_STRIDE_NO_ARI << 16
    assert rd(cap, pci.PCI_SRIOV_VF_DID - 2) >> 16 == device.VF_DEVICE_ID
    assert rd(cap, pci.PCI_SRIOV_SUP_PGSIZE) == device.SUPPORTED_PAGE_SIZES
    assert rd(cap, pci.PCI_SRIOV_SYS_PGSIZE) == 1
    assert rd(cap, pci.PCI_SRIOV_VFM) == 0


def test_sriov_rejects_total_vfs_out_of_range():
    with pytest.raises(ValueError):
        make_sriov(device.MAX_TOTAL_VFS + 1)
    make_sriov(device.MAX_TOTAL_VFS)


def test_vf_bar_sizing_64bit_pair_and_page_size():
    cap, _ = make_sriov()
    bar0 = pci.PCI_SRIOV_BAR
    wr(cap, bar0, 0xFFFFFFFF)
    wr(cap, bar0 + 4, 0xFFFFFFFF)
    lo, hi = rd(cap, bar0), rd(cap, bar0 + 4)
    assert lo & 0xF == pci.PCI_BASE_ADDRESS_MEM_TYPE_64
    size = ((~((hi << 32) | (lo & ~0xF))) & 0xFFFFFFFFFFFFFFFF) + 1
    assert size == device.VF_REG_BAR_SIZE
    assert rd(cap, pci.PCI_SRIOV_BAR + 16) == 0  # VF BAR4 unimplemented
    wr(cap, pci.PCI_SRIOV_SYS_PGSIZE, 0x40)  # 256K pages
    wr(cap, bar0, 0xFFFFFFFF)
    assert (~(rd(cap, bar0) & ~0xF) & 0xFFFFFFFF) + 1 == 256 * 1024
    wr(cap, bar0, 0x12340000)
    wr(cap, bar0 + 4, 0x1)
    assert cap.vf_bar_base(0) == 0x1_1234_0000 & ~(256 * 1024 - 1)


def test_vf_enable_ari_and_bad_writes():
    cap, owner = make_sriov(8)
    wr(cap, pci.PCI_SRIOV_CTRL, pci.PCI_SRIOV_CTRL_ARI, 0x3)
    assert rd(cap, pci.PCI_SRIOV_VF_OFFSET) == device.FIRST_VF_OFFSET_ARI | device.VF_STRIDE_ARI << 16
    wr(cap, pci.PCI_SRIOV_NUM_VF, 9, 0x3)
    wr(cap, pci.PCI_SRIOV_CTRL, pci.PCI_SRIOV_CTRL_VFE | pci.PCI_SRIOV_CTRL_ARI, 0x3)
    assert owner.events == [] and not cap.vf_enable and cap.rejected_writes == 1
    wr(cap, pci.PCI_SRIOV_NUM_VF, 3, 0x3)
    wr(cap, pci.PCI_SRIOV_CTRL, pci.PCI_SRIOV_CTRL_VFE | pci.PCI_SRIOV_CTRL_MSE | pci.PCI_SRIOV_CTRL_ARI, 0x3)
    assert owner.events == [("enable", 3)]
    wr(cap, pci.PCI_SRIOV_NUM_VF, 5, 0x3)  # ignored while enabled
    wr(cap, pci.PCI_SRIOV_SYS_PGSIZE, 0x10)  # ignored while enabled
    wr(cap, pci.PCI_SRIOV_CTRL, pci.PCI_SRIOV_CTRL_VFE | pci.PCI_SRIOV_CTRL_MSE, 0x3)  # ARI change ignored
    assert cap.num_vfs == 3 and cap.system_page_size == 1 and cap.ari_capable_hierarchy
    assert cap.rejected_writes == 4
    assert rd(cap, pci.PCI_SRIOV_CTRL) & 0xFFFF == (
        pci.PCI_SRIOV_CTRL_VFE | pci.PCI_SRIOV_CTRL_MSE | pci.PCI_SRIOV_CTRL_ARI
    )
    wr(cap, pci.PCI_SRIOV_CTRL, 0, 0x3)
    assert owner.events[-1] == ("disable",)
    # VF Migration Enable is hardwired 0 (not migration capable); TotalVFs is RO
    wr(cap, pci.PCI_SRIOV_CTRL, pci.PCI_SRIOV_CTRL_VFM, 0x3)
    assert not rd(cap, pci.PCI_SRIOV_CTRL) & pci.PCI_SRIOV_CTRL_VFM
    wr(cap, pci.PCI_SRIOV_INITIAL_VF, 0xFFFFFFFF)
    assert rd(cap, pci.PCI_SRIOV_INITIAL_VF) == 8 | 8 << 16


def test_ari_capability_encoding():
    cap = AriExtendedCapability(next_function_number=5)
    val = rd(cap, pci.PCI_ARI_CAP)
    assert (val >> pci.PCI_ARI_CAP_NFN_SHIFT) & 0xFF == 5
    assert val & (pci.PCI_ARI_CAP_MFVC | pci.PCI_ARI_CAP_ACS) == 0
    wr(cap, pci.PCI_ARI_CAP, 0xFFFF0000)  # control bits RO 0 without function groups
    assert rd(cap, pci.PCI_ARI_CAP) >> 16 == 0
    assert rd(cap, 0) & 0xFFFF == pci.PCI_EXT_CAP_ID_ARI


def test_register_file_access_rules():
    rf = RegisterFile(regs.registers_for(is_vf=False), LOG)
    assert rf.read(regs.NIC_ID.offset, 4) == device.NIC_ID_MAGIC.to_bytes(4, "little")
    rf.write(regs.SCRATCH.offset + 1, b"\xaa")  # byte write merges
    assert rf.get(regs.SCRATCH) == 0x0000AA00
    rf.write(regs.NIC_ID.offset, b"\0\0\0\0")
    assert rf.get(regs.NIC_ID) == device.NIC_ID_MAGIC
    assert regs.ERR_STATUS.field("RO_WRITE").get(rf.get(regs.ERR_STATUS))
    assert rf.read(0x3FC, 4) == bytes(4)
    rf.write(0x3FC, b"\1\2\3\4")
    assert rf.get(regs.ERR_UNIMPL_COUNT) == 2 and rf.get(regs.ERR_LAST_OFFSET) == 0x3FC
    rf.write(regs.ERR_STATUS.offset, (1).to_bytes(4, "little"))  # W1C clears UNIMPL only
    assert rf.get(regs.ERR_STATUS) == regs.ERR_STATUS.field("RO_WRITE").mask
    seen = []
    rf.on_write(regs.CTRL, lambda old, new: seen.append((old, new)))
    rf.write(regs.CTRL.offset, (0xFFFFFFFF).to_bytes(4, "little"))
    assert seen == [(0, regs.CTRL.write_mask)]


def test_a_write_cannot_clear_its_own_error():
    """One write over SCRATCH, the read-only FN_ERROR and ERR_STATUS (all ones: W1C) still
    leaves RO_WRITE set (found by the hostile-VF campaign, seed 32: an 8-byte write at 0x1b)."""
    rf = RegisterFile(regs.registers_for(is_vf=True), LOG)
    assert (regs.FN_ERROR.offset, regs.ERR_STATUS.offset) == (regs.SCRATCH.offset + 4, regs.SCRATCH.offset + 8)
    rf.write(regs.SCRATCH.offset + 3, b"\xff" * 8)
    assert rf.get(regs.ERR_STATUS) == regs.ERR_STATUS.field("RO_WRITE").mask
    assert rf.get(regs.ERR_LAST_OFFSET) == regs.FN_ERROR.offset

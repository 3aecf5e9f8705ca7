"""Bad configuration input gets the spec's (or the datasheet's stated) outcome, never a crash.

Also: MSI-X table/PBA semantics, FLR of one VF, PF FLR taking the VFs with it.
"""

import logging

import cocotb
from cocotb.triggers import Timer
from cocotbext.pcie.core.tlp import CplStatus

import pcicore
from datasheet import device, pci, regs
from tb.lib.checks import config_dword_at, mem_read_status
from tb.lib.system import build_system


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def capture(logger_name="cocotb.pcie"):
    handler = _Records()
    logging.getLogger(logger_name).addHandler(handler)
    return handler


async def sriov_pos(sys_):
    return await pcicore.find_ext_capability(sys_.pf_dev, pci.PCI_EXT_CAP_ID_SRIOV)


@cocotb.test()
async def numvfs_above_totalvfs_refuses_enable(dut):
    """NumVFs > TotalVFs: VF Enable reads back 0 and no VF answers."""
    sys_ = await build_system(dut, total_vfs=8)
    pf, sr = sys_.pf_dev, await sriov_pos(sys_)
    await pf.config_write_word(sr + pci.PCI_SRIOV_NUM_VF, 9)
    ctrl = await pf.config_read_word(sr + pci.PCI_SRIOV_CTRL)
    await pf.config_write_word(sr + pci.PCI_SRIOV_CTRL, ctrl | pci.PCI_SRIOV_CTRL_VFE | pci.PCI_SRIOV_CTRL_MSE)
    assert not await pf.config_read_word(sr + pci.PCI_SRIOV_CTRL) & pci.PCI_SRIOV_CTRL_VFE
    assert await config_dword_at(sys_.rc, sys_.pf.sriov.vf_rid(0), 0) == 0xFFFFFFFF
    assert sys_.nic.pf.sriov_cap.rejected_writes == 1
    # the driver path refuses before touching the device
    try:
        await sys_.pf.sriov_configure(9)
    except pcicore.PciError as exc:
        assert "TotalVFs is 8" in str(exc)
    else:
        raise AssertionError("sriov_configure(9) with TotalVFs 8 succeeded")


@cocotb.test()
async def numvfs_write_while_enabled_ignored(dut):
    """NumVFs written with VF Enable set is ignored: register and VF population unchanged."""
    sys_ = await build_system(dut, total_vfs=16)
    vfs = await sys_.enable_vfs(4)
    pf, sr = sys_.pf_dev, await sriov_pos(sys_)
    await pf.config_write_word(sr + pci.PCI_SRIOV_NUM_VF, 12)
    assert await pf.config_read_word(sr + pci.PCI_SRIOV_NUM_VF) == 4
    assert await config_dword_at(sys_.rc, sys_.pf.sriov.vf_rid(4), 0) == 0xFFFFFFFF
    assert await vfs[3].read_reg(regs.NIC_ID) == device.NIC_ID_MAGIC


@cocotb.test()
async def system_page_size_rules(dut):
    """Unsupported or multi-bit System Page Size is ignored; a supported one resizes VF BARs."""
    sys_ = await build_system(dut, total_vfs=4)
    pf, sr = sys_.pf_dev, await sriov_pos(sys_)
    reg = sr + pci.PCI_SRIOV_SYS_PGSIZE
    for bad in (0x4, 0x3, 0x0, 0x800):  # 16K unsupported, two bits, none, 8M unsupported
        await pf.config_write_dword(reg, bad)
        assert await pf.config_read_dword(reg) == 0x1, f"System Page Size took {bad:#x}"
    await pf.config_write_dword(reg, 0x10)  # 64K, supported
    assert await pf.config_read_dword(reg) == 0x10
    bar0 = sr + pci.PCI_SRIOV_BAR
    await pf.config_write_dword(bar0, 0xFFFFFFFF)
    assert (~(await pf.config_read_dword(bar0) & ~0xF) & 0xFFFFFFFF) + 1 == 64 * 1024
    # while VF Enable is set, the page size cannot change
    await pf.config_write_dword(reg, 0x1)
    await sys_.pf.sriov.init()  # re-run the driver's init: back to 4K, BARs re-placed
    await sys_.enable_vfs(2)
    await pf.config_write_dword(reg, 0x10)
    assert await pf.config_read_dword(reg) == 0x1


@cocotb.test()
async def vf_bar_with_vf_mse_clear_is_unsupported_request(dut):
    """VF BAR reads with VF MSE clear complete with UR; writes are dropped."""
    sys_ = await build_system(dut, total_vfs=4)
    vfs = await sys_.enable_vfs(2)
    await vfs[1].write_reg(regs.SCRATCH, 0x1234ABCD)
    pf, sr = sys_.pf_dev, await sriov_pos(sys_)
    addr = vfs[1].pdev.bar_addr[device.REG_BAR] + regs.SCRATCH.offset
    assert await mem_read_status(sys_.rc, addr) == CplStatus.SC
    ctrl = await pf.config_read_word(sr + pci.PCI_SRIOV_CTRL)
    await pf.config_write_word(sr + pci.PCI_SRIOV_CTRL, ctrl & ~pci.PCI_SRIOV_CTRL_MSE)
    assert await mem_read_status(sys_.rc, addr) == CplStatus.UR
    await sys_.rc.mem_write_dword(addr, 0xDEADBEEF)  # posted: silently dropped
    await Timer(1, "us")
    await pf.config_write_word(sr + pci.PCI_SRIOV_CTRL, ctrl)
    assert await vfs[1].read_reg(regs.SCRATCH) == 0x1234ABCD


@cocotb.test()
async def pf_bar_with_mse_clear_is_unsupported_request(dut):
    """The PF's own BARs decode only with Command.Memory Space Enable."""
    sys_ = await build_system(dut, total_vfs=4)
    pf = sys_.pf_dev
    addr = pf.bar_addr[device.REG_BAR]
    cmd = await pf.config_read_word(pci.PCI_COMMAND)
    await pf.config_write_word(pci.PCI_COMMAND, cmd & ~pci.PCI_COMMAND_MEMORY)
    assert await mem_read_status(sys_.rc, addr) == CplStatus.UR
    await pf.config_write_word(pci.PCI_COMMAND, cmd)
    assert await mem_read_status(sys_.rc, addr) == CplStatus.SC


@cocotb.test()
async def unimplemented_registers_read_zero_and_log(dut):
    """Config and BAR0 offsets that implement nothing read 0, ignore writes, and are logged/counted."""
    sys_ = await build_system(dut, total_vfs=4)
    vfs = await sys_.enable_vfs(1)
    log = capture()
    for pdev in (sys_.pf_dev, vfs[0].pdev):
        for off in (0xA0, 0xF00):  # gap after the capability list, past the ext caps
            await pdev.config_write_dword(off, 0xFFFFFFFF)
            assert await pdev.config_read_dword(off) == 0, f"{pdev.pcie_id} config {off:#x}"
    assert sum("unimplemented register 0x0a0" in m for m in log.messages) == 2
    assert sum("unimplemented register 0xf00" in m for m in log.messages) == 2

    for drv in (sys_.pf, vfs[0]):
        bad = 0x0FF0
        assert await drv.bar0.read_dword(bad) == 0
        await drv.bar0.write_dword(bad, 0x5A5A5A5A)
        assert await drv.bar0.read_dword(bad) == 0
        assert await drv.read_reg(regs.ERR_UNIMPL_COUNT) == 3
        assert await drv.read_reg(regs.ERR_LAST_OFFSET) == bad
        status = await drv.read_reg(regs.ERR_STATUS)
        assert regs.ERR_STATUS.field("UNIMPL").get(status) == 1
        await drv.write_reg(regs.NIC_ID, 0)  # read-only: ignored and flagged
        assert await drv.read_reg(regs.NIC_ID) == device.NIC_ID_MAGIC
        status = await drv.read_reg(regs.ERR_STATUS)
        assert regs.ERR_STATUS.field("RO_WRITE").get(status) == 1
        await drv.write_reg(regs.ERR_STATUS, status)  # W1C
        assert await drv.read_reg(regs.ERR_STATUS) == 0
    # a PF-only register is unimplemented in a VF's BAR0
    assert await vfs[0].bar0.read_dword(regs.PF_NUM_VFS.offset) == 0
    assert await sys_.pf.read_reg(regs.PF_NUM_VFS) == 1


@cocotb.test()
async def vf_flr_resets_only_that_vf(dut):
    """FLR of VF0 clears its registers, bus mastering and MSI-X; VF1 is untouched."""
    sys_ = await build_system(dut, total_vfs=4)
    vfs = await sys_.enable_vfs(2)
    for vf in vfs:
        await vf.write_reg(regs.SCRATCH, 0xC0DE0000 | vf.vf_index)
    await pcicore.pcie_flr(vfs[0].pdev)
    assert await vfs[0].read_reg(regs.SCRATCH) == 0
    assert not await vfs[0].pdev.config_read_word(pci.PCI_COMMAND) & pci.PCI_COMMAND_MASTER
    msix = await pcicore.find_capability(vfs[0].pdev, pci.PCI_CAP_ID_MSIX)
    assert not await vfs[0].pdev.config_read_word(msix + pci.PCI_MSIX_FLAGS) & pci.PCI_MSIX_FLAGS_ENABLE
    assert await vfs[1].read_reg(regs.SCRATCH) == 0xC0DE0001
    assert await vfs[1].pdev.config_read_word(pci.PCI_COMMAND) & pci.PCI_COMMAND_MASTER
    assert await vfs[0].read_reg(regs.FUNC_INFO) == regs.FUNC_INFO.field("IS_VF").put(0, 1)


@cocotb.test()
async def pf_flr_removes_vfs(dut):
    """PF FLR clears VF Enable: every VF vanishes, SR-IOV control returns to its reset value."""
    sys_ = await build_system(dut, total_vfs=4)
    await sys_.enable_vfs(4)
    rid0 = sys_.pf.sriov.vf_rid(0)
    await pcicore.pcie_flr(sys_.pf_dev)
    sr = await sriov_pos(sys_)
    assert await sys_.pf_dev.config_read_word(sr + pci.PCI_SRIOV_CTRL) == 0
    assert await sys_.pf_dev.config_read_word(sr + pci.PCI_SRIOV_NUM_VF) == 0
    assert await config_dword_at(sys_.rc, rid0, 0) == 0xFFFFFFFF
    assert not await sys_.pf_dev.config_read_word(pci.PCI_COMMAND) & pci.PCI_COMMAND_MEMORY


@cocotb.test()
async def msix_masking_and_pending(dut):
    """A masked vector sets its PBA bit and fires on unmask; function mask holds all vectors."""
    sys_ = await build_system(dut, total_vfs=4)
    vfs = await sys_.enable_vfs(1)
    vf, model_vf = vfs[0], sys_.nic.vfs[0].slice
    table = vf.pdev.bar_window[device.MSIX_BAR]
    vec = vf.pdev.msi_vectors[3]
    ctrl_off = device.MSIX_TABLE_OFFSET + 3 * pci.PCI_MSIX_ENTRY_SIZE + pci.PCI_MSIX_ENTRY_VECTOR_CTRL
    vec.event.clear()
    assert model_vf.msix.signal(3) == "sent"
    await vec.event.wait()
    await table.write_dword(ctrl_off, pci.PCI_MSIX_ENTRY_CTRL_MASKBIT)
    assert await table.read_dword(ctrl_off) == pci.PCI_MSIX_ENTRY_CTRL_MASKBIT  # flushes the write
    vec.event.clear()
    assert model_vf.msix.signal(3) == "held"
    assert await table.read_dword(device.MSIX_PBA_OFFSET) == 1 << 3
    await table.write_dword(ctrl_off, 0)
    await vec.event.wait()
    assert await table.read_dword(device.MSIX_PBA_OFFSET) == 0
    # function mask
    msix = await pcicore.find_capability(vf.pdev, pci.PCI_CAP_ID_MSIX)
    flags = await vf.pdev.config_read_word(msix + pci.PCI_MSIX_FLAGS)
    await vf.pdev.config_write_word(msix + pci.PCI_MSIX_FLAGS, flags | pci.PCI_MSIX_FLAGS_MASKALL)
    vec.event.clear()
    assert model_vf.msix.signal(3) == "held"
    await vf.pdev.config_write_word(msix + pci.PCI_MSIX_FLAGS, flags)
    await vec.event.wait()
    # the message went out under the VF's own Requester ID to its programmed address
    addr, data = model_vf.msix.message(3)
    assert (addr, data) == (vec.addr, vec.data)
    assert model_vf.msix.sent[3] == 3


@cocotb.test()
async def vfs_share_the_header_registers_read_from_the_first(dut):
    """The host reads the header registers all VFs share (class and revision, header type,
    subsystem IDs) from the first VF of an enable only, as Linux's ``pci_read_vf_config_common``
    does; every VF's host view holds what its own config space reads."""
    sys_ = await build_system(dut, total_vfs=4)
    vfs = await pcicore.pci_enable_sriov(sys_.pf_dev, 3)
    for vf in vfs:
        rid = int(vf.pcie_id)
        class_revision = await config_dword_at(sys_.rc, rid, pci.PCI_REVISION_ID)
        subsystem = await config_dword_at(sys_.rc, rid, pci.PCI_SUBSYSTEM_VENDOR_ID)
        header = await config_dword_at(sys_.rc, rid, pci.PCI_CACHE_LINE_SIZE)
        assert (vf.class_code, vf.revision_id) == (class_revision >> 8, class_revision & 0xFF)
        assert (vf.class_code, vf.revision_id) == (device.CLASS_CODE, device.REVISION_ID)
        assert (vf.subsystem_vendor_id, vf.subsystem_id) == (subsystem & 0xFFFF, subsystem >> 16)
        assert vf.subsystem_id == device.VF_SUBSYSTEM_ID
        assert vf.header_type == (header >> 16) & 0x7F == 0 and not vf.multifunction
    assert pcicore.pci_iov(sys_.pf_dev).state.vf_common is not None

"""The PF enumerates; VFs appear at their Routing IDs with spec config values; disable removes them."""

import cocotb
from cocotbext.pcie.core.utils import PcieId

import pcicore
from datasheet import device, pci, regs
from tb.lib.checks import assert_vf_config, config_dword_at
from tb.lib.system import build_system, slow_on_tlp
from tb.tools.lspci import lspci


@cocotb.test()
async def pf_enumerates(dut):
    """PF header, BARs, capability list and SR-IOV reset values as the host sees them."""
    sys_ = await build_system(dut, total_vfs=64)
    pf = sys_.pf_dev
    assert (pf.vendor_id, pf.device_id) == (device.VENDOR_ID, device.PF_DEVICE_ID)
    assert pf.class_code == device.CLASS_CODE and pf.revision_id == device.REVISION_ID
    assert pf.header_type == 0
    assert pf.bar_size[device.REG_BAR] == device.PF_REG_BAR_SIZE
    assert pf.bar_size[device.MSIX_BAR] == device.PF_MSIX_BAR_SIZE
    assert pf.bar_raw[device.REG_BAR] & pci.PCI_BASE_ADDRESS_MEM_TYPE_64
    std, ext = await pcicore.list_capabilities(pf)
    assert [c for c, _ in std] == [pci.PCI_CAP_ID_PM, pci.PCI_CAP_ID_EXP, pci.PCI_CAP_ID_MSIX]
    assert [c for c, _ in ext] == [pci.PCI_EXT_CAP_ID_ERR, pci.PCI_EXT_CAP_ID_ARI, pci.PCI_EXT_CAP_ID_SRIOV]
    exp = await pcicore.find_capability(pf, pci.PCI_CAP_ID_EXP)
    assert await pf.config_read_dword(exp + pci.PCI_EXP_DEVCAP) & pci.PCI_EXP_DEVCAP_FLR
    lnk = await pf.config_read_word(exp + pci.PCI_EXP_LNKSTA)
    assert (lnk & 0xF, (lnk >> 4) & 0x3F) == (device.LINK_SPEED_GEN, device.LINK_WIDTH)
    lnkcap = await pf.config_read_dword(exp + pci.PCI_EXP_LNKCAP)
    assert (lnkcap & 0xF, (lnkcap >> 4) & 0x3F) == (device.LINK_SPEED_GEN, device.LINK_WIDTH)

    sr = await pcicore.find_ext_capability(pf, pci.PCI_EXT_CAP_ID_SRIOV)
    rd16 = lambda off: pf.config_read_word(sr + off)  # noqa: E731
    assert await rd16(pci.PCI_SRIOV_TOTAL_VF) == 64
    assert await rd16(pci.PCI_SRIOV_INITIAL_VF) == 64
    assert await rd16(pci.PCI_SRIOV_NUM_VF) == 0
    assert await rd16(pci.PCI_SRIOV_VF_DID) == device.VF_DEVICE_ID
    assert await rd16(pci.PCI_SRIOV_CTRL) == pci.PCI_SRIOV_CTRL_ARI  # set by sriov_init (ARI fabric)
    assert await rd16(pci.PCI_SRIOV_VF_OFFSET) == device.FIRST_VF_OFFSET_ARI
    assert await rd16(pci.PCI_SRIOV_VF_STRIDE) == device.VF_STRIDE_ARI
    assert await pf.config_read_dword(sr + pci.PCI_SRIOV_SUP_PGSIZE) == device.SUPPORTED_PAGE_SIZES
    assert await pf.config_read_dword(sr + pci.PCI_SRIOV_SYS_PGSIZE) == 1
    assert await pf.config_read_dword(sr + pci.PCI_SRIOV_VFM) == 0
    assert await rd16(pci.PCI_SRIOV_FUNC_LINK) & 0xFF == 0
    assert sys_.pf.sriov.state.bar_size == {
        device.REG_BAR: device.VF_REG_BAR_SIZE,
        device.MSIX_BAR: device.VF_MSIX_BAR_SIZE,
    }
    assert await sys_.pf.read_reg(regs.NIC_ID) == device.NIC_ID_MAGIC
    assert await sys_.pf.read_reg(regs.FUNC_INFO) == 0
    assert sys_.pf.msix_vectors == device.PF_MSIX_VECTORS


async def _enable_and_check(dut, total_vfs, num_vfs, ari=True):
    sys_ = await build_system(dut, total_vfs=total_vfs, ari=ari)
    vfs = await sys_.enable_vfs(num_vfs)
    pf_rid = int(sys_.pf_dev.pcie_id)
    st = sys_.pf.sriov.state
    assert len(vfs) == num_vfs
    assert await sys_.pf.read_reg(regs.PF_NUM_VFS) == num_vfs
    for n, vf in enumerate(vfs):
        rid = pci.vf_rid(pf_rid, st.offset, st.stride, n)
        assert int(vf.pdev.pcie_id) == rid, f"VF{n} at {vf.pdev.pcie_id}, expected {pci.rid_str(rid)}"
        await assert_vf_config(vf.pdev)
        assert vf.vf_index == n
        assert vf.pdev.bar_addr[device.REG_BAR] == st.bar_base[device.REG_BAR] + n * st.bar_size[device.REG_BAR]
        await vf.write_reg(regs.SCRATCH, 0xA5000000 | rid)
    for vf in vfs:  # each VF BAR0 window is that VF's own register file
        assert await vf.read_reg(regs.SCRATCH) == 0xA5000000 | int(vf.pdev.pcie_id)
    rids = [int(vf.pdev.pcie_id) for vf in vfs]
    await sys_.disable_vfs()
    assert sys_.pf.virtfns == []
    assert await sys_.pf.read_reg(regs.PF_NUM_VFS) == 0
    for rid in rids:
        assert await config_dword_at(sys_.rc, rid, 0) == 0xFFFFFFFF  # gone: UR, all ones
    return sys_, rids


@cocotb.test()
@cocotb.parametrize(num_vfs=[1, 7, 8])
async def vfs_enumerate(dut, num_vfs):
    """NumVFs in {1, 7, 8}: every VF answers at its RID with VF config values; disable removes all."""
    await _enable_and_check(dut, 64, num_vfs)


@cocotb.test(skip=slow_on_tlp())
async def vfs_enumerate_64(dut):
    """NumVFs 64, as above (on the TLP fabric, in the regression)."""
    await _enable_and_check(dut, 64, 64)


@cocotb.test(skip=slow_on_tlp())
async def total_vfs_256_spill_to_next_bus(dut):
    """TotalVFs 256 accepted; VF RIDs past devfn 0xff land on the next bus (Type 1 config).
    On the TLP fabric, in the regression."""
    sys_, rids = await _enable_and_check(dut, 256, 256)
    pf_bus = sys_.pf_dev.pcie_id.bus
    assert {rid >> 8 for rid in rids} == {pf_bus, pf_bus + 1}
    assert PcieId.from_int(rids[-1]) == PcieId(pf_bus + 1, 0, 0)


@cocotb.test()
async def vfs_without_ari_start_on_next_bus(dut):
    """No ARI Forwarding upstream: ARI Capable Hierarchy stays clear, VFs start at bus+1."""
    sys_ = await build_system(dut, total_vfs=16, ari=False)
    assert not sys_.pf.sriov.state.ari
    assert sys_.pf.sriov.state.offset == device.FIRST_VF_OFFSET_NO_ARI
    vfs = await sys_.enable_vfs(8)
    for n, vf in enumerate(vfs):
        assert vf.pdev.pcie_id == PcieId(sys_.pf_dev.pcie_id.bus + 1, 0, n)
        await assert_vf_config(vf.pdev)


@cocotb.test()
async def lspci_decodes_sriov_and_ari(dut):
    """The lspci dump shows what the host sees: SR-IOV state, ARI, VF identity."""
    sys_ = await build_system(dut, total_vfs=64)
    await sys_.enable_vfs(2, probe=False)
    pf_text = await lspci(sys_.pf_dev)
    assert "Single Root I/O Virtualization (SR-IOV)" in pf_text
    assert "IOVCtl:\tEnable+ Migration- Interrupt- MSE+ ARIHierarchy+" in pf_text
    assert "Initial VFs: 64, Total VFs: 64, Number of VFs: 2" in pf_text
    assert f"VF offset: 1, stride: 1, Device ID: {device.VF_DEVICE_ID:04x}" in pf_text
    assert "Alternative Routing-ID Interpretation (ARI)" in pf_text
    assert "Advanced Error Reporting" in pf_text and "UESta:\tDLP- SDES- TLP-" in pf_text
    assert "FLReset+" in pf_text and "Speed 8GT/s, Width x8" in pf_text
    vf_text = await lspci(sys_.pf.virtfns[1])
    assert vf_text.startswith(
        f"{sys_.pf.virtfns[1].pcie_id} Ethernet controller [0200]: "
        f"Device {device.VENDOR_ID:04x}:{device.VF_DEVICE_ID:04x}"
    )
    assert "(Virtual Function)" in vf_text and "Control: I/O- Mem- BusMaster-" in vf_text
    assert f"[virtual] [size={device.VF_REG_BAR_SIZE // 1024}K]" in vf_text
    assert "MSI-X: Enable- Count=8" in vf_text

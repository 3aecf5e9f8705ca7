"""PCI / PCIe configuration-space layout used by the NIC and its drivers.

Names follow Linux ``include/uapi/linux/pci_regs.h`` so a reader of the Linux
SR-IOV stack feels at home. Offsets are bytes from the start of config space
or of the capability they belong to.
"""

from __future__ import annotations

# Type 0 header (PCI Local Bus 3.0 §6.1; PCIe Base 6.0 §7.5.1)
PCI_VENDOR_ID = 0x00
PCI_DEVICE_ID = 0x02
PCI_COMMAND = 0x04
PCI_COMMAND_IO = 0x0001
PCI_COMMAND_MEMORY = 0x0002
PCI_COMMAND_MASTER = 0x0004
PCI_COMMAND_INTX_DISABLE = 0x0400
PCI_STATUS = 0x06
PCI_STATUS_CAP_LIST = 0x0010
PCI_STATUS_REC_MASTER_ABORT = 0x2000
PCI_REVISION_ID = 0x08
PCI_CLASS_PROG = 0x09
PCI_CLASS_DEVICE = 0x0A
PCI_CACHE_LINE_SIZE = 0x0C
PCI_HEADER_TYPE = 0x0E
PCI_BASE_ADDRESS_0 = 0x10
PCI_BASE_ADDRESS_SPACE_IO = 0x1
PCI_BASE_ADDRESS_MEM_TYPE_64 = 0x4
PCI_BASE_ADDRESS_MEM_PREFETCH = 0x8
PCI_BASE_ADDRESS_MEM_MASK = ~0xF
PCI_SUBSYSTEM_VENDOR_ID = 0x2C
PCI_SUBSYSTEM_ID = 0x2E
PCI_CAPABILITY_LIST = 0x34
PCI_INTERRUPT_LINE = 0x3C
PCI_INTERRUPT_PIN = 0x3D
PCI_STD_HEADER_SIZEOF = 0x40
PCI_CFG_SPACE_SIZE = 0x100
PCI_CFG_SPACE_EXP_SIZE = 0x1000
PCI_NUM_BARS = 6

# Capability IDs (PCI Code and ID Assignment §2)
PCI_CAP_ID_PM = 0x01
PCI_CAP_ID_EXP = 0x10
PCI_CAP_ID_MSIX = 0x11
PCI_EXT_CAP_ID_ACS = 0x000D
PCI_EXT_CAP_ID_ARI = 0x000E
PCI_EXT_CAP_ID_SRIOV = 0x0010

# Power management capability (PCI PM 1.2 §3.2)
PCI_PM_CTRL = 0x04
PCI_PM_SIZEOF = 0x08
PCI_PM_CTRL_STATE_MASK = 0x0003

# PCI Express capability (PCIe Base 6.0 §7.5.3)
PCI_EXP_FLAGS = 0x02
PCI_EXP_FLAGS_TYPE_SHIFT = 4
PCI_EXP_TYPE_ENDPOINT = 0x0
PCI_EXP_DEVCAP = 0x04
PCI_EXP_DEVCAP_FLR = 1 << 28
PCI_EXP_DEVCTL = 0x08
PCI_EXP_DEVCTL_BCR_FLR = 1 << 15
PCI_EXP_DEVSTA = 0x0A
PCI_EXP_DEVSTA_TRPND = 1 << 5
PCI_EXP_LNKCAP = 0x0C
PCI_EXP_LNKSTA = 0x12
PCI_EXP_DEVCAP2 = 0x24
PCI_EXP_DEVCAP2_ARI = 1 << 5
PCI_EXP_DEVCTL2 = 0x28
PCI_EXP_DEVCTL2_ARI = 1 << 5
PCI_EXP_LNKCTL = 0x10
PCI_EXP_SIZEOF = 0x3C

# MSI-X capability (PCIe Base 6.0 §7.7.2)
PCI_MSIX_FLAGS = 0x02
PCI_MSIX_FLAGS_QSIZE = 0x07FF
PCI_MSIX_FLAGS_MASKALL = 0x4000
PCI_MSIX_FLAGS_ENABLE = 0x8000
PCI_MSIX_TABLE = 0x04
PCI_MSIX_PBA = 0x08
PCI_MSIX_BIR_MASK = 0x7
PCI_MSIX_SIZEOF = 0x0C
PCI_MSIX_ENTRY_SIZE = 16
PCI_MSIX_ENTRY_LOWER_ADDR = 0x0
PCI_MSIX_ENTRY_UPPER_ADDR = 0x4
PCI_MSIX_ENTRY_DATA = 0x8
PCI_MSIX_ENTRY_VECTOR_CTRL = 0xC
PCI_MSIX_ENTRY_CTRL_MASKBIT = 0x1

# ARI extended capability (PCIe Base 6.0 §7.8.8)
PCI_ARI_CAP = 0x04
PCI_ARI_CAP_MFVC = 0x0001
PCI_ARI_CAP_ACS = 0x0002
PCI_ARI_CAP_NFN_SHIFT = 8
PCI_ARI_CTRL = 0x06
PCI_ARI_CTRL_FG_SHIFT = 4
PCI_ARI_SIZEOF = 0x08

# Access Control Services extended capability (PCIe Base 6.0 §7.7.8), in downstream ports
PCI_ACS_CAP = 0x04
PCI_ACS_CTRL = 0x06
PCI_ACS_SV = 0x0001  # Source Validation
PCI_ACS_TB = 0x0002  # Translation Blocking
PCI_ACS_RR = 0x0004  # P2P Request Redirect
PCI_ACS_CR = 0x0008  # P2P Completion Redirect
PCI_ACS_UF = 0x0010  # Upstream Forwarding
PCI_ACS_EC = 0x0020  # P2P Egress Control
PCI_ACS_DT = 0x0040  # Direct Translated P2P
PCI_ACS_SIZEOF = 0x08

# SR-IOV extended capability (PCIe Base 6.0 §9.3.3; SR-IOV 1.1 §3.3)
PCI_SRIOV_CAP = 0x04
PCI_SRIOV_CAP_VFM = 0x00000001  # VF Migration Capable
PCI_SRIOV_CAP_ARI_PRESERVED = 0x00000002  # ARI Capable Hierarchy Preserved
PCI_SRIOV_CAP_INTR_SHIFT = 21  # VF Migration Interrupt Message Number
PCI_SRIOV_CTRL = 0x08
PCI_SRIOV_CTRL_VFE = 0x0001  # VF Enable
PCI_SRIOV_CTRL_VFM = 0x0002  # VF Migration Enable
PCI_SRIOV_CTRL_INTR = 0x0004  # VF Migration Interrupt Enable
PCI_SRIOV_CTRL_MSE = 0x0008  # VF Memory Space Enable
PCI_SRIOV_CTRL_ARI = 0x0010  # ARI Capable Hierarchy
PCI_SRIOV_STATUS = 0x0A
PCI_SRIOV_STATUS_VFM = 0x0001  # VF Migration Status (RW1C)
PCI_SRIOV_INITIAL_VF = 0x0C
PCI_SRIOV_TOTAL_VF = 0x0E
PCI_SRIOV_NUM_VF = 0x10
PCI_SRIOV_FUNC_LINK = 0x12
PCI_SRIOV_VF_OFFSET = 0x14
PCI_SRIOV_VF_STRIDE = 0x16
PCI_SRIOV_VF_DID = 0x1A
PCI_SRIOV_SUP_PGSIZE = 0x1C
PCI_SRIOV_SYS_PGSIZE = 0x20
PCI_SRIOV_BAR = 0x24
PCI_SRIOV_NUM_BARS = 6
PCI_SRIOV_VFM = 0x3C  # VF Migration State Array Offset
PCI_SRIOV_SIZEOF = 0x40

#: bytes each capability occupies, by ID (standard and extended lists)
PCI_CAP_SIZEOF = {PCI_CAP_ID_PM: PCI_PM_SIZEOF, PCI_CAP_ID_EXP: PCI_EXP_SIZEOF, PCI_CAP_ID_MSIX: PCI_MSIX_SIZEOF}
PCI_EXT_CAP_SIZEOF = {
    PCI_EXT_CAP_ID_ARI: PCI_ARI_SIZEOF,
    PCI_EXT_CAP_ID_SRIOV: PCI_SRIOV_SIZEOF,
    PCI_EXT_CAP_ID_ACS: PCI_ACS_SIZEOF,
}

#: seconds software waits after setting VF Enable before touching a VF (SR-IOV 1.1 §3.3.3.1)
PCI_SRIOV_VF_ENABLE_DELAY_S = 0.100
#: FLR completion time software must allow (PCIe Base 6.0 §6.6.2)
PCI_FLR_DELAY_S = 0.100

#: minimum page size encoded by bit 0 of Supported/System Page Size (SR-IOV 1.1 §3.3.12)
PCI_SRIOV_PAGE_SHIFT = 12


def rid(bus: int, devfn: int) -> int:
    """Routing ID (bus:devfn, ARI numbering) as a 16-bit integer."""
    return ((bus & 0xFF) << 8) | (devfn & 0xFF)


def vf_rid(pf_rid: int, first_vf_offset: int, vf_stride: int, vf_index: int) -> int:
    """Routing ID of VF ``vf_index`` (0-based) -- SR-IOV 1.1 §3.3.10-§3.3.11."""
    return (pf_rid + first_vf_offset + vf_index * vf_stride) & 0xFFFF


def rid_str(value: int) -> str:
    """``bb:dd.f`` text of a Routing ID, as lspci prints it."""
    return f"{value >> 8:02x}:{(value >> 3) & 0x1F:02x}.{value & 7:x}"

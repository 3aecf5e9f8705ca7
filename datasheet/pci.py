"""PCI / PCIe configuration-space layout used by the NIC and its drivers.

Names follow Linux ``include/uapi/linux/pci_regs.h`` so a reader of the Linux
SR-IOV stack feels at home. Offsets are bytes from the start of config space
or of the capability they belong to.
"""

from __future__ import annotations

from collections.abc import Iterator

# Type 0 header (PCI Local Bus 3.0 §6.1; PCIe Base 6.0 §7.5.1)
PCI_VENDOR_ID = 0x00
PCI_DEVICE_ID = 0x02
PCI_COMMAND = 0x04
PCI_COMMAND_IO = 0x0001
PCI_COMMAND_MEMORY = 0x0002
PCI_COMMAND_MASTER = 0x0004
PCI_COMMAND_PARITY = 0x0040
PCI_COMMAND_SERR = 0x0100
PCI_COMMAND_INTX_DISABLE = 0x0400
PCI_STATUS = 0x06
PCI_STATUS_CAP_LIST = 0x0010
PCI_STATUS_SIG_TARGET_ABORT = 0x0800
PCI_STATUS_REC_TARGET_ABORT = 0x1000
PCI_STATUS_REC_MASTER_ABORT = 0x2000
PCI_STATUS_SIG_SYSTEM_ERROR = 0x4000
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
PCI_CAP_ID_MSI = 0x05
PCI_CAP_ID_EXP = 0x10
PCI_CAP_ID_MSIX = 0x11
PCI_EXT_CAP_ID_ERR = 0x0001
PCI_EXT_CAP_ID_ACS = 0x000D
PCI_EXT_CAP_ID_ARI = 0x000E
PCI_EXT_CAP_ID_SRIOV = 0x0010

# Power management capability (PCI PM 1.2 §3.2)
PCI_PM_CTRL = 0x04
PCI_PM_SIZEOF = 0x08
PCI_PM_CTRL_STATE_MASK = 0x0003
PCI_D0 = 0
PCI_D3HOT = 3

# MSI capability (PCI 3.0 §6.8.1), 64-bit address layout
PCI_MSI_FLAGS = 0x02
PCI_MSI_FLAGS_ENABLE = 0x0001
PCI_MSI_FLAGS_64BIT = 0x0080
PCI_MSI_ADDRESS_LO = 0x04
PCI_MSI_ADDRESS_HI = 0x08
PCI_MSI_DATA_64 = 0x0C

# PCI Express capability (PCIe Base 6.0 §7.5.3)
PCI_EXP_FLAGS = 0x02
PCI_EXP_FLAGS_TYPE_SHIFT = 4
PCI_EXP_TYPE_ENDPOINT = 0x0
PCI_EXP_DEVCAP = 0x04
PCI_EXP_DEVCAP_PAYLOAD = 0x7  # Max_Payload_Size Supported
PCI_EXP_DEVCAP_FLR = 1 << 28
PCI_EXP_DEVCTL = 0x08
PCI_EXP_DEVCTL_CERE = 0x0001  # Correctable Error Reporting Enable
PCI_EXP_DEVCTL_NFERE = 0x0002  # Non-Fatal Error Reporting Enable
PCI_EXP_DEVCTL_FERE = 0x0004  # Fatal Error Reporting Enable
PCI_EXP_DEVCTL_URRE = 0x0008  # Unsupported Request Reporting Enable
PCI_EXP_DEVCTL_PAYLOAD_SHIFT = 5
PCI_EXP_DEVCTL_BCR_FLR = 1 << 15
#: what the host's AER service enables in every function (Linux PCI_EXP_AER_FLAGS)
PCI_EXP_AER_FLAGS = PCI_EXP_DEVCTL_CERE | PCI_EXP_DEVCTL_NFERE | PCI_EXP_DEVCTL_FERE | PCI_EXP_DEVCTL_URRE
PCI_EXP_DEVSTA = 0x0A
PCI_EXP_DEVSTA_CED = 0x0001  # Correctable Error Detected
PCI_EXP_DEVSTA_NFED = 0x0002  # Non-Fatal Error Detected
PCI_EXP_DEVSTA_FED = 0x0004  # Fatal Error Detected
PCI_EXP_DEVSTA_URD = 0x0008  # Unsupported Request Detected
PCI_EXP_DEVSTA_TRPND = 1 << 5
PCI_EXP_LNKCAP = 0x0C
PCI_EXP_LNKSTA = 0x12
PCI_EXP_DEVCAP2 = 0x24
PCI_EXP_DEVCAP2_COMP_TMOUT_RANGES = 0x000F  # Completion Timeout Ranges Supported (A=1, B=2, C=4, D=8)
PCI_EXP_DEVCAP2_COMP_TMOUT_DIS = 0x0010  # Completion Timeout Disable Supported
PCI_EXP_DEVCAP2_ARI = 1 << 5
PCI_EXP_DEVCTL2 = 0x28
PCI_EXP_DEVCTL2_COMP_TIMEOUT = 0x000F  # Completion Timeout Value
PCI_EXP_DEVCTL2_COMP_TMOUT_DIS = 0x0010  # Completion Timeout Disable
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

# Advanced Error Reporting extended capability (PCIe Base 6.0 §7.8.4)
PCI_ERR_UNCOR_STATUS = 0x04  # Uncorrectable Error Status (RW1CS)
PCI_ERR_UNC_DLP = 0x00000010  # Data Link Protocol
PCI_ERR_UNC_SURPDN = 0x00000020  # Surprise Down
PCI_ERR_UNC_POISON_TLP = 0x00001000  # Poisoned TLP Received
PCI_ERR_UNC_FCP = 0x00002000  # Flow Control Protocol
PCI_ERR_UNC_COMP_TIME = 0x00004000  # Completion Timeout
PCI_ERR_UNC_COMP_ABORT = 0x00008000  # Completer Abort
PCI_ERR_UNC_UNX_COMP = 0x00010000  # Unexpected Completion
PCI_ERR_UNC_RX_OVER = 0x00020000  # Receiver Overflow
PCI_ERR_UNC_MALF_TLP = 0x00040000  # Malformed TLP
PCI_ERR_UNC_ECRC = 0x00080000  # ECRC Error
PCI_ERR_UNC_UNSUP = 0x00100000  # Unsupported Request
PCI_ERR_UNC_ACSV = 0x00200000  # ACS Violation
PCI_ERR_UNC_INTN = 0x00400000  # Uncorrectable Internal Error
PCI_ERR_UNCOR_MASK = 0x08  # Uncorrectable Error Mask (RWS)
PCI_ERR_UNCOR_SEVER = 0x0C  # Uncorrectable Error Severity (RWS): 1 = fatal
PCI_ERR_COR_STATUS = 0x10  # Correctable Error Status (RW1CS)
PCI_ERR_COR_RCVR = 0x00000001  # Receiver Error
PCI_ERR_COR_BAD_TLP = 0x00000040  # Bad TLP
PCI_ERR_COR_BAD_DLLP = 0x00000080  # Bad DLLP
PCI_ERR_COR_REP_ROLL = 0x00000100  # REPLAY_NUM Rollover
PCI_ERR_COR_REP_TIMER = 0x00001000  # Replay Timer Timeout
PCI_ERR_COR_ADV_NFAT = 0x00002000  # Advisory Non-Fatal
PCI_ERR_COR_INTERNAL = 0x00004000  # Corrected Internal Error
PCI_ERR_COR_LOG_OVER = 0x00008000  # Header Log Overflow
PCI_ERR_COR_MASK = 0x14  # Correctable Error Mask (RWS)
PCI_ERR_CAP = 0x18  # Advanced Error Capabilities and Control
PCI_ERR_CAP_FEP_MASK = 0x1F  # First Error Pointer
PCI_ERR_CAP_CTO_LOG = 0x1000  # Completion Timeout Prefix/Header Log Capable
PCI_ERR_HEADER_LOG = 0x1C  # Header Log, 4 dwords (ROS)
PCI_ERR_ROOT_COMMAND = 0x2C  # Root Error Command (Root Ports)
PCI_ERR_ROOT_CMD_COR_EN = 0x0001
PCI_ERR_ROOT_CMD_NONFATAL_EN = 0x0002
PCI_ERR_ROOT_CMD_FATAL_EN = 0x0004
PCI_ERR_ROOT_STATUS = 0x30  # Root Error Status (RW1CS)
PCI_ERR_ROOT_COR_RCV = 0x0001  # ERR_COR Received
PCI_ERR_ROOT_MULTI_COR_RCV = 0x0002  # Multiple ERR_COR Received
PCI_ERR_ROOT_UNCOR_RCV = 0x0004  # ERR_FATAL/NONFATAL Received
PCI_ERR_ROOT_MULTI_UNCOR_RCV = 0x0008  # Multiple ERR_FATAL/NONFATAL Received
PCI_ERR_ROOT_FIRST_FATAL = 0x0010  # First Uncorrectable Fatal
PCI_ERR_ROOT_NONFATAL_RCV = 0x0020  # Non-Fatal Error Messages Received
PCI_ERR_ROOT_FATAL_RCV = 0x0040  # Fatal Error Messages Received
PCI_ERR_ROOT_ERR_SRC = 0x34  # Error Source Identification: ERR_COR source 15:0, ERR_FATAL/NONFATAL 31:16
PCI_ERR_SIZEOF = 0x2C  # an endpoint's AER capability (through the Header Log)
PCI_ERR_ROOT_SIZEOF = 0x38  # a Root Port's (through Error Source Identification)

#: Linux's names of the AER status bits (drivers/pci/pcie/aer.c), by bit number
AER_UNCOR_NAMES = {
    4: "DLP",
    5: "SDES",
    12: "TLP",
    13: "FCP",
    14: "CmpltTO",
    15: "CmpltAbrt",
    16: "UnxCmplt",
    17: "RxOF",
    18: "MalfTLP",
    19: "ECRC",
    20: "UnsupReq",
    21: "ACSViol",
    22: "UncorrIntErr",
}
AER_COR_NAMES = {
    0: "RxErr",
    6: "BadTLP",
    7: "BadDLLP",
    8: "Rollover",
    12: "Timeout",
    13: "NonFatalErr",
    14: "CorrIntErr",
    15: "HeaderOF",
}
#: uncorrectable errors a Function handles as Advisory Non-Fatal when their severity is
#: non-fatal, in the cases of PCIe Base 6.0 §6.2.3.2.4 (Linux AER_ERR_ANFE_UNC_MASK)
AER_ANFE_UNC_MASK = PCI_ERR_UNC_POISON_TLP | PCI_ERR_UNC_COMP_TIME | PCI_ERR_UNC_COMP_ABORT
AER_ANFE_UNC_MASK |= PCI_ERR_UNC_UNX_COMP | PCI_ERR_UNC_UNSUP

# Error Messages (PCIe Base 6.0 §2.2.8.3): Message Code, routed to the Root Complex
PCI_MSG_ERR_COR = 0x30
PCI_MSG_ERR_NONFATAL = 0x31
PCI_MSG_ERR_FATAL = 0x33
PCI_MSG_ERR_NAMES = {PCI_MSG_ERR_COR: "ERR_COR", PCI_MSG_ERR_NONFATAL: "ERR_NONFATAL", PCI_MSG_ERR_FATAL: "ERR_FATAL"}


def msg_code_byte_enables(code: int) -> tuple[int, int]:
    """(First DW BE, Last DW BE) of a TLP header that carry Message Code ``code``: a Message
    request has its code in header byte 7, where a memory request has its byte enables."""
    return code & 0xF, code >> 4 & 0xF


def msg_code(first_be: int, last_be: int) -> int:
    """The Message Code carried in a header's byte-enable positions (:func:`msg_code_byte_enables`)."""
    return (last_be & 0xF) << 4 | first_be & 0xF


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
    PCI_EXT_CAP_ID_ERR: PCI_ERR_SIZEOF,
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


#: a memory request never crosses a 4 KiB boundary (PCIe 6.0 §2.2.7)
PCI_REQUEST_PAGE = 0x1000
#: the Read Completion Boundary a root complex completes reads on (§2.3.1.1)
PCI_READ_COMPLETION_BOUNDARY = 128


def request_dwords(addr: int, length: int) -> int:
    """The DWORDs a request of ``length`` bytes at ``addr`` covers, its Length field (PCIe 6.0
    §2.2.2): from ``addr``'s DWORD through its last byte's; a zero-length request is one DWORD
    with no bytes enabled (§2.2.5)."""
    return ((addr & 3) + length + 3) >> 2 or 1


def one_request(addr: int, length: int, max_size: int) -> bool:
    """Whether a read or write of ``length`` (> 0) bytes at ``addr`` is a single request: it fits
    ``max_size`` (Max_Read_Request_Size or Max_Payload_Size) from its DWORD and stays within
    4 KiB, so that :func:`read_requests` and :func:`write_requests` would not cut it."""
    return 0 < length <= max_size - (addr & 3) and (addr & (PCI_REQUEST_PAGE - 1)) + length <= PCI_REQUEST_PAGE


def read_requests(addr: int, length: int, max_read_request: int) -> Iterator[tuple[int, int]]:
    """(address, bytes) of each read request a read of ``length`` bytes at ``addr`` becomes
    (PCIe 6.0 §2.2.7, §2.3.1.1): at most Max_Read_Request_Size (split on the read completion
    boundary), never across 4 KiB; a zero-length read is one request with no bytes enabled.
    The one definition of the cut: the device's DMA and both fabrics use it."""
    if length <= 0:
        yield addr, 0
        return
    end = addr + length
    while addr < end:
        n = end - addr
        if n > max_read_request - (addr & 3):
            n = min(n, max_read_request - (addr & (PCI_READ_COMPLETION_BOUNDARY - 1)))
        n = min(n, PCI_REQUEST_PAGE - (addr & (PCI_REQUEST_PAGE - 1)))
        yield addr, n
        addr += n


def write_requests(addr: int, length: int, max_payload: int) -> Iterator[tuple[int, int]]:
    """(address, bytes) of each posted write a write of ``length`` bytes at ``addr`` becomes
    (§2.2.7): at most Max_Payload_Size, never across 4 KiB; a zero-length write is one request."""
    if length <= 0:
        yield addr, 0
        return
    end = addr + length
    while addr < end:
        n = min(end - addr, max_payload - (addr & 3), PCI_REQUEST_PAGE - (addr & (PCI_REQUEST_PAGE - 1)))
        yield addr, n
        addr += n

"""Identity and sizing parameters of the NIC (what a datasheet's overview gives)."""

from __future__ import annotations

VENDOR_ID = 0x1D5C  # simulated-device vendor ID used throughout the project
PF_DEVICE_ID = 0x5F10
VF_DEVICE_ID = 0x5F11  # reported in the PF's SR-IOV capability (VF DID)
REVISION_ID = 0x01
CLASS_CODE = 0x020000  # network controller, Ethernet
SUBSYSTEM_VENDOR_ID = VENDOR_ID
PF_SUBSYSTEM_ID = 0x0001
VF_SUBSYSTEM_ID = 0x0002

#: TotalVFs default and the largest value the constructor accepts
DEFAULT_TOTAL_VFS = 64
MAX_TOTAL_VFS = 256

#: First VF Offset / VF Stride (SR-IOV 1.1 §3.3.10-11). With ARI Capable Hierarchy
#: set the VFs follow the PF densely on its bus; without ARI a device may only use
#: device 0 functions on a bus, so the VFs start on the next bus number.
FIRST_VF_OFFSET_ARI = 1
VF_STRIDE_ARI = 1
FIRST_VF_OFFSET_NO_ARI = 0x100
VF_STRIDE_NO_ARI = 1

#: Supported Page Sizes: 4K, 8K, 64K, 256K, 1M, 4M (bit n = 2^(n+12) bytes)
SUPPORTED_PAGE_SIZES = 0x00000553

#: BAR layout, identical shape for PF (Type 0 header BARs) and VFs (VF BARn in the
#: SR-IOV capability): BAR0/1 = 64-bit registers, BAR2/3 = 64-bit MSI-X table + PBA.
REG_BAR = 0
MSIX_BAR = 2
PF_REG_BAR_SIZE = 128 * 1024
PF_MSIX_BAR_SIZE = 16 * 1024
VF_REG_BAR_SIZE = 16 * 1024
VF_MSIX_BAR_SIZE = 16 * 1024

#: MSI-X table sizes and placement within the MSI-X BAR
PF_MSIX_VECTORS = 32
VF_MSIX_VECTORS = 8
MSIX_TABLE_OFFSET = 0x0000
MSIX_PBA_OFFSET = 0x2000

#: PCIe link the NIC trains to (Gen3 x8)
LINK_SPEED_GEN = 3
LINK_WIDTH = 8
#: Max Payload Size Supported encoding (0 = 128 B ... 5 = 4096 B); 2 = 512 B
MAX_PAYLOAD_SIZE_SUPPORTED = 2

#: value of the NIC_ID register, and the register-map version
NIC_ID_MAGIC = 0x53524E43  # "SRNC"
REG_MAP_VERSION = 0x00010000

#: queue pairs per function (TX+RX); rings are configured through the mailbox (VF) or BAR0 (PF)
VF_QUEUE_PAIRS = 4
PF_QUEUE_PAIRS = 8
RING_MIN_DESCS = 8
RING_MAX_DESCS = 4096
RING_ALIGN = 128
RX_BUF_MIN = 256
RX_BUF_MAX = 16384


def ring_length_error(length: int) -> str | None:
    """Why ``length`` descriptors cannot be a ring (a power of two in [RING_MIN_DESCS,
    RING_MAX_DESCS]), or None if they can."""
    if length & (length - 1) or not RING_MIN_DESCS <= length <= RING_MAX_DESCS:
        return f"ring length {length} is not a power of two in [{RING_MIN_DESCS}, {RING_MAX_DESCS}]"
    return None


def ring_geometry_error(base: int, length: int) -> str | None:
    """Why a ring at ``base`` of ``length`` descriptors is invalid (base 0 or not
    RING_ALIGN-aligned, or a bad length), or None if it is valid. The device refuses to
    enable such a ring (RING_GEOMETRY queue error); the PF refuses it in CONFIG_QUEUES."""
    if base == 0 or base % RING_ALIGN:
        return f"ring base {base:#x} is not a non-zero multiple of {RING_ALIGN}"
    return ring_length_error(length)


#: Function index, used wherever the device numbers its functions (embedded switch port, per-function
#: register arrays such as SW_FN_CTRL[fn], events): the PF is 0, VF i is 1 + i.
PF_PORT = 0


def vf_port(vf_index: int) -> int:
    """Function index (switch port) of VF ``vf_index`` (0-based)."""
    return 1 + vf_index


def port_vf(port: int) -> int | None:
    """VF index of function index ``port``; None for the PF."""
    return None if port == PF_PORT else port - 1


#: first two bytes of every permanent MAC: locally administered (bit 1 of byte 0), unicast
MAC_PREFIX = bytes([0x02, 0x5F])


def permanent_mac(pf_rid: int, vf_index: int | None = None) -> bytes:
    """The permanent MAC the PF driver assigns (what a real NIC reads from its NVM):
    02:5f:<PF bus>:<PF devfn>:<VF index, 16 bits>, and ff:ff in place of the index for the PF."""
    tail = b"\xff\xff" if vf_index is None else vf_index.to_bytes(2, "big")
    return MAC_PREFIX + pf_rid.to_bytes(2, "big") + tail


#: MSI-X vector that carries mailbox (and reset) events, on the PF and on every VF
PF_MBX_VECTOR = 0
VF_MBX_VECTOR = 0

#: embedded switch filter capacity per function
SW_MC_PER_FN = 8
SW_VLANS_PER_FN = 8
#: largest frame (without FCS) a descriptor chain may carry, and the uplink's rate
MAX_FRAME = 9018
UPLINK_SPEED_MBPS = 10_000
#: descriptors fetched per DMA read, and descriptors one queue may process per turn of a DMA engine
DESC_FETCH_BATCH = 8
QUEUE_BUDGET = 64
#: descriptors written back per DMA write, at most (128 bytes: the smallest Max_Payload_Size); a
#: turn writes back what it completed in such batches, the last one before its interrupt
WB_BATCH = 8
#: DMA engines shared by every queue of every function, served round-robin one turn at a time
DMA_ENGINES = 4
#: a TX frame may span at most this many descriptors; longer chains complete with ERR_LEN
TX_MAX_FRAME_DESCS = 16

#: Completion Timeout Ranges Supported (Device Capabilities 2): Range A (50 us-10 ms) and B (10-250 ms);
#: Completion Timeout Disable is supported too
COMPLETION_TIMEOUT_RANGES = 0x3
#: the timeout the device applies to its own reads, by Device Control 2 Completion Timeout Value
#: (PCIe Base 6.0 §7.5.3.16); the default value 0 (50 us-50 ms) and unsupported values mean 10 ms
COMPLETION_TIMEOUT_NS = {0x0: 10_000_000, 0x1: 100_000, 0x2: 10_000_000, 0x5: 55_000_000, 0x6: 210_000_000}


def completion_timeout_ns(value: int, disabled: bool) -> int | None:
    """The device's Completion Timeout for Device Control 2 ``value``; None when ``disabled``."""
    return None if disabled else COMPLETION_TIMEOUT_NS.get(value, COMPLETION_TIMEOUT_NS[0])


#: receive-side scaling per function (Microsoft RSS): a Toeplitz key of RSS_KEY_SIZE bytes and
#: an indirection table of RSS_RETA_SIZE entries, indexed by the hash's low bits
RSS_KEY_SIZE = 40
RSS_RETA_SIZE = 64
#: bits of an indirection table entry (a queue index of the function)
RSS_RETA_ENTRY_BITS = 4
#: TCP segmentation: the payload of one TSE frame is 1..TSO_MAX_PAYLOAD bytes, cut into segments
#: of MSS bytes (MSS >= TSO_MIN_MSS)
TSO_MAX_PAYLOAD = 65536
TSO_MIN_MSS = 64

#: largest blob a LOAD accepts (PF_MIG_LEN); a VF's blob is about 1 KiB
MIG_BLOB_MAX = 64 * 1024

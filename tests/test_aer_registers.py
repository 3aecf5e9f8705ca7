"""AER without a simulator: a function's error logging (severity, masks, First Error Pointer,
Header Log, Advisory Non-Fatal), the root port's Root Error Status, Linux's vote merging."""

from conftest import run_sync

from datasheet import device, pci
from iommu.aer import RootPortAerCapability
from model.pcie.caps.aer import NicAerCapability
from pcicore.driver import PciErsResult, merge_result

MRD = bytes.fromhex("00000001 0100000f c0100018")
MWR = bytes.fromhex("40000001 0000000f c0100018")


def rd(cap, off):
    return run_sync(cap.read_register(off // 4))


def wr(cap, off, value):
    run_sync(cap.write_register(off // 4, value, 0xF))


def words(header: bytes) -> list[int]:
    raw = header.ljust(16, b"\0")
    return [int.from_bytes(raw[i : i + 4], "big") for i in range(0, 16, 4)]


def test_first_error_takes_the_header_log_and_later_ones_do_not():
    cap = NicAerCapability()
    first = cap.record(pci.PCI_ERR_UNC_UNSUP, MWR)
    assert (first.severity, first.message, first.logged) == ("nonfatal", pci.PCI_MSG_ERR_NONFATAL, True)
    second = cap.record(pci.PCI_ERR_UNC_COMP_ABORT, MRD)
    assert second.message == pci.PCI_MSG_ERR_NONFATAL and not second.logged
    assert rd(cap, pci.PCI_ERR_UNCOR_STATUS) == pci.PCI_ERR_UNC_UNSUP | pci.PCI_ERR_UNC_COMP_ABORT
    assert rd(cap, pci.PCI_ERR_CAP) & pci.PCI_ERR_CAP_FEP_MASK == 20  # all 5 bits of the pointer
    assert [rd(cap, pci.PCI_ERR_HEADER_LOG + 4 * i) for i in range(4)] == words(MWR)
    # software clears the first error: the next one is logged again, the same bit included
    wr(cap, pci.PCI_ERR_UNCOR_STATUS, pci.PCI_ERR_UNC_UNSUP)
    again = cap.record(pci.PCI_ERR_UNC_UNSUP, MRD)
    assert again.logged and [rd(cap, pci.PCI_ERR_HEADER_LOG + 4 * i) for i in range(4)] == words(MRD)


def test_masked_errors_set_status_only_and_severity_picks_the_message():
    cap = NicAerCapability()
    wr(cap, pci.PCI_ERR_UNCOR_MASK, pci.PCI_ERR_UNC_UNSUP)
    masked = cap.record(pci.PCI_ERR_UNC_UNSUP, MWR)
    assert (masked.message, masked.why, masked.logged) == (None, "masked", False)
    assert rd(cap, pci.PCI_ERR_UNCOR_STATUS) == pci.PCI_ERR_UNC_UNSUP
    assert rd(cap, pci.PCI_ERR_CAP) & pci.PCI_ERR_CAP_FEP_MASK == 0
    fatal = cap.record(pci.PCI_ERR_UNC_MALF_TLP, MWR)  # fatal by default severity
    assert (fatal.severity, fatal.message) == ("fatal", pci.PCI_MSG_ERR_FATAL)
    wr(cap, pci.PCI_ERR_UNCOR_SEVER, rd(cap, pci.PCI_ERR_UNCOR_SEVER) | pci.PCI_ERR_UNC_COMP_TIME)
    assert cap.record(pci.PCI_ERR_UNC_COMP_TIME, MRD).message == pci.PCI_MSG_ERR_FATAL


def test_advisory_non_fatal_is_correctable_and_masked_by_default():
    cap = NicAerCapability()
    quiet = cap.record(pci.PCI_ERR_UNC_COMP_ABORT, MRD, advisory=True)
    assert (quiet.severity, quiet.message, quiet.logged) == ("advisory", None, True)
    assert rd(cap, pci.PCI_ERR_COR_STATUS) == pci.PCI_ERR_COR_ADV_NFAT
    wr(cap, pci.PCI_ERR_COR_MASK, rd(cap, pci.PCI_ERR_COR_MASK) & ~pci.PCI_ERR_COR_ADV_NFAT)
    assert cap.record(pci.PCI_ERR_UNC_UNX_COMP, MRD, advisory=True).message == pci.PCI_MSG_ERR_COR
    # a fatal severity is never advisory
    wr(cap, pci.PCI_ERR_UNCOR_SEVER, pci.PCI_ERR_UNC_UNX_COMP)
    assert cap.record(pci.PCI_ERR_UNC_UNX_COMP, MRD, advisory=True).message == pci.PCI_MSG_ERR_FATAL
    # correctable bits share positions with uncorrectable ones: the caller says which
    replay = cap.record(pci.PCI_ERR_COR_REP_TIMER, correctable=True)
    assert replay.message == pci.PCI_MSG_ERR_COR and rd(cap, pci.PCI_ERR_COR_STATUS) & pci.PCI_ERR_COR_REP_TIMER
    assert not rd(cap, pci.PCI_ERR_UNCOR_STATUS) & pci.PCI_ERR_UNC_POISON_TLP


def test_ecrc_enables_are_read_only_without_the_capability():
    cap = NicAerCapability()
    wr(cap, pci.PCI_ERR_CAP, 0xFFFFFFFF)
    assert rd(cap, pci.PCI_ERR_CAP) == pci.PCI_ERR_CAP_CTO_LOG


def test_root_port_records_the_first_message_of_each_kind_and_interrupts_once():
    fired = []
    cap = RootPortAerCapability(lambda: fired.append(True))
    assert cap.length * 4 == pci.PCI_ERR_ROOT_SIZEOF
    assert not cap.receive(pci.PCI_MSG_ERR_NONFATAL, 0x0101)  # Root Error Command off: no interrupt
    wr(cap, pci.PCI_ERR_ROOT_COMMAND, pci.PCI_ERR_ROOT_CMD_NONFATAL_EN)
    assert fired == [True]  # enabled while a Message is pending: the rising edge
    assert not cap.receive(pci.PCI_MSG_ERR_FATAL, 0x0102)  # folded into "multiple"
    status = rd(cap, pci.PCI_ERR_ROOT_STATUS)
    assert status & pci.PCI_ERR_ROOT_MULTI_UNCOR_RCV and status & pci.PCI_ERR_ROOT_FATAL_RCV
    assert not status & pci.PCI_ERR_ROOT_FIRST_FATAL
    assert rd(cap, pci.PCI_ERR_ROOT_ERR_SRC) >> 16 == 0x0101  # the first source stays
    wr(cap, pci.PCI_ERR_ROOT_STATUS, status)  # the host clears what it read
    wr(cap, pci.PCI_ERR_ROOT_COMMAND, pci.PCI_ERR_ROOT_CMD_COR_EN | pci.PCI_ERR_ROOT_CMD_FATAL_EN)
    assert cap.receive(pci.PCI_MSG_ERR_COR, 0x0103) and cap.receive(pci.PCI_MSG_ERR_FATAL, 0x0104)
    assert rd(cap, pci.PCI_ERR_ROOT_ERR_SRC) == 0x0104 << 16 | 0x0103
    assert rd(cap, pci.PCI_ERR_ROOT_STATUS) & pci.PCI_ERR_ROOT_FIRST_FATAL


def test_merge_result_is_linux_merge_result():
    r = PciErsResult
    assert merge_result(r.CAN_RECOVER, r.NEED_RESET) is r.NEED_RESET
    assert merge_result(r.NEED_RESET, r.RECOVERED) is r.NEED_RESET
    assert merge_result(r.RECOVERED, r.NONE) is r.RECOVERED
    assert merge_result(r.DISCONNECT, r.NEED_RESET) is r.NEED_RESET
    assert merge_result(r.DISCONNECT, r.RECOVERED) is r.DISCONNECT
    assert merge_result(r.RECOVERED, r.NO_AER_DRIVER) is r.NO_AER_DRIVER


def test_message_codes_ride_in_the_byte_enables_and_timeouts_follow_device_control_2():
    for code in pci.PCI_MSG_ERR_NAMES:
        assert pci.msg_code(*pci.msg_code_byte_enables(code)) == code
    assert pci.msg_code_byte_enables(pci.PCI_MSG_ERR_FATAL) == (0x3, 0x3)
    assert device.completion_timeout_ns(0x1, False) == 100_000
    assert device.completion_timeout_ns(0x9, False) == device.COMPLETION_TIMEOUT_NS[0]  # unsupported: default
    assert device.completion_timeout_ns(0x1, True) is None

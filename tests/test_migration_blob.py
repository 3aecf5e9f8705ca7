"""The migration blob format (datasheet.migration) and the VFIO state machine's arcs
(pf_driver.migration), without a simulator."""

import struct
import zlib

import pytest

from datasheet import migration as mig
from datasheet.migration import Blob, BlobError, Compat, MigError, MigState, Section, SectionType
from pf_driver.migration import DEVICE_STATE, VFIO_ARCS, MigrationError, VfioMigState, mig_path

S = VfioMigState


def sample() -> Blob:
    sections = [Section.of_words(kind, list(range(mig.section_words(kind, Compat())))) for kind in mig.DEVICE_SECTIONS]
    sections.append(Section(int(SectionType.PF_POLICY), b'{"mac": "02"}', mig.SECTION_HOST))
    return Blob(Compat(total_vfs=8), 5, sections)


def test_pack_parse_round_trip_and_layout():
    raw = sample().pack()
    assert raw[:4] == b"SRMG" and struct.unpack_from("<HH", raw, 4) == mig.FORMAT_VERSION
    assert struct.unpack_from("<I", raw, 12)[0] == len(raw)
    crc = struct.unpack_from("<I", raw, mig.CRC_OFFSET)[0]
    assert crc == zlib.crc32(raw[: mig.CRC_OFFSET] + bytes(4) + raw[mig.CRC_OFFSET + 4 :])
    back = Blob.parse(raw)
    assert back == sample()
    assert back.section(SectionType.QUEUES).words == list(range(mig.section_words(SectionType.QUEUES, Compat())))
    assert [s.type for s in back.device_part().sections] == list(map(int, mig.DEVICE_SECTIONS))
    assert len(raw) % 4 == 0  # the 13-byte policy is padded


@pytest.mark.parametrize(
    ("tamper", "error"),
    [
        (lambda r: r[:10], MigError.BAD_MAGIC),
        (lambda r: b"XXXX" + r[4:], MigError.BAD_MAGIC),
        (lambda r: r + bytes(4), MigError.BAD_MAGIC),  # total length no longer matches
        (lambda r: r[:4] + struct.pack("<H", 2) + r[6:], MigError.BAD_VERSION),
        (lambda r: r[:-1] + bytes([r[-1] ^ 0x80]), MigError.BAD_CRC),
        (lambda r: r[:60] + bytes([r[60] ^ 1]) + r[61:], MigError.BAD_CRC),
    ],
)
def test_parse_refuses_with_the_device_error_code(tamper, error):
    with pytest.raises(BlobError) as info:
        Blob.parse(tamper(sample().pack()))
    assert info.value.error is error and error.name in str(info.value)


def reseal(raw: bytes) -> bytes:
    out = bytearray(raw)
    struct.pack_into("<I", out, mig.CRC_OFFSET, 0)
    struct.pack_into("<I", out, mig.CRC_OFFSET, zlib.crc32(out))
    return bytes(out)


def test_a_section_running_past_the_end_is_malformed_even_with_a_valid_crc():
    raw = bytearray(sample().pack())
    struct.pack_into("<I", raw, mig.HEADER_SIZE + 4, 1 << 20)  # first section's length
    with pytest.raises(BlobError) as info:
        Blob.parse(reseal(bytes(raw)))
    assert info.value.error is MigError.MALFORMED


def test_every_device_state_has_its_arcs_and_every_vfio_state_a_device_state():
    assert set(mig.DEVICE_ARCS) == set(MigState)
    for state, targets in mig.DEVICE_ARCS.items():
        assert state not in targets and all(state in mig.DEVICE_ARCS[t] for t in targets)  # arcs go both ways
    assert set(DEVICE_STATE) == set(S) - {S.ERROR}
    for state, targets in VFIO_ARCS.items():
        for target in targets:  # a VFIO arc needs at most one device arc
            a, b = DEVICE_STATE[state], DEVICE_STATE[target]
            assert a is b or b in mig.DEVICE_ARCS[a], (state, target)


def test_vfio_paths_are_the_cores_shortest():
    assert mig_path(S.RUNNING, S.STOP) == [S.RUNNING_P2P, S.STOP]
    assert mig_path(S.RUNNING, S.STOP_COPY) == [S.RUNNING_P2P, S.STOP, S.STOP_COPY]
    assert mig_path(S.PRE_COPY, S.STOP_COPY) == [S.PRE_COPY_P2P, S.STOP_COPY]
    assert mig_path(S.STOP_COPY, S.RESUMING) == [S.STOP, S.RESUMING]
    assert mig_path(S.RESUMING, S.RUNNING) == [S.STOP, S.RUNNING_P2P, S.RUNNING]
    with pytest.raises(MigrationError):
        mig_path(S.RUNNING, S.ERROR)
    with pytest.raises(MigrationError):
        mig_path(S.ERROR, S.RUNNING)

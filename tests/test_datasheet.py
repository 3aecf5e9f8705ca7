"""The datasheet is self-consistent and the helpers compute Routing IDs per the SR-IOV spec."""

import pytest

from datasheet import device, docgen, pci, regs
from datasheet import mailbox as mbx
from tb.paths import ROOT


def test_registers_are_aligned_unique_and_fit_their_bars():
    for is_vf in (False, True):
        offsets = regs.element_offsets(is_vf)
        assert len(offsets) == sum(r.count for r in regs.registers_for(is_vf))
    for r in regs.REGISTERS:
        assert r.offset % 4 == 0 and r.stride % 4 == 0
        limit = device.PF_REG_BAR_SIZE if r.scope is regs.Scope.PF else device.VF_REG_BAR_SIZE
        assert r.end <= limit
        for f in r.fields:
            assert f.mask & ~0xFFFFFFFF == 0
        if r.access is regs.Access.RO:
            assert r.write_mask == 0


def test_vf_register_set_excludes_pf_only():
    names = {r.name for r in regs.registers_for(is_vf=True)}
    assert "PF_NUM_VFS" not in names and "NIC_ID" in names
    assert "PF_NUM_VFS" in {r.name for r in regs.registers_for(is_vf=False)}


def test_field_get_put_roundtrip():
    f = regs.FUNC_INFO.field("VF_INDEX")
    v = f.put(0xFFFFFFFF, 0x123)
    assert f.get(v) == 0x123 and v & ~f.mask == 0xFFFFFFFF & ~f.mask
    with pytest.raises(KeyError):
        regs.CTRL.field("NOPE")


@pytest.mark.parametrize(
    "pf_rid,offset,stride,n,expected",
    [
        (0x0100, 1, 1, 0, 0x0101),  # first VF right after the PF (ARI)
        (0x0100, 1, 1, 7, 0x0108),  # past function 7: devfn 0x08 = device 1 function 0
        (0x0100, 1, 1, 255, 0x0200),  # spills onto the next bus
        (0x0100, 0x100, 1, 0, 0x0200),  # no ARI: start on the next bus
        (0x0180, 0x80, 2, 3, 0x0206),  # an 82576-like offset/stride
    ],
)
def test_vf_rid(pf_rid, offset, stride, n, expected):
    assert pci.vf_rid(pf_rid, offset, stride, n) == expected


def test_rid_str_matches_lspci():
    assert pci.rid_str(0x0108) == "01:01.0"
    assert pci.rid_str(0x02FF) == "02:1f.7"


def test_sriov_layout_is_the_spec_layout():
    # SR-IOV 1.1 §3.3: 0x40 bytes, VF BAR0 at 0x24, migration state offset at 0x3C
    assert pci.PCI_SRIOV_BAR == 0x24 and pci.PCI_SRIOV_VFM == 0x3C and pci.PCI_SRIOV_SIZEOF == 0x40
    assert pci.PCI_SRIOV_BAR + 4 * pci.PCI_SRIOV_NUM_BARS == pci.PCI_SRIOV_VFM
    assert device.SUPPORTED_PAGE_SIZES & 1  # 4K must be supported


@pytest.mark.parametrize("name", ["registers.md", "mailbox.md", "datapath.md", "migration.md"])
def test_generated_docs_are_current(name):
    committed = (ROOT / "docs" / name).read_text()
    assert committed == docgen.DOCS[name](), f"docs/{name} is stale: run `make docs`"


def test_mailbox_message_encoding_roundtrip_and_limits():
    msg = mbx.Message(mbx.Opcode.RESET, mbx.mac_to_words(bytes.fromhex("025f01000003")), ack=True, cts=True)
    words = msg.encode()
    assert words[0] == (1 << 31) | (1 << 29) | (2 << 16) | 0x0001
    back = mbx.Message.decode(words + [0xDEAD] * 13)
    assert back.payload == msg.payload and back.ack and back.cts and not back.nack
    assert mbx.words_to_mac(back.payload) == bytes.fromhex("025f01000003")
    with pytest.raises(ValueError):
        mbx.Message(1, [0] * 16).encode()
    # a header claiming more than the buffer holds keeps its declared length for validation
    hostile = mbx.Message.decode([0x00FF0002] + [0] * 15)
    assert hostile.declared_len == 0xFF and len(hostile.payload) == mbx.MAX_PAYLOAD
    assert {m.opcode for m in mbx.MESSAGES} == set(mbx.Opcode)

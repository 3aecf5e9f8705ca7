"""Tests of MyVfDriver against the simulated NIC: ``sriov-nic run test_my_vf_driver.py``."""

import cocotb
from my_vf_driver import MyVfDriver

from datasheet import descriptors as d
from tb.lib.system import build_system

PARTNER = bytes.fromhex("020000000001")


def frame(dst: bytes, src: bytes, payload: bytes) -> bytes:
    return dst + src + b"\x88\xb5" + payload.ljust(46, b"\0")  # local experimental EtherType


@cocotb.test()
async def probe_does_the_reset_handshake(dut):
    system = await build_system(dut, total_vfs=4, iommu=True)
    (vf,) = await system.enable_vfs(1, driver=MyVfDriver)
    assert vf.mac == system.pf.vf_info(0).mac and vf.num_queues >= 1


@cocotb.test()
async def frames_go_out_and_come_in(dut):
    system = await build_system(dut, total_vfs=4, iommu=True)
    (vf,) = await system.enable_vfs(1, driver=MyVfDriver)
    system.attach_vf_domain(vf)  # its own IOMMU domain: the IOVAs it programs are its own
    await vf.open()
    out = frame(PARTNER, vf.mac, b"to the link partner")
    status = await vf.send(out)
    assert status & d.STATUS_DD.mask and not status & d.STATUS_ERR_DMA.mask
    assert await system.nic.uplink.recv() == out
    back = frame(vf.mac, PARTNER, b"to my VF")
    assert await system.nic.uplink.send(back)
    assert await vf.receive() == back

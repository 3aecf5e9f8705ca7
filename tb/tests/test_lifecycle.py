"""VF FLR and software reset during traffic, pcap capture of the switch."""

import cocotb
from cocotb.triggers import Timer, gather
from scapy.utils import rdpcap

import pcicore
from datasheet import regs
from datasheet.descriptors import QueueError
from pf_driver.vf_info import VfState
from tb.lib.timing import expect_within
from tb.paths import BUILD_DIR
from tb.tests.test_datapath import frame, recv, up


async def stream(src, dst, count, tag, patience_us=500):
    """Send ``count`` frames; give up if the ring stays full for ``patience_us`` (device reset)."""
    for n in range(count):
        waited = 0
        while not await src.start_xmit(frame(src.mac, dst.mac, tag + n)):
            if waited >= patience_us:
                return n
            await Timer(2, "us")
            waited += 2
        await Timer(2, "us")
    return count


@cocotb.test()
async def vf_flr_during_traffic_others_lose_nothing(dut):
    """FLR of VF0 mid-traffic: VF0's queues stop, its filters go, others lose nothing."""
    sys_, vfs = await up(dut, num_vfs=4)
    vf0_port = 1
    flows = [cocotb.start_soon(stream(vfs[1], vfs[2], 60, 1000)), cocotb.start_soon(stream(vfs[0], vfs[3], 200, 5000))]
    await Timer(30, "us")
    await pcicore.pcie_flr(vfs[0].pdev)
    await gather(*flows)
    got = [await recv(vfs[2].netdev) for _ in range(60)]
    assert got == [frame(vfs[1].mac, vfs[2].mac, 1000 + n) for n in range(60)]
    ctl = await vfs[0].read_reg(regs.TXDCTL, 0)  # queues stopped by the FLR; the
    assert not regs.TXDCTL.field("ENABLE").get(ctl)  # driver's later doorbells are refused
    assert regs.TXDCTL.field("ERR").get(ctl) == QueueError.DISABLED_DOORBELL
    await expect_within(lambda: sys_.pf.vf_info(0).state is VfState.NOT_RESET)
    await Timer(20, "us")
    ctrl = await sys_.pf.read_reg(regs.SW_FN_CTRL, vf0_port)
    assert not regs.SW_FN_CTRL.field("RX_EN").get(ctrl)
    assert not regs.SW_MAC_HI.field("VALID").get(await sys_.pf.read_reg(regs.SW_MAC_HI, vf0_port))
    # frames VF0 had queued but the device had not sent are gone; nothing of VF0 leaks later
    sent_before = await vfs[3].read_reg(regs.STATS[4])  # VF3 RX_PACKETS
    await Timer(50, "us")
    assert await vfs[3].read_reg(regs.STATS[4]) == sent_before
    # VF0's old MAC is no longer claimed inside the NIC: such frames leave by the uplink
    assert await vfs[1].start_xmit(frame(vfs[1].mac, vfs[0].mac, 9))
    assert await sys_.nic.uplink.recv(timeout_ns=100_000) == frame(vfs[1].mac, vfs[0].mac, 9)


@cocotb.test()
async def vf_software_reset_notifies_pf_and_recovers(dut):
    """CTRL.RST on a VF: VFLR to the PF, RSTD to the VF driver, which redoes the handshake and
    rebuilds its rings; traffic flows again; the other VF was never disturbed."""
    sys_, vfs = await up(dut, num_vfs=2)
    await vfs[0].write_reg(regs.CTRL, regs.CTRL.field("RST").mask)
    await expect_within(lambda: vfs[0].resets == 1 and vfs[0].ready)
    assert sys_.pf.vf_info(0).state is VfState.CONFIGURED  # handshake redone, rings re-sent
    assert sys_.pf.vf_info(1).state is VfState.CONFIGURED
    pkt = frame(vfs[1].mac, vfs[0].mac, 3)
    assert await vfs[1].start_xmit(pkt)
    assert await recv(vfs[0].netdev) == pkt
    pkt = frame(vfs[0].mac, vfs[1].mac, 4)
    assert await vfs[0].start_xmit(pkt)
    assert await recv(vfs[1].netdev) == pkt
    assert vfs[1].resets == 0


@cocotb.test()
async def pcap_records_every_frame_entering_the_switch(dut):
    sys_, vfs = await up(dut, num_vfs=2)
    path = BUILD_DIR / "test_capture.pcap"
    sys_.nic.open_pcap(path)
    sent = [frame(vfs[0].mac, vfs[1].mac, 1), frame(vfs[1].mac, "ff:ff:ff:ff:ff:ff", 2)]
    for vf, pkt in zip(vfs, sent):
        assert await vf.start_xmit(pkt)
        await Timer(20, "us")
    inbound = frame(bytes.fromhex("00163e000001"), vfs[0].mac, 3)
    await sys_.nic.uplink.send(inbound)
    await Timer(20, "us")
    sys_.nic.close_pcap()
    assert [bytes(p) for p in rdpcap(str(path))] == sent + [inbound]


@cocotb.test()
async def pf_reset_with_traffic_rebuilds_every_port(dut):
    """PF reset: VFs see RSTI then RSTD and rebuild; the PF's own port and rings come back too."""
    sys_, vfs = await up(dut, num_vfs=2, open_pf=True)
    await sys_.pf.reset()
    await expect_within(lambda: all(vf.ready and vf.resets == 1 for vf in vfs))
    pkt = frame(vfs[0].mac, "ff:ff:ff:ff:ff:ff", 11)
    assert await vfs[0].start_xmit(pkt)
    assert await recv(vfs[1].netdev) == pkt
    assert await recv(sys_.pf.netdev) == pkt
    pkt = frame(sys_.pf.mac, vfs[1].mac, 12)
    assert await sys_.pf.netdev.start_xmit(pkt)
    assert await recv(vfs[1].netdev) == pkt

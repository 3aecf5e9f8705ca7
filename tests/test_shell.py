"""``sriov-nic shell`` driven without a terminal: commands piped in, output checked."""

import subprocess
import sys

import pytest

from datasheet import device
from tb.paths import BUILD_DIR

SCRIPT = """\
nic_id = await vfs[1].read_reg(regs.NIC_ID)
print("NIC_ID", hex(nic_id), "VFs", len(vfs))
await Timer(1, "us")
await vfs[0].open(); await vfs[1].open()
await vfs[0].start_xmit(frame(vfs[0].mac, vfs[1].mac, b"from the shell"))
queue, got = await vfs[1].netdev.recv()
print("RECEIVED", got.endswith(b"from the shell"))
print("LSPCI", (await lspci(vfs[0].pdev)).splitlines()[0])
exit
"""


@pytest.mark.sim
def test_shell_runs_piped_commands_inside_the_simulation():
    """Registers read through a VF's BAR, a frame sent VF to VF, lspci, and the prompt shows
    the simulated time, which advances as commands await (a Timer: on the fast fabric MMIO
    takes no simulated time)."""
    out = subprocess.run(
        [sys.executable, "-m", "tb.tools.cli", "shell", "--num-vfs", "2", "--iommu", "--build-dir", str(BUILD_DIR)],
        input=SCRIPT,
        capture_output=True,
        text=True,
        timeout=600,
    ).stdout
    assert f"NIC_ID {device.NIC_ID_MAGIC:#x} VFs 2" in out, out[-3000:]
    assert "RECEIVED True" in out, out[-3000:]
    assert "LSPCI 01:00.1 Ethernet controller" in out, out[-3000:]
    times = [int(line.split()[-1]) for line in out.splitlines() if line.startswith("sim time:")]
    assert len(times) >= 3 and times == sorted(times) and times[-1] > times[0], times
    assert "tb.tools.shell.shell           PASS" in out or "PASS=1" in out

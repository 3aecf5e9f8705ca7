"""``sriov-nic shell`` / ``make shell``: IPython inside a running simulation.

The cocotb test below builds a system (``NUM_VFS`` VFs enabled, ``IOMMU=1`` for VT-d, as
set by :mod:`tb.tools.cli`) and opens cocotb's own IPython embedding, where ``await``
runs the simulation until the awaited thing completes and the prompt shows the simulated
time.  In scope: ``system``, ``nic``, ``pf``, ``vfs``, ``regs``, ``device``, ``mbx``,
``pcicore``, ``Timer``, ``lspci`` (``print(await lspci(vfs[0].pdev))``) and ``frame``
(a UDP frame between two MACs)::

    In [1]: hex(await vfs[0].read_reg(regs.NIC_ID))
    In [2]: await vfs[0].open(); await vfs[1].open()
    In [3]: await vfs[0].start_xmit(frame(vfs[0].mac, vfs[1].mac)); await vfs[1].netdev.recv()
    In [4]: await pcicore.pcie_flr(vfs[1].pdev)
"""

from __future__ import annotations

import os
import warnings

import cocotb
from cocotb.triggers import Timer

import pcicore
from datasheet import device, regs
from datasheet import mailbox as mbx
from tb.lib.system import build_system
from tb.tools.lspci import lspci

BANNER = "sriov-nic shell: system, nic, pf, vfs, regs, device, mbx, pcicore, lspci, frame, Timer; `await` runs the sim"


def frame(src: bytes, dst: bytes, payload: bytes = b"hello") -> bytes:
    """An Ethernet/IPv4/UDP frame from ``src`` to ``dst`` (MACs as bytes)."""
    from scapy.layers.inet import IP, UDP  # noqa: PLC0415 -- scapy is slow to import
    from scapy.layers.l2 import Ether  # noqa: PLC0415

    return bytes(Ether(src=mbx.mac_str(src), dst=mbx.mac_str(dst)) / IP() / UDP() / payload)


@cocotb.test()
async def shell(dut: object) -> None:
    """Build the system, enable the VFs, then hand the prompt to the user."""
    from cocotb_tools.ipython_support import embed  # noqa: PLC0415 -- IPython is the optional [shell] extra

    # cocotbext-pcie's own use of a deprecated cocotb call is not the user's business
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"cocotbext\.")
    iommu = os.environ.get("IOMMU", "0") == "1"
    system = await build_system(dut, total_vfs=int(os.environ.get("TOTAL_VFS", "16")), iommu=iommu)
    vfs = await system.enable_vfs(int(os.environ.get("NUM_VFS", "2")))
    if iommu:
        for vf in vfs:
            system.attach_vf_domain(vf)
    print(BANNER, flush=True)
    await embed(
        {
            "system": system,
            "nic": system.nic,
            "pf": system.pf,
            "vfs": vfs,
            "regs": regs,
            "device": device,
            "mbx": mbx,
            "pcicore": pcicore,
            "lspci": lspci,
            "frame": frame,
            "Timer": Timer,
        }
    )

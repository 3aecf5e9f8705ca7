"""Deliberate faults, to prove the scoreboard sees them.  Each patches one instance of the
running system for one event and restores it; none edits ``model/`` or the drivers.

* :func:`misroute_once` -- the switch hands the next VF-to-VF unicast frame to a
  different function than the one owning the destination MAC.
* :func:`corrupt_once` -- one byte of the next frame a VF's RX queue takes is flipped
  on its way to host memory.
* :func:`share_domain` -- the host attaches one VF's requester ID to another VF's
  IOMMU domain without telling anyone (a hypervisor bug): its DMA is now translated
  with the other VF's page tables.
"""

from __future__ import annotations


def misroute_once(nic, ports: set[int]) -> dict:
    """Next unicast frame from one VF port to another in ``ports`` goes to the wrong one."""
    switch = nic.switch
    original = switch._switch
    done = {"frame": None, "to": None}

    def wrong(tables, frame, src, vid):
        dst = bytes(frame[0:6])
        owners = [f.fn for f in tables.filters if f.mac == dst]
        if done["frame"] is None and src in ports and owners and owners[0] in ports and not dst[0] & 1:
            victim = next(p for p in sorted(ports) if p not in (src, owners[0]))
            done["frame"], done["to"] = bytes(frame), victim
            switch._switch = original
            nic.rx_deliver(victim, frame)          # the owner never gets it
            return None
        return original(tables, frame, src, vid)

    switch._switch = wrong
    return done


def corrupt_once(nic, vf_index: int, offset: int = 40) -> dict:
    """Flip one byte of the next frame VF ``vf_index``'s RX queue accepts."""
    queues = nic.vfs[vf_index].queues
    original = queues.deliver
    done = {"frame": None}

    def flipped(queue, frame):
        if done["frame"] is None and len(frame) > offset:
            done["frame"] = bytes(frame)
            queues.deliver = original
            frame = bytearray(frame)
            frame[offset] ^= 0x5A
            return original(queue, bytes(frame))
        return original(queue, frame)

    queues.deliver = flipped
    return done


def share_domain(system, victim_vf, owner_vf) -> None:
    """Attach ``victim_vf``'s RID to ``owner_vf``'s domain behind the platform's back."""
    domain = owner_vf.dma.domain
    system.iommu_driver.attach_device(domain, int(victim_vf.pdev.pcie_id))


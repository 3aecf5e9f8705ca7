"""A guest's VF driver: probe, the reset handshake over the mailbox, rings and the net
device (``netdev/``), link notifications and recovery after a reset."""

from vf_driver.driver import VfDriver

__all__ = ["VfDriver"]

"""A guest's VF driver: probe (later: reset handshake over the mailbox, rings)."""

from vf_driver.driver import VfDriver

__all__ = ["VfDriver"]

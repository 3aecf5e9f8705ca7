"""The host's PF driver: probe, SR-IOV enabling, (later) mailbox service and VF policy."""

from pf_driver.driver import PfDriver

__all__ = ["PfDriver"]

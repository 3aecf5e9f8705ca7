"""The host's PF driver: probe, SR-IOV enabling (``sriov_configure``), the mailbox service
and VF requests, the embedded switch's filters, VF policy (``ndo_set_vf_*``) and VF error
events (malicious driver detection)."""

from pf_driver.driver import PfDriver

__all__ = ["PfDriver"]

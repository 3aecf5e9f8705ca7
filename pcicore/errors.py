"""Errors of the host PCI core."""


class PciError(Exception):
    """A host-side PCI operation could not be carried out."""

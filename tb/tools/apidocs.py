"""``make docs``: the API reference of the public entry points, generated with pdoc from the
docstrings and type hints into ``docs/api/`` (not committed: run ``make docs``).

Warnings (a name in ``__all__`` that does not resolve, a broken cross-reference) are
errors, so CI (``tests/test_apidocs.py``) keeps the reference warning-free.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from tb.paths import ROOT

#: the modules a driver developer or verification engineer calls (a package's submodules
#: follow unless its ``__all__`` leaves them out: those are named here)
API_MODULES = (
    "model",
    "model.events",
    "model.inject",
    "pf_driver",
    "vf_driver",
    "pcicore",
    "pcicore.raw",
    "iommu",
    "iommu.events",
    "netdev",
    "observe",
    "datasheet",
    "tb.lib.system",
    "tb.lib.timing",
    "tb.tools.cli",
)
OUT = ROOT / "docs" / "api"


def build(out: Path = OUT) -> subprocess.CompletedProcess:
    """Run pdoc (every warning an error) into ``out``; returns the finished process."""
    return subprocess.run(
        [sys.executable, "-W", "error", "-m", "pdoc", "--no-search", "-o", str(out), *API_MODULES],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-o", "--out", default=str(OUT))
    done = build(Path(ap.parse_args(argv).out))
    sys.stderr.write(done.stderr)
    if done.returncode == 0:
        print(f"API reference: {Path(ap.parse_args(argv).out) / 'index.html'}")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())

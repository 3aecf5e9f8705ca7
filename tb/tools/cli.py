"""``sriov-nic``: the model from your own project.

::

    sriov-nic run tests/test_my_driver.py [--testcase probe] [--seed 7] [--waves]
    sriov-nic run my_pkg.test_module --build-dir /tmp/nic
    sriov-nic lspci --num-vfs 4
    sriov-nic shell --num-vfs 4 --iommu

``run`` runs your cocotb modules (dotted names, or paths to ``.py`` files) against the
NIC's Verilator harness. The harness is built once into ``./sim_build`` of the current
directory (or ``--build-dir``), never into the installed package; your modules import
from the current directory and from each file's own folder. ``shell`` opens IPython
inside a running simulation (:mod:`tb.tools.shell`; needs the ``shell`` extra:
``pip install 'sriov-nic[shell]'``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from xml.etree import ElementTree

from tb.tools import lspci as lspci_tool

__all__ = ["main", "resolve_modules"]


def resolve_modules(specs: list[str], cwd: Path) -> tuple[list[str], list[Path]]:
    """(module names, import folders) for ``specs``: a path to a ``.py`` file becomes its stem,
    imported from its folder; a dotted name is imported from ``cwd``."""
    modules: list[str] = []
    folders: list[Path] = [cwd]
    for spec in specs:
        path = (cwd / spec) if not Path(spec).is_absolute() else Path(spec)
        if spec.endswith(".py") or path.is_file():
            if not path.is_file():
                raise SystemExit(f"sriov-nic: no such file: {spec}")
            modules.append(path.stem)
            folder = path.resolve().parent
            if folder not in folders:
                folders.append(folder)
        else:
            modules.append(spec)
    return modules, folders


def _build_root(args: argparse.Namespace) -> Path | None:
    return Path(args.build_dir).resolve() if args.build_dir else None


def cmd_run(args: argparse.Namespace) -> int:
    from tb.tools.runner import run  # noqa: PLC0415 -- imports cocotb's runner only when simulating

    modules, folders = resolve_modules(args.modules, Path.cwd())
    build_root = _build_root(args) or Path.cwd() / "sim_build"
    results = Path(args.results).resolve() if args.results else build_root / "results.xml"
    run(
        modules,
        testcase=args.testcase,
        waves=args.waves,
        results_xml=results,
        seed=args.seed,
        build_root=build_root,
        pythonpath=folders,
    )
    root = ElementTree.parse(results).getroot()
    cases = root.findall(".//testcase")
    failed = sum(1 for c in cases if c.find("failure") is not None or c.find("error") is not None)
    skipped = sum(1 for c in cases if c.find("skipped") is not None)
    print(
        f"{len(cases) - failed - skipped}/{len(cases)} passed, {skipped} skipped, {failed} failed; results in {results}"
    )
    if args.waves:
        print(f"waveform: {build_root / 'dump.fst'}")
    return 1 if failed or not cases else 0


def cmd_lspci(args: argparse.Namespace) -> int:
    sys.stdout.write(lspci_tool.simulate(args.num_vfs, args.total_vfs, _build_root(args) or Path.cwd() / "sim_build"))
    return 0


def cmd_shell(args: argparse.Namespace) -> int:
    try:
        import IPython  # noqa: F401, PLC0415 -- only to say what is missing before building anything
    except ImportError:
        raise SystemExit("sriov-nic shell needs IPython: pip install 'sriov-nic[shell]' (or make shell)") from None
    from tb.tools.runner import run  # noqa: PLC0415

    build_root = _build_root(args) or Path.cwd() / "sim_build"
    env = {"NUM_VFS": str(args.num_vfs), "TOTAL_VFS": str(args.total_vfs), "IOMMU": "1" if args.iommu else "0"}
    run(["tb.tools.shell"], results_xml=build_root / "shell.xml", build_root=build_root, extra_env=env)
    return 0


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="sriov-nic", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)

    def with_build_dir(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--build-dir", help="where the harness is built and results go (default ./sim_build)")
        return p

    run = with_build_dir(sub.add_parser("run", help="run your cocotb test modules against the NIC"))
    run.add_argument("modules", nargs="+", help="dotted module names or paths to .py files")
    run.add_argument("--testcase", help="comma-separated test names to run")
    run.add_argument("--seed", type=int, help="cocotb random seed")
    run.add_argument("--waves", action="store_true", default=os.environ.get("WAVES") == "1", help="write an FST")
    run.add_argument("--results", help="JUnit XML path (default <build-dir>/results.xml)")
    run.set_defaults(func=cmd_run)

    lspci = with_build_dir(sub.add_parser("lspci", help="lspci -vvv of the PF and its VFs as the host sees them"))
    lspci_tool.add_arguments(lspci)
    lspci.set_defaults(func=cmd_lspci)

    shell = with_build_dir(sub.add_parser("shell", help="IPython inside a running simulation"))
    shell.add_argument("--num-vfs", type=int, default=2, help="VFs to enable and probe (default 2)")
    shell.add_argument("--total-vfs", type=int, default=16)
    shell.add_argument("--iommu", action="store_true", help="VT-d on: each VF gets its own domain")
    shell.set_defaults(func=cmd_shell)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

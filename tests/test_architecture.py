"""DESIGN.md's rules about who may import whom and how the testbench reaches the model,
checked on the source (the AST of every file), so a change that breaks one fails here.

* Import rules: each package may import only the project packages listed in
  :data:`MAY_IMPORT` (``tb/`` and ``tests/`` may import anything).
* No patching: no file outside a package assigns an attribute that the package's classes
  define (a method or an instance attribute) on one of its objects, and no file reads or
  calls another package's private (``_name``) attributes.
"""

from __future__ import annotations

import ast
from pathlib import Path

import cocotbext.pcie.core
import pytest

from tb.paths import ROOT

#: package -> the project packages it may import (besides itself)
MAY_IMPORT: dict[str, set[str]] = {
    "datasheet": set(),
    "observe": set(),
    # cocotb scheduling helpers (start a coroutine eagerly) the model and the fabric share
    "simtask": set(),
    # the PCIe fabric (TLP-accurate or transaction-level) knows cocotbext-pcie and the PCIe rules
    "fabric": {"datasheet.pci", "simtask"},
    "model": {"datasheet", "observe", "simtask"},
    # iommu/ knows nothing of the NIC: only the PCI spec's own constants (datasheet.pci);
    # its root complex and root ports run on either fabric
    "iommu": {"datasheet.pci", "fabric", "observe"},
    "pcicore": {"datasheet", "iommu"},
    "netdev": {"datasheet", "iommu"},
    "pf_driver": {"datasheet", "netdev", "pcicore", "iommu", "observe"},
    # guest code: nothing of the PF driver
    "vf_driver": {"datasheet", "netdev", "pcicore", "iommu"},
}
PACKAGES = set(MAY_IMPORT) | {"tb"}
#: where the checks on attribute stores and private reads apply
OUTSIDERS = ("tb", "tests")
#: documented API despite the underscore (collections.namedtuple)
PUBLIC_UNDERSCORED = {"_replace", "_asdict", "_fields", "_make"}


def sources(*dirs: str) -> list[Path]:
    return [p for d in dirs for p in sorted((ROOT / d).rglob("*.py"))]


def package_of(path: Path) -> str:
    return path.relative_to(ROOT).parts[0]


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def project_imports(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, dotted module) of every absolute import of a project package."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(node.lineno, node.module)]
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return [(line, name) for line, name in found if name.split(".")[0] in PACKAGES]


def allowed(name: str, package: str) -> bool:
    top = name.split(".")[0]
    if top == package:
        return True
    return any(name == rule or name.startswith(rule + ".") or rule == top for rule in MAY_IMPORT[package])


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_import_rules(package):
    broken = []
    for path in sources(package):
        imports = project_imports(parse(path))
        # "from datasheet import pci" names datasheet.pci: judge the most specific name
        names = {}
        for line, name in imports:
            names.setdefault(line, []).append(name)
        for line, group in names.items():
            if not any(allowed(name, package) for name in group):
                broken.append(f"{path.relative_to(ROOT)}:{line} imports {group[0]}")
    assert not broken, f"{package}/ may import only {sorted(MAY_IMPORT[package])}:\n" + "\n".join(broken)


def defined_names(package: str) -> set[str]:
    """Every method and every ``self.NAME`` attribute the package's classes define."""
    return class_names(sources(package))


def class_names(paths: list[Path]) -> set[str]:
    names: set[str] = set()
    for path in paths:
        for node in ast.walk(parse(path)):
            if isinstance(node, ast.ClassDef):
                for item in ast.walk(node):
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        names.add(item.name)
                    elif (
                        isinstance(item, ast.Attribute)
                        and isinstance(item.ctx, ast.Store)
                        and isinstance(item.value, ast.Name)
                        and item.value.id == "self"
                    ):
                        names.add(item.attr)
    return names


def library_names() -> set[str]:
    """Names cocotbext-pcie's own classes define: its configuration attributes (a port's
    ``max_link_speed``) are the library's API, set by whoever builds a topology."""
    return class_names(sorted(Path(cocotbext.pcie.core.__file__).parent.parent.rglob("*.py")))


def tb_imports(tree: ast.Module) -> list[Path]:
    """The tb/ modules a file imports (their classes are the file's own too)."""
    paths = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("tb."):
            base = ROOT.joinpath(*node.module.split("."))
            paths += [p for p in (base.with_suffix(".py"), base / "__init__.py") if p.exists()]
    return paths


def owners_of(tree: ast.Module) -> set[str]:
    """Attribute names of the file's own classes (``self.X = ...``, ``def X``): a file may store those."""
    own: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for item in ast.walk(node):
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    own.add(item.name)
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    own.add(item.target.id)
                elif isinstance(item, ast.Attribute) and isinstance(item.ctx, ast.Store):
                    if isinstance(item.value, ast.Name) and item.value.id == "self":
                        own.add(item.attr)
    return own


def stores(tree: ast.Module):
    """(line, attribute) of every ``x.attr = / +=`` whose target object is not ``self``/``cls``."""
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        for target in targets:
            for sub in ast.walk(target):
                if (
                    isinstance(sub, ast.Attribute)
                    and isinstance(sub.ctx, ast.Store)
                    and not (isinstance(sub.value, ast.Name) and sub.value.id in ("self", "cls"))
                ):
                    yield sub.lineno, sub.attr


@pytest.mark.parametrize("outsider", OUTSIDERS)
def test_no_attribute_of_a_package_object_is_assigned_from_outside(outsider):
    protected = set().union(*(defined_names(p) for p in MAY_IMPORT)) - library_names()
    broken = []
    for path in sources(outsider):
        tree = parse(path)
        own = owners_of(tree).union(*(owners_of(parse(p)) for p in tb_imports(tree)))
        broken += [
            f"{path.relative_to(ROOT)}:{line} assigns .{attr}"
            for line, attr in stores(tree)
            if attr in protected and attr not in own
        ]
    assert not broken, "assignments to attributes the model, IOMMU or drivers define:\n" + "\n".join(broken)


def private_reads(tree: ast.Module):
    """(line, name) of every ``x._name`` (not dunder) where ``x`` is not ``self``, ``cls`` or ``super()``."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        name = node.attr
        if not name.startswith("_") or name.startswith("__") or name in PUBLIC_UNDERSCORED:
            continue
        base = node.value
        if isinstance(base, ast.Name) and base.id in ("self", "cls"):
            continue
        if isinstance(base, ast.Call) and isinstance(base.func, ast.Name) and base.func.id == "super":
            continue
        yield node.lineno, name


@pytest.mark.parametrize("package", sorted(PACKAGES | set(OUTSIDERS)))
def test_no_private_name_of_another_package_is_read(package):
    own = set().union(*(owners_of(parse(p)) for p in sources(package)))
    broken = [
        f"{path.relative_to(ROOT)}:{line} reads .{name}"
        for path in sources(package)
        for line, name in private_reads(parse(path))
        if name not in own
    ]
    assert not broken, "private names of other packages:\n" + "\n".join(broken)


def test_the_checks_see_a_violation():
    """The scans themselves: a patched method, a private read and a forbidden import are found."""
    tree = ast.parse(
        "from pf_driver import driver\nimport model.core\nnic.switch.forward = spy\nbuf._phys\nself._ok\nsuper()._ok\n"
    )
    assert "pf_driver" in {n.split(".")[0] for _, n in project_imports(tree)}
    assert not allowed("pf_driver.driver", "vf_driver") and allowed("datasheet.pci", "iommu")
    assert not allowed("datasheet.regs", "iommu")
    assert (3, "forward") in set(stores(tree))
    assert [name for _, name in private_reads(tree)] == ["_phys"]
    assert "forward" in defined_names("model")

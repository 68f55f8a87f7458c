"""The code's layers: imports point one way (docs/design.md, "Layers"), and nothing reaches outside the project."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    """Every module a file imports, at the top or inside a function, relative imports resolved."""
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def imports_of(package: str, root: Path = ROOT) -> dict[str, set[str]]:
    return {str(path.relative_to(root)): imported_modules(path, root)
            for path in sorted((root / package).glob("*.py"))}


def reaching(package: str, forbidden: tuple[str, ...], root: Path = ROOT) -> list[str]:
    """Each import in `package` of a module in `forbidden`: a top-level package, or a dotted module and those
    under it."""
    return [f"{module} imports {name}" for module, names in imports_of(package, root).items() for name in sorted(names)
            if name.split(".")[0] in forbidden or any(name.startswith(f) for f in forbidden if "." in f)]


def test_the_landmark_engine_imports_neither_the_other_engine_nor_the_cli_nor_the_bench():
    assert reaching("landmark", ("neural", "bench", "lmprint.cli", "torch", "transformers")) == []


def test_the_mert_engine_imports_neither_the_bench_nor_the_cli():
    assert reaching("neural", ("bench", "lmprint.cli")) == []


def test_the_application_layer_imports_no_engine_except_from_the_cli():
    outside_cli = {module: names for module, names in imports_of("lmprint").items() if module != "lmprint/cli.py"}
    assert [f"{m} imports {n}" for m, names in outside_cli.items() for n in sorted(names)
            if n.split(".")[0] in ("landmark", "neural", "bench")] == []


def test_the_layer_check_sees_an_import_inside_a_function_of_any_form(tmp_path):
    """The check itself can fail: a lazy import inside a function counts, as `from X import Y`, as `import X.Y`,
    and a module of an allowed package that is forbidden itself (the engine may import `lmprint`, not its CLI)."""
    (tmp_path / "landmark").mkdir()
    (tmp_path / "landmark" / "probe.py").write_text(
        "def f():\n    from neural import mert\n    import torch.nn\n    from lmprint import cli, errors\n")
    assert reaching("landmark", ("neural", "torch", "lmprint.cli"), tmp_path) == [
        "landmark/probe.py imports lmprint.cli", "landmark/probe.py imports neural",
        "landmark/probe.py imports neural.mert", "landmark/probe.py imports torch.nn"]


@pytest.mark.parametrize("suffix", [".py", ".sh", ".cfg", ".toml", ".md"])
def test_no_file_reaches_outside_the_project(suffix):
    """Users have only the project: nothing in it may read a folder beside the checkout."""
    beside = "../" + "shared"  # spelled in two parts, so that this file does not name it
    offenders = [str(path.relative_to(ROOT)) for path in ROOT.rglob(f"*{suffix}")
                 if ".git" not in path.parts and beside in path.read_text(errors="ignore")]
    assert offenders == []

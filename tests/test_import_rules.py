"""Who may import whom: the ML core and the server stand alone, the app reaches ClearML only through the adapter,
and the adapter does not depend on its users; `common` (small helpers) may be used by all and uses none. Read from
the source (every import, also inside functions)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = {"app", "benchmarks", "classifier", "common", "devstack", "localserver", "loop", "pipelines"}
PROJECT_PACKAGES |= {"serving", "tasks", "tests", "triggers"}
ALLOWED = {
    "common": {"common"},
    "classifier": {"classifier", "common"},
    "localserver": {"localserver", "common"},
    "loop": {"loop", "classifier", "common"},
    "app": {"app", "classifier", "loop", "common"},
    "serving": {"serving", "classifier", "loop", "common"},
}
# The one stated exception: the loop's page in the server's web UI is a `localserver.webui.WebExtension`, so it
# builds on the web UI's pages; the server itself never imports the loop.
EXCEPTIONS = {"loop/webpage.py": {"localserver"}}


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every absolute import in the file."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return {name.split(".")[0] for name in names}


def imported_packages(package: str) -> dict[str, set[str]]:
    """{module path: project packages it imports}"""
    return {
        str(path.relative_to(ROOT)): imported_modules(path) & PROJECT_PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_stay_within_what_the_package_may_use(package):
    imports = imported_packages(package)
    assert imports, f"no modules found under {package}/"
    allowed = {module: ALLOWED[package] | EXCEPTIONS.get(module, set()) for module in imports}
    wrong = {module: sorted(used - allowed[module]) for module, used in imports.items() if used - allowed[module]}
    assert wrong == {}


def test_the_server_knows_nothing_of_the_loops_rules():
    """Which model is production is the loop's rule (`loop.registry`): no file of localserver/ (code or template)
    names the production tag or the promotion number, nor the loop's project, dataset or pipeline names."""
    from loop import settings

    words = {"promotion_seq", f'"{settings.PRODUCTION_TAG}"', settings.PROJECT, f'"{settings.DATASET_NAME}"'}
    words |= {"/.pipelines/retrain", "/loop"}
    found = [
        f"{path.relative_to(ROOT)}: {word}"
        for path in sorted((ROOT / "localserver").rglob("*"))
        if path.suffix in (".py", ".html", ".js")
        for word in sorted(words)
        if word in path.read_text()
    ]
    assert found == []


def test_the_app_does_not_import_clearml_itself():
    """The app talks to ClearML through `loop` only: no module of app/ imports clearml itself."""
    assert [path.name for path in sorted((ROOT / "app").rglob("*.py")) if "clearml" in imported_modules(path)] == []


def test_private_sdk_attributes_are_used_only_in_sdk_private():
    """`obj._name` on the SDK's objects lives in loop/sdk_private.py: no other module that imports clearml reads
    an attribute starting with one underscore from an object that is not its own (`self`, `cls`)."""
    offenders = []
    for package in sorted(PROJECT_PACKAGES - {"tests"}):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == ROOT / "loop" / "sdk_private.py" or "clearml" not in imported_modules(path):
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Attribute)
                    and node.attr.startswith("_")
                    and not node.attr.startswith("__")
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls", "os", "sys"))
                ):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} .{node.attr}")
    assert offenders == []

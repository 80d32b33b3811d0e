"""The core never names a plugin, and packaging lists every package."""

import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_core_imports_no_in_tree_plugin():
    plugin_modules = {
        target.split(":")[0].split(".")[0]
        for target in PYPROJECT["project"]["entry-points"]["genlab.models"].values()
    }
    assert plugin_modules, "no in-tree plugins registered"
    pattern = re.compile(rf"\b({'|'.join(map(re.escape, plugin_modules))})\b")
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in (ROOT / "genlab").rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []


def test_every_package_is_packaged():
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "genlab").rglob("__init__.py")
    }
    assert on_disk <= listed
    for name, folder in PYPROJECT["tool"]["setuptools"]["package-dir"].items():
        assert name in listed and (ROOT / folder / "__init__.py").exists()


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci/run").read_text()
    pattern = re.search(r"grep -m1 -E '([^']+)' README.md", ci)[1]
    matches = [line for line in readme.splitlines() if re.match(pattern, line)]
    assert len(matches) == 1 and "pytest" in matches[0]

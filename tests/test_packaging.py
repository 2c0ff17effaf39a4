"""The explicit package list of pyproject.toml covers every package in the
tree (a missing entry still works in an editable install, so only a
non-editable install would show it)."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_is_listed():
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(conf["packages"])
    dirs = {v: k for k, v in conf["package-dir"].items()}
    found = set()
    for top, prefix in (("dlfusion", "dlfusion"), ("dialects", "dlfusion.dialects"), ("passes", "dlfusion.passes")):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top).parts
            found.add(".".join((prefix, *rel)))
    assert dirs["dialects"] == "dlfusion.dialects" and dirs["passes"] == "dlfusion.passes"
    assert found - listed == set(), f"packages missing from pyproject.toml: {sorted(found - listed)}"


def test_package_data_is_declared():
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    data = conf.get("package-data", {})
    assert "*.toml" in data.get("dlfusion.targets", [])
    assert "*.lark" in data.get("dlfusion.asm", [])

"""The configuration reference documents every option of every command, and the README links
every guide."""

from __future__ import annotations

import argparse
import re

import pytest

from synfs.cli.main import build_parser
from tests.harness import ROOT

DOCS = ROOT / "docs"


def commands(parser: argparse.ArgumentParser, prefix=()):
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, prefix + (name,))


def visible_options(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or not action.option_strings:
            continue
        if "-h" in action.option_strings:
            continue
        yield max(action.option_strings, key=len)


@pytest.mark.parametrize("path, parser", list(commands(build_parser())),
                         ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_every_option_is_in_configuration_md(path, parser):
    text = (DOCS / "configuration.md").read_text()
    missing = [opt for opt in visible_options(parser) if not re.search(rf"`{re.escape(opt)}\b", text)]
    assert not missing, f"synfs {' '.join(path)}: undocumented options {missing}"


def test_readme_links_the_guides():
    readme = (ROOT / "README.md").read_text()
    for name in ("install", "quickstart", "configuration", "hpc", "troubleshooting"):
        assert f"docs/{name}.md" in readme
        assert (DOCS / f"{name}.md").exists()


def test_relative_links_in_docs_resolve():
    for doc in DOCS.glob("*.md"):
        for target in re.findall(r"\]\(([^)#:]+\.md)(?:#[^)]*)?\)", doc.read_text()):
            assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"


def test_architecture_md_names_every_module_and_only_real_paths():
    """docs/architecture.md is the map of the package: every module is on it (by its path, or
    by its file name under its room's path) and every path or file name it cites exists."""
    text = (DOCS / "architecture.md").read_text()
    pkg = ROOT / "synfs"
    missing = []
    for path in sorted(pkg.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if path.name == "__init__.py":
            rel = rel.removesuffix("__init__.py")
            if path.parent != pkg and rel not in text:
                missing.append(rel)
            continue
        named = re.search(rf"(?<![\w/]){re.escape(rel)}\b", text) or (
            path.parent != pkg and f"{path.parent.relative_to(ROOT).as_posix()}/" in text
            and re.search(rf"(?<![\w/.]){re.escape(path.name)}\b", text))
        if not named:
            missing.append(rel)
    assert missing == [], f"docs/architecture.md does not name {missing}"
    stale = [p for p in set(re.findall(r"(?<![\w/])((?:synfs|tests|systemd|bench|docs)/[\w/]*\w(?:\.\w+)?/?)",
                                       text)) if not (ROOT / p).exists()]
    files = {p.name for p in ROOT.rglob("*.py") if ".venv" not in p.parts}
    stale += [n for n in set(re.findall(r"(?<![\w/.])(\w+\.py)\b", text)) if n not in files]
    assert sorted(stale) == [], f"docs/architecture.md cites paths that do not exist: {stale}"


def test_every_test_cited_in_the_docs_exists():
    """docs/*.md cite the tests that prove each behaviour by name; a renamed or removed test
    must not leave a citation that proves nothing."""
    defined = set()
    for path in (ROOT / "tests").rglob("test_*.py"):
        defined |= set(re.findall(r"^(?:async )?def (test_\w+)", path.read_text(), re.M))
    modules = {p.stem for p in (ROOT / "tests").rglob("test_*.py")}
    missing = []
    for doc in DOCS.glob("*.md"):
        for name in set(re.findall(r"\b(test_[a-z0-9_]+)", doc.read_text())):
            if name not in defined and name not in modules:
                missing.append(f"{doc.name}: {name}")
    assert not missing, f"cited tests that do not exist: {sorted(missing)}"

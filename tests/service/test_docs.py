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

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


def test_every_test_the_docs_cite_exists():
    """A claim in docs/ names the test that proves it: that name must be a test function (or
    a test module) under tests/, so a renamed or deleted test cannot leave a claim unproved."""
    tests = ROOT / "tests"
    defined = set()
    for module in tests.rglob("test_*.py"):
        defined.add(module.stem)
        defined.update(re.findall(r"^\s*(?:async )?def (test_\w+)", module.read_text(), re.M))
    missing = sorted({(doc.name, name) for doc in DOCS.glob("*.md")
                      for name in re.findall(r"\btest_\w+", doc.read_text())
                      if name not in defined})
    assert not missing, f"docs cite tests that do not exist: {missing}"

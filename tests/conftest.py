"""Shared fixtures: one emulator process (with its S3 server) per test session."""

from __future__ import annotations

import pytest

from tests.harness import EmulatorProcess


@pytest.fixture(scope="session")
def emulator(tmp_path_factory):
    proc = EmulatorProcess(tmp_path_factory.mktemp("emulator")).start()
    try:
        yield proc
    finally:
        proc.stop()
        log = proc.log_text()
        assert "Traceback" not in log, "emulator logged a traceback:\n" + log[-6000:]


@pytest.fixture(autouse=True)
def _reset_faults(request):
    """Tests that inject faults must not leak them into the next test."""
    yield
    if "emulator" in request.fixturenames:
        request.getfixturevalue("emulator").reset_faults()


@pytest.fixture
def user(emulator):
    return emulator.new_user()

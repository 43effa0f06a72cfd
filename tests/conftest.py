"""Shared fixtures: one emulator process (with its S3 server) per test session, and the
end-of-run check that no log file holds a secret the tests used (``harness.find_leaks``)."""

from __future__ import annotations

import pytest

from tests import harness
from tests.harness import EmulatorProcess


@pytest.fixture(scope="session", autouse=True)
def _no_secrets_in_logs(tmp_path_factory):
    """At the very end of the run (after the emulator and every mount stopped), no log file
    the tests produced may contain a token, secret key or session token the tests used."""
    with harness.capture_secrets():
        yield
    leaks = harness.find_leaks([tmp_path_factory.getbasetemp()])
    assert not leaks, "secrets found in logs:\n" + "\n".join(leaks)


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

"""The end-of-run secrets check (tests/conftest.py + harness.find_leaks) really fails a run whose
logs hold a secret, and the registry records the tokens and keys the harness hands out."""

from __future__ import annotations

import shutil
import subprocess
import sys

from tests import harness
from tests.harness import ROOT

PROBE = """
from tests import harness

def test_probe(tmp_path):
    harness.register_secret("leaky-secret-value-123")
    (tmp_path / "daemon.log").write_text("{line}\\n")
"""


def run_probe(tmp_path, line: str) -> subprocess.CompletedProcess:
    test = tmp_path / "probe" / "test_probe.py"
    test.parent.mkdir()
    test.write_text(PROBE.format(line=line))
    try:
        return _pytest(tmp_path, test)
    finally:
        shutil.rmtree(tmp_path / "bt", ignore_errors=True)


def _pytest(tmp_path, test) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest",
                           "-p", "no:cacheprovider", "--rootdir", str(test.parent),
                           "--basetemp", str(tmp_path / "bt"), str(test)],
                          cwd=str(ROOT), capture_output=True, text=True, timeout=300)


def test_a_leaked_secret_fails_the_run(tmp_path):
    res = run_probe(tmp_path, "oops: leaky-secret-value-123")
    assert res.returncode != 0, res.stdout
    assert "secrets found in logs" in res.stdout
    assert "leaky-secret-value-123" not in res.stdout.replace("register_secret(\"leaky", "")


def test_a_clean_run_passes(tmp_path):
    res = run_probe(tmp_path, "all fine")
    assert res.returncode == 0, res.stdout + res.stderr


def test_patterns_catch_unregistered_tokens(tmp_path):
    log, binary = tmp_path / "x.log", tmp_path / "binary.log"
    try:
        log.write_text("token synemu" + "A" * 43 + " and eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3"
                       "ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c\n")
        assert len(harness.find_leaks([tmp_path], secrets=set())) == 2
        binary.write_bytes(b"\0\0leaky-secret-value-123")
        assert not [x for x in harness.find_leaks([tmp_path], secrets={"leaky-secret-value-123"})
                    if "binary.log" in x]
    finally:     # planted on purpose: keep them away from the run's own final check
        log.unlink(missing_ok=True)
        binary.unlink(missing_ok=True)


def test_harness_registers_what_it_hands_out(emulator, world):
    assert emulator.admin_token in harness.SECRETS
    assert world.owner.token in harness.SECRETS
    creds = world.owner.api.ok(world.owner.api.get(f"/entity/{world.sts}/sts?permission=read_only"))
    assert creds["secretAccessKey"] in harness.SECRETS
    assert creds["sessionToken"] in harness.SECRETS

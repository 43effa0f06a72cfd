"""Logging: journald format when stderr is the journal, --log-file, per-module debug, and the
redaction safety net; a DEBUG mount log holds no token or STS secret."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from synfs.service import logs
from tests.harness import LEAK_PATTERNS, ROOT
from tests.service.conftest import run, synfs_cmd

SNIPPET = ("import logging, sys\nfrom synfs.service import logs\n"
           "logs.setup('INFO', None, ('synfs.fs',))\n"
           "logging.getLogger('synfs.service.daemon').info('hello journal')\n"
           "logging.getLogger('synfs.fs.core').debug('fs detail')\n"
           "logging.getLogger('synfs.s3').debug('s3 detail')\n"
           "try:\n    1/0\nexcept ZeroDivisionError:\n"
           "    logging.getLogger('synfs.x').exception('boom')\n")


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {n: logging.getLogger(n).level for n in (*logs.THIRD_PARTY, "synfs.fs", "synfs.s3")}
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)
    for name, lvl in levels.items():
        logging.getLogger(name).setLevel(lvl)


def test_journal_stream_gets_priorities_not_timestamps(tmp_path):
    out = tmp_path / "stderr"
    with open(out, "wb") as f:
        st = os.fstat(f.fileno())
        env = dict(os.environ, PYTHONPATH=str(ROOT), JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
        subprocess.run([sys.executable, "-c", SNIPPET], stderr=f, env=env, check=True, timeout=60)
    lines = out.read_text().splitlines()
    assert lines[0] == "<6>INFO synfs.service.daemon: hello journal"
    assert lines[1] == "<7>DEBUG synfs.fs.core: fs detail"        # --debug-modules synfs.fs
    assert not any("s3 detail" in ln for ln in lines)        # synfs.s3 stays at INFO
    assert all(ln.startswith("<3>") for ln in lines[2:])     # the traceback keeps its priority
    assert any("ZeroDivisionError" in ln for ln in lines[2:])


def test_plain_stderr_has_timestamps(tmp_path):
    res = subprocess.run([sys.executable, "-c", SNIPPET], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT), JOURNAL_STREAM="1:2"),
                         timeout=60)
    first = res.stderr.splitlines()[0]
    assert first.endswith("INFO synfs.service.daemon: hello journal") and first[:4].isdigit()


def test_log_file_and_debug_modules(tmp_path, restore_logging):
    log = tmp_path / "synfs.log"
    logs.setup("WARNING", log, logs.parse_debug_modules("synfs.fs, synfs.cache"))
    logging.getLogger("synfs.fs.sub").debug("child of a debug module")
    logging.getLogger("synfs.s3").info("not shown")
    logging.getLogger("synfs.s3").warning("shown")
    text = log.read_text()
    assert "child of a debug module" in text and "shown" in text and "not shown" not in text
    assert oct(log.stat().st_mode & 0o777) == "0o600"


def test_bad_debug_modules_is_a_usage_error():
    res = run(synfs_cmd("--debug-modules", "synfs fs", "status"))
    assert res.returncode == 2 and "not a logger name" in res.stderr


def test_redaction_of_registered_and_recognisable_secrets():
    logs.register_secret("s3cr3t-session-token-value")
    samples = {
        "token s3cr3t-session-token-value in text": "s3cr3t",
        "Authorization: Bearer abc.def-ghi": "abc.def",
        "GET /o?X-Amz-Security-Token=FQoG%2Fxyz&X-Amz-Signature=deadbeef HTTP/1.1": "FQoG",
        "headers={'x-amz-security-token': b'IQoJb3JpZ2luX2Vj', 'Authorization': b'AWS4'}": "IQoJ",
        '{"sessionToken": "eyJabc", "secretAccessKey": "wJalrXUtnFEMI"}': "wJalr",
        "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG": "wJalr",
    }
    for text, secret in samples.items():
        out = logs.redact(text)
        assert secret not in out and logs.REDACTED in out, (text, out)


def test_debug_mount_log_holds_no_secret(world, service_mounts):
    m = service_mounts(world.owner.token, world.sts, "debuglog",
                       ["--debug-modules", "synfs,botocore,urllib3"])
    assert (m.path / "data.txt").read_bytes() == world.data
    m.stop()
    text = m.log_text()
    # the noisy loggers really logged (reads no longer go through botocore; the REST client's
    # urllib3 does), and so did the S3 read path
    assert "DEBUG urllib3" in text and "DEBUG synfs.s3.reader" in text
    assert world.owner.token not in text
    for pattern in LEAK_PATTERNS:
        assert not pattern.search(text), pattern.pattern
    assert "X-Amz-Security-Token=" not in text.replace(f"X-Amz-Security-Token={logs.REDACTED}", "")

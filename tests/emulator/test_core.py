"""Contract tests of the emulator's shared machinery: auth, profiles, errors, throttling,
fault injection, the admin API, the add-user CLI and persistence across restarts."""

from __future__ import annotations

import subprocess
import sys
import threading
import time


from tests.harness import ROOT, Api, EmulatorProcess


def test_user_profile_with_token(emulator, user):
    body = user.api.ok(user.api.get("/userProfile"), 200)
    assert body["userName"] == user.user_name
    assert body["ownerId"] == user.id
    assert body["emails"] == [f"{user.user_name}@example.org"]
    assert "displayName" in body


def test_bad_token_is_401_with_reason_and_challenge(emulator):
    resp = emulator.api("not-a-real-token").get("/userProfile")
    assert resp.status_code == 401
    assert resp.json()["reason"] == "Invalid access token"
    assert resp.headers["WWW-Authenticate"] == 'Bearer realm="Synapse Repository Services"'


def test_anonymous_profile_is_the_anonymous_principal(emulator):
    body = emulator.api(None).ok(emulator.api(None).get("/userProfile"), 200)
    assert body["ownerId"] == "273950"


def test_unknown_url_is_json_404(emulator, user):
    resp = user.api.get("/no/such/thing")
    assert resp.status_code == 404
    assert "reason" in resp.json()


def test_body_over_2_mib_is_413(emulator, user):
    resp = user.api.session.post(emulator.info["repoEndpoint"] + "/entity",
                                 data=b"x" * (2 * 1024 * 1024 + 10),
                                 headers={"Content-Type": "application/json"}, timeout=60)
    assert resp.status_code == 413
    assert "reason" in resp.json()


def test_malformed_json_is_400(emulator, user):
    resp = user.api.session.post(emulator.info["repoEndpoint"] + "/entity", data=b"{nope",
                                 headers={"Content-Type": "application/json"}, timeout=60)
    assert resp.status_code == 400
    assert "reason" in resp.json()


def test_admin_api_refuses_ordinary_users(emulator, user):
    resp = user.api.get("/faults", prefix="admin")
    assert resp.status_code == 403
    assert emulator.admin.get("/faults", prefix="admin").status_code == 200


def test_injected_errors_by_endpoint_and_count(emulator, user):
    emulator.set_faults(errors=[{"path": "/userProfile$", "status": 503, "count": 2}])
    statuses = [user.api.get("/userProfile").status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    emulator.set_faults(errors=[{"path": "/userProfile$", "status": 429, "rate": 1.0}])
    resp = user.api.get("/userProfile")
    assert resp.status_code == 429 and "reason" in resp.json()


def test_injected_error_rate_is_a_share(emulator, user):
    emulator.set_faults(errors=[{"path": "/userProfile$", "status": 500, "rate": 0.5}])
    statuses = [user.api.get("/userProfile").status_code for _ in range(60)]
    failed = statuses.count(500)
    assert 10 < failed < 50 and statuses.count(200) == 60 - failed


def test_bad_fault_settings_are_rejected(emulator):
    resp = emulator.admin.put("/faults", {"errors": [{"path": "x", "status": 404}]}, prefix="admin")
    assert resp.status_code == 400
    resp = emulator.admin.put("/faults", {"nonsense": 1}, prefix="admin")
    assert resp.status_code == 400


def test_injected_latency(emulator, user):
    emulator.set_faults(latency_ms=300)
    t0 = time.monotonic()
    user.api.ok(user.api.get("/userProfile"), 200)
    assert time.monotonic() - t0 >= 0.3


def test_throttling_limits_concurrency_to_three(emulator, user):
    emulator.set_faults(throttling=True, latency_ms=800)
    results = []

    def one():
        results.append(Api(emulator.info, user.token).get("/userProfile"))

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(r.status_code for r in results)
    assert codes.count(200) == 3 and codes.count(429) == 3, codes
    reasons = {r.json()["reason"] for r in results if r.status_code == 429}
    assert reasons == {"Too many concurrent requests. Allowed 3 concurrent connections at any time."}
    # Another user is not affected by the first one's load; throttling off lifts the limit.
    emulator.set_faults(throttling=False, latency_ms=0)
    assert user.api.get("/userProfile").status_code == 200


def test_throttling_limits_frequency(emulator):
    u = emulator.new_user()
    emulator.set_faults(throttling=True)
    codes = [u.api.get("/userProfile").status_code for _ in range(601)]
    assert codes[:600] == [200] * 600
    assert codes[600] == 429
    assert u.api.get("/userProfile").json()["reason"] == (
        "Requests are too frequent. Allowed 600 requests every 60 seconds.")


def test_add_user_cli_prints_a_working_token(emulator):
    out = subprocess.run([sys.executable, "-m", "synfs", "emulator", "add-user", "--data-dir",
                          str(emulator.data_dir), "cli-user"], capture_output=True, text=True,
                         cwd=ROOT, check=True)
    token = out.stdout.strip()
    assert token and "\n" not in token
    body = emulator.api(token).ok(emulator.api(token).get("/userProfile"), 200)
    assert body["userName"] == "cli-user"
    again = subprocess.run([sys.executable, "-m", "synfs", "emulator", "add-user", "--data-dir",
                            str(emulator.data_dir), "cli-user"], capture_output=True, text=True,
                           cwd=ROOT)
    assert again.returncode != 0 and "already exists" in again.stderr


def test_restart_keeps_state(tmp_path):
    emu = EmulatorProcess(tmp_path / "emu").start()
    try:
        u = emu.new_user("persistent")
        project = u.api.project("persisted project")
        folder = u.api.folder(project["id"], "kept folder")
        emu.s3_admin_client().put_object(Bucket=emu.info["externalBucket"], Key="persist/check.txt", Body=b"kept")
    finally:
        emu.stop()
    emu2 = EmulatorProcess(tmp_path / "emu").start()
    try:
        api = emu2.api(u.token)
        assert api.ok(api.get("/userProfile"), 200)["userName"] == "persistent"
        got = api.ok(api.get(f"/entity/{folder['id']}"), 200)
        assert got["name"] == "kept folder" and got["etag"] == folder["etag"]
        assert got["parentId"] == project["id"]
        obj = emu2.s3_admin_client().get_object(Bucket=emu2.info["externalBucket"],
                                                Key="persist/check.txt")
        assert obj["Body"].read() == b"kept"
    finally:
        emu2.stop()
    assert "Traceback" not in emu2.log_text()

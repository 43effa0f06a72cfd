"""Contract tests: storage locations (§5.1) and upload destinations (§3.10)."""

from __future__ import annotations

from tests.emulator.test_storage_support import (DATE_RE, EXT_SETTING, F, SYN_SETTING,
                                                 external_location, put_object, put_owner,
                                                 reason, set_upload, synapse_location, unique)

SECURITY = "For security purposes, Synapse needs to establish that the user has permission"


def test_default_upload_destination_is_location_1(emulator, user):
    project = user.api.project()
    dest = user.api.ok(user.api.get(f"/entity/{project['id']}/uploadDestination",
                                    prefix="file"), 200)
    assert dest == {"concreteType": F + "S3UploadDestination", "storageLocationId": 1,
                    "uploadType": "S3"}
    locs = user.api.ok(user.api.get(f"/entity/{project['id']}/uploadDestinationLocations",
                                    prefix="file"), 200)
    assert locs == {"list": [{"storageLocationId": 1, "uploadType": "S3"}]}
    one = user.api.ok(user.api.get(f"/entity/{project['id']}/uploadDestination/1",
                                   prefix="file"), 200)
    assert one == dest


def test_upload_destination_is_under_file_prefix_only(emulator, user):
    project = user.api.project()
    assert user.api.get(f"/entity/{project['id']}/uploadDestination").status_code == 404


def test_synapse_sts_location_gets_generated_base_key(emulator, user):
    loc = synapse_location(user, sts=True)
    assert loc["concreteType"] == SYN_SETTING
    assert loc["uploadType"] == "S3" and loc["stsEnabled"] is True
    assert loc["baseKey"].startswith(f"{user.id}/") and len(loc["baseKey"]) > len(user.id) + 30
    assert isinstance(loc["storageLocationId"], int) and loc["storageLocationId"] > 1
    assert loc["createdBy"] == int(user.id)
    assert DATE_RE.match(loc["createdOn"]) and loc["etag"]
    got = user.api.ok(user.api.get(f"/storageLocation/{loc['storageLocationId']}"), 200)
    assert got == loc
    # baseKey is random, so the same request makes a new location each time
    assert synapse_location(user, sts=True)["storageLocationId"] != loc["storageLocationId"]


def test_storage_location_is_creator_only(emulator, user):
    loc = synapse_location(user, sts=False)
    other = emulator.new_user()
    resp = other.api.get(f"/storageLocation/{loc['storageLocationId']}")
    assert resp.status_code == 403
    assert reason(resp) == "Only the creator can access storage location settings"
    assert user.api.get("/storageLocation/987654321").status_code == 404


def test_synapse_location_rejects_base_key(emulator, user):
    resp = user.api.post("/storageLocation", {"concreteType": SYN_SETTING, "baseKey": "x"})
    assert resp.status_code == 400
    assert reason(resp) == "Cannot specify baseKey when creating an S3StorageLocationSetting"


def test_locations_are_idempotent_per_creator(emulator, user):
    first = synapse_location(user, sts=False)
    assert synapse_location(user, sts=False)["storageLocationId"] == first["storageLocationId"]
    other = emulator.new_user()
    assert synapse_location(other, sts=False)["storageLocationId"] != first["storageLocationId"]
    base = unique("idem")
    ext = external_location(emulator, user, base_key=base)
    again = external_location(emulator, user, base_key=base)
    assert again["storageLocationId"] == ext["storageLocationId"]
    assert external_location(emulator, user, base_key=base, banner="b")["storageLocationId"] \
        != ext["storageLocationId"]


def test_external_location_shape_and_base_key_cleanup(emulator, user):
    base = unique("clean")
    put_owner(emulator, f"{base}/sub", f"  {user.user_name.upper()}  ")
    body = {"concreteType": EXT_SETTING, "bucket": emulator.info["externalBucket"],
            "baseKey": f" /{base}/sub/\t", "stsEnabled": True, "banner": "hello",
            "uploadType": "NONE"}
    loc = user.api.ok(user.api.post("/storageLocation", body), 201)
    assert loc["baseKey"] == f"{base}/sub"
    assert loc["uploadType"] == "S3"  # forced for external S3
    assert loc["bucket"] == emulator.info["externalBucket"]
    assert loc["banner"] == "hello" and loc["stsEnabled"] is True
    assert loc["createdBy"] == int(user.id)


def test_external_location_bucket_rules(emulator, user):
    resp = user.api.post("/storageLocation", {"concreteType": EXT_SETTING, "baseKey": "x"})
    assert resp.status_code == 400 and reason(resp) == "The bucket name is required."
    for bad in ("bad_bucket!", "-lead", "a..b", "x" * 300):
        resp = user.api.post("/storageLocation", {"concreteType": EXT_SETTING, "bucket": bad})
        assert resp.status_code == 400, bad
        assert reason(resp) == "Invalid bucket name."


def test_owner_txt_errors(emulator, user):
    bucket = emulator.info["externalBucket"]

    def create(base, bucket=bucket):
        return user.api.post("/storageLocation", {"concreteType": EXT_SETTING, "bucket": bucket,
                                                  "baseKey": base, "stsEnabled": True})

    base = unique("noowner")
    resp = create(base)
    assert resp.status_code == 400
    assert reason(resp).startswith(f"Did not find S3 object at key {base}/owner.txt from bucket "
                                   f"{bucket}. {SECURITY}")
    resp = create(base, bucket="no-such-bucket")
    assert resp.status_code == 400
    assert reason(resp).startswith("Did not find S3 bucket no-such-bucket. " + SECURITY)
    empty = unique("empty")
    put_owner(emulator, empty, " \n , \n")
    resp = create(empty)
    assert resp.status_code == 400
    assert reason(resp).startswith(f"No user identifier found under key {empty}/owner.txt from "
                                   f"bucket {bucket}. ")
    wrong = unique("wrong")
    put_owner(emulator, wrong, "someone-else\n12345")
    resp = create(wrong)
    assert resp.status_code == 400
    assert reason(resp).startswith(f"Could not find a valid user identifier under key "
                                   f"{wrong}/owner.txt from bucket {bucket}. {SECURITY}")


def test_owner_txt_matches_id_name_or_email(emulator, user):
    for text in (f"x, {user.id} ,y", f"nobody\n{user.user_name.upper()}",
                 f"{user.user_name}@EXAMPLE.org"):
        base = unique("own")
        put_owner(emulator, base, text)
        resp = user.api.post("/storageLocation", {"concreteType": EXT_SETTING, "baseKey": base,
                                                  "bucket": emulator.info["externalBucket"]})
        assert resp.status_code == 201, (text, resp.text)
    base = unique("late")  # only the first 100 lines are read
    put_owner(emulator, base, "\n".join(["nobody"] * 100 + [user.user_name]))
    resp = user.api.post("/storageLocation", {"concreteType": EXT_SETTING, "baseKey": base,
                                              "bucket": emulator.info["externalBucket"]})
    assert resp.status_code == 400


def test_owner_txt_at_bucket_root_without_base_key(emulator):
    bucket = unique("rootbkt")
    emulator.s3_admin_client().create_bucket(Bucket=bucket)
    owner = emulator.new_user()
    put_object(emulator, "owner.txt", owner.user_name.encode(), bucket)
    loc = owner.api.ok(owner.api.post("/storageLocation", {"concreteType": EXT_SETTING,
                                                           "bucket": bucket, "baseKey": " / "}), 201)
    assert "baseKey" not in loc and loc["bucket"] == bucket


def test_external_upload_destination_shapes(emulator, user):
    loc = external_location(emulator, user, banner="Be careful")
    project = user.api.project()
    folder = user.api.folder(project["id"], "stsdest")
    user.api.ok(set_upload(user, folder["id"], [loc["storageLocationId"]]), 201)
    sub = user.api.folder(folder["id"], "sub")
    expected = {"concreteType": F + "ExternalS3UploadDestination",
                "storageLocationId": loc["storageLocationId"], "uploadType": "S3",
                "banner": "Be careful", "baseKey": loc["baseKey"], "stsEnabled": True,
                "bucket": emulator.info["externalBucket"]}
    for eid in (folder["id"], sub["id"]):  # inherited by sub-folders
        got = user.api.ok(user.api.get(f"/entity/{eid}/uploadDestination", prefix="file"), 200)
        assert got == expected
    got = user.api.ok(user.api.get(
        f"/entity/{project['id']}/uploadDestination/{loc['storageLocationId']}", prefix="file"), 200)
    assert got == expected  # no check that the location is linked to the entity
    locs = user.api.ok(user.api.get(f"/entity/{sub['id']}/uploadDestinationLocations",
                                    prefix="file"), 200)
    assert locs == {"list": [{"storageLocationId": loc["storageLocationId"], "uploadType": "S3"}]}
    project_dest = user.api.ok(user.api.get(f"/entity/{project['id']}/uploadDestination",
                                            prefix="file"), 200)
    assert project_dest["storageLocationId"] == 1


def test_synapse_sts_upload_destination(emulator, user):
    loc = synapse_location(user, sts=True)
    got = user.api.ok(user.api.get(f"/entity/syn4489/uploadDestination/{loc['storageLocationId']}",
                                   prefix="file"), 200)
    assert got == {"concreteType": F + "S3UploadDestination",
                   "storageLocationId": loc["storageLocationId"], "uploadType": "S3",
                   "baseKey": loc["baseKey"], "stsEnabled": True}
    resp = user.api.get("/entity/syn4489/uploadDestination/987654321", prefix="file")
    assert resp.status_code == 404


def test_storage_location_requires_scope_and_user(emulator):
    viewer = emulator.new_user(scopes=["view"])
    resp = viewer.api.post("/storageLocation", {"concreteType": SYN_SETTING})
    assert resp.status_code == 403 and "insufficient_scope" in reason(resp)
    resp = emulator.api(None).post("/storageLocation", {"concreteType": SYN_SETTING})
    assert resp.status_code == 403

"""`synfs register` without a network: the plan (which object becomes which File, skips and
failures), MD5 streaming within its memory budget, the crash-safe journal, the run with fake
seams (resume after a crash, the owner rule, throttling, changes while hashing) and the
progress bar and summary."""

from __future__ import annotations

import hashlib
import io
import threading
import time

import pytest

from synfs import errors
from synfs.register import hashing
from synfs.register.journal import Journal
from synfs.register.plan import Index, Known, decide, listing_prefix, normalize_prefix
from synfs.register.progress import Progress
from synfs.register.runner import (EXTERNAL_S3_DEST, OWNER_RULE, Options, Registrar,
                                   RegisterError)
from synfs.s3.listing import ObjectInfo
from synfs.synapse.models import ChildHeader, Entity, FileHandle, Kind, UploadDestination

BASE = "base"
PREFIX = "base/"


def obj(rel: str, data: bytes = b"x", etag: str | None = None) -> ObjectInfo:
    return ObjectInfo(key=f"{BASE}/{rel}", size=len(data),
                      etag=etag or hashlib.md5(data).hexdigest())


def verdict(o, index=None, prefix=PREFIX):
    return decide(o, bucket="bkt", base_key=BASE, list_prefix=prefix, index=index or Index())


# ---- plan ----------------------------------------------------------------------------------
def test_paths_below_the_prefix_become_folders_and_a_name():
    v = verdict(obj("raw/2024/a.txt"))
    assert (v.action, v.path) == ("register", ("raw", "2024", "a.txt"))
    v = verdict(obj("raw/2024/a.txt"), prefix="base/raw/")
    assert v.path == ("2024", "a.txt")


@pytest.mark.parametrize("rel, words", [
    ("raw/bad:name.txt", "bad file name 'bad:name.txt'"),
    ("we*ird/a.txt", "bad folder name 'we*ird'"),
    ("raw//a.txt", "an empty path segment"),
    ("raw/ trailing.txt", "may not start or end with a space"),
    ("raw/" + "n" * 300, "256-character limit"),
])
def test_names_synapse_refuses_fail_and_are_never_renamed(rel, words):
    v = verdict(obj(rel))
    assert v.action == "fail" and words in v.reason and "not registered" in v.reason


def test_markers_owner_txt_and_old_synfs_uploads_are_skipped():
    assert verdict(obj("raw/", b"")).reason == "folder marker"
    assert "proof of ownership" in verdict(obj("owner.txt")).reason
    old = verdict(obj("0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b/a.txt"))
    assert old.action == "skip" and "older version or a deleted file" in old.reason
    # a uuid-looking folder deeper down is just a folder
    assert verdict(obj("x/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b/a.txt")).action == "register"


def test_keys_outside_the_base_key_fail():
    v = decide(ObjectInfo("elsewhere/a.txt", 1, "e" * 32), bucket="bkt", base_key=BASE,
               list_prefix=PREFIX, index=Index())
    assert v.action == "fail" and "outside the base key" in v.reason


def test_an_object_held_by_a_current_handle_is_skipped_or_versioned():
    data = b"hello"
    index = Index()
    known = Known(7, ("moved", "h.txt"), "bkt", f"{BASE}/a/h.txt", len(data),
                  hashlib.md5(data).hexdigest())
    index.add_file(known)
    assert verdict(obj("a/h.txt", data), index).action == "skip"        # wherever it lives
    bigger = verdict(obj("a/h.txt", b"hello!"), index)
    assert (bigger.action, bigger.known) == ("new_version", known) and "size" in bigger.reason
    same_size = verdict(obj("a/h.txt", b"HELLO"), index)
    assert same_size.action == "new_version" and "ETag" in same_size.reason
    multipart = verdict(obj("a/h.txt", data, etag="0" * 32 + "-2"), index)
    assert multipart.action == "check"                                 # only the MD5 can tell


def test_a_name_taken_by_another_object_or_a_folder_fails():
    index = Index()
    index.add_file(Known(7, ("a.txt",), "bkt", f"{BASE}/other.txt", 1, "0" * 32))
    index.folders[("d",)] = 9
    taken = verdict(obj("a.txt"), index)
    assert taken.action == "fail" and "taken by syn7" in taken.reason
    assert "already exists" in verdict(obj("d"), index).reason
    assert "is not a folder" in verdict(obj("a.txt/b.txt"), index).reason


def test_prefix_forms_and_escapes():
    assert normalize_prefix("raw/2024/", "bkt", BASE) == "raw/2024"
    assert normalize_prefix("s3://bkt/base/raw", "bkt", BASE) == "raw"
    assert normalize_prefix("s3://bkt/base", "bkt", BASE) == ""
    assert listing_prefix(BASE, "raw") == "base/raw/" and listing_prefix(None, "") == ""
    for bad in ("../x", "/abs", "s3://bkt/basement/x", "s3://other/base/x"):
        with pytest.raises(ValueError):
            normalize_prefix(bad, "bkt", BASE)


# ---- hashing ---------------------------------------------------------------------------
def test_md5_streams_in_order_within_the_memory_budget():
    data = bytes(range(256)) * 4099                       # ~1 MiB, not a multiple of parts
    lock = threading.Lock()
    state = {"out": 0, "peak": 0}

    def read(start, length):
        with lock:
            state["out"] += 1
            state["peak"] = max(state["peak"], state["out"])
        time.sleep(0.001)
        return data[start:start + length]

    seen = []

    def consumed(n):
        with lock:
            state["out"] -= 1
        seen.append(n)

    got = hashing.object_md5(read, len(data), part_size=64 * 1024, memory_budget=256 * 1024,
                             workers=8, on_bytes=consumed)
    assert got == hashlib.md5(data).hexdigest()
    assert sum(seen) == len(data)
    assert state["peak"] <= 4                             # 256 KiB / 64 KiB parts in memory
    assert hashing.window_for(8, 1, 4) == 1               # a budget under one part: one part
    sizes = []

    def sized(start, length):
        sizes.append(length)
        return data[start:start + length]

    assert hashing.object_md5(sized, len(data), memory_budget=100 * 1024) == \
        hashlib.md5(data).hexdigest()
    assert max(sizes) == 100 * 1024                       # parts shrink to fit a small budget


def test_an_object_that_shrinks_while_hashed_is_not_given_an_md5():
    with pytest.raises(errors.ContentChanged):
        hashing.object_md5(lambda s, n: b"x" * max(0, min(n, 100 - s)), 1000, part_size=64)


# ---- journal ---------------------------------------------------------------------------
def test_journal_survives_a_torn_line_and_matches_only_the_same_object(tmp_path):
    path = tmp_path / "j.jsonl"
    j = Journal(path)
    j.record_md5("bkt", "k", 5, "e-2", "a" * 32)
    j.record_handle("bkt", "k2", 6, "f" * 32, "f" * 32, 42)
    j.close()
    with open(path, "ab") as f:
        f.write(b'{"t":"handle","bucket":"bkt","key":"k3"')   # a crash mid-line
    again = Journal(path)
    assert again.torn == 1
    assert again.md5("bkt", "k", 5, "e-2") == "a" * 32
    assert again.md5("bkt", "k", 5, "e-3") is None                 # changed object
    assert again.handle("bkt", "k2", 6, "f" * 32, "f" * 32) == 42
    again.record_md5("bkt", "k4", 1, "x-1", "b" * 32)              # after the torn line
    again.close()
    assert Journal(path).md5("bkt", "k4", 1, "x-1") == "b" * 32
    dry = Journal(tmp_path / "dry.jsonl", read_only=True)
    dry.record_md5("bkt", "k", 1, "e", "c" * 32)
    assert not (tmp_path / "dry.jsonl").exists()


# ---- the run, with fake seams -------------------------------------------------------------
class Crash(Exception):
    pass


class FakeSynapse:
    """Client and writer in one: a folder tree, an owner flag, scripted failures."""

    def __init__(self, owner=True):
        self.owner = owner
        self.next_id = 100
        self.entities: dict[int, dict] = {1: {"kind": Kind.FOLDER, "parent": None, "name": "root"}}
        self.handles: dict[int, dict] = {}
        self.handle_posts = 0
        self.folder_posts = 0
        self.crash_on_create = 0
        self.refuse_handles = False
        self.unavailable = False
        self.stats = {}

    def _id(self):
        self.next_id += 1
        return self.next_id

    # client
    def get_entity(self, eid):
        e = self.entities[eid]
        fh = self.handles.get(e.get("handle"))
        handle = FileHandle(id=e["handle"], size=fh["size"], md5=fh["md5"], concrete_type="",
                            storage_location_id=5, bucket=fh["bucket"], key=fh["key"],
                            file_name=None, content_type=None) if fh else None
        return Entity(id=eid, name=e["name"], kind=e["kind"], parent_id=e["parent"], etag="",
                      created_on=0, modified_on=0, version=e.get("version"),
                      file_handle_id=e.get("handle"), file_handle=handle)

    def upload_destination(self, eid):
        return UploadDestination(5, EXTERNAL_S3_DEST, True, "bkt", BASE)

    def list_children(self, pid):
        return [ChildHeader(id=i, name=e["name"], kind=e["kind"], modified_on=0, version=1)
                for i, e in self.entities.items() if e["parent"] == pid]

    def child_id(self, pid, name):
        return next((i for i, e in self.entities.items()
                     if e["parent"] == pid and e["name"] == name), None)

    # writer
    def owns_storage_location(self, loc):
        return self.owner

    def external_s3_handle(self, *, bucket, key, file_name, md5, size, storage_location_id,
                           content_type):
        self.handle_posts += 1
        if self.unavailable:
            raise errors.Unavailable("POST /externalFileHandle/s3: gave up after 30s (HTTP 429)")
        if self.refuse_handles:
            raise errors.PermissionDenied(
                "POST /externalFileHandle/s3: 403 Only the creator of "
                "ExternalS3StorageLocationSetting.id=5 can create an external S3FileHandle")
        hid = self._id()
        self.handles[hid] = {"bucket": bucket, "key": key, "md5": md5, "size": size}
        return hid

    def create_folder(self, pid, name):
        self.folder_posts += 1
        if name == "refused":
            raise errors.InvalidRequest("POST /entity (syn1): 400 Invalid Name: 'refused'")
        if self.child_id(pid, name) is not None:
            raise errors.AlreadyExists(f"POST /entity: 409 {name!r} exists in syn{pid}")
        fid = self._id()
        self.entities[fid] = {"kind": Kind.FOLDER, "parent": pid, "name": name}
        return self.get_entity(fid)

    def create_file(self, pid, name, hid):
        if self.crash_on_create:
            self.crash_on_create -= 1
            raise Crash("killed after the handle was created")
        fid = self._id()
        self.entities[fid] = {"kind": Kind.FILE, "parent": pid, "name": name, "handle": hid,
                              "version": 1}
        return fid

    def new_version(self, eid, hid):
        self.entities[eid]["handle"] = hid
        self.entities[eid]["version"] += 1

    def files(self):
        return {e["name"]: self.handles[e["handle"]] for e in self.entities.values()
                if e["kind"] == Kind.FILE}


class FakeBucket:
    def __init__(self, objects: dict[str, bytes], multipart=(), kms=()):
        self.objects = dict(objects)
        self.multipart = set(multipart)
        self.kms = set(kms)                  # SSE-KMS: a 32-hex ETag that is not the MD5
        self.reads = 0
        self.heads = 0
        self.change_after_read = None

    def info(self, key, head=False):
        data = self.objects[key]
        md5 = hashlib.md5(data).hexdigest()
        etag = f"{hashlib.md5(md5.encode()).hexdigest()}-2" if key in self.multipart else md5
        if key in self.kms:
            etag = hashlib.md5(data + b"kms").hexdigest()
        encryption = "aws:kms" if key in self.kms else ""
        return ObjectInfo(key, len(data), etag, encryption=encryption if head else "")

    def list_objects(self, loc, eid, bucket, prefix):
        return [self.info(k) for k in sorted(self.objects) if k.startswith(prefix)]

    def head(self, loc, eid, bucket, key):
        self.heads += 1
        return self.info(key, head=True)

    def read_range(self, loc, eid, bucket, key, start, length):
        self.reads += 1
        data = self.objects[key][start:start + length]
        if self.change_after_read == key:
            self.objects[key] = self.objects[key] + b"more"
            self.multipart.add(key)
        return data


def registrar(syn, bucket, journal, **opts):
    progress = Progress(out=io.StringIO(), err=io.StringIO(), bar=False)
    return Registrar(syn, syn, bucket, bucket, journal, progress,
                     Options(folder_id=1, **opts))


def test_a_run_killed_between_handle_and_file_reuses_the_handle(tmp_path):
    syn = FakeSynapse()
    bucket = FakeBucket({f"{BASE}/d/a.bin": b"a" * 5000, f"{BASE}/z.txt": b"z"},
                        multipart={f"{BASE}/d/a.bin"})
    syn.crash_on_create = 1
    first = registrar(syn, bucket, Journal(tmp_path / "j"))
    with pytest.raises(Crash):
        first.run()
    first.journal.close()
    assert syn.handle_posts == 1 and syn.files() == {}
    reads = bucket.reads
    assert reads == 1                                     # a.bin (multipart) was hashed
    second = registrar(syn, bucket, Journal(tmp_path / "j"))
    second.run()
    assert syn.handle_posts == 2                          # z.txt only: a.bin's handle reused
    assert bucket.reads == reads                          # and its MD5 was not computed again
    assert syn.files()["a.bin"]["md5"] == hashlib.md5(b"a" * 5000).hexdigest()
    assert second.progress.counts["registered"] == 2
    third = registrar(syn, bucket, Journal(tmp_path / "j"))
    third.run()
    assert third.progress.counts["skipped"] == 2 and syn.handle_posts == 2


def test_hashing_only_when_the_etag_is_not_an_md5(tmp_path):
    syn = FakeSynapse()
    bucket = FakeBucket({f"{BASE}/single": b"s" * 100, f"{BASE}/multi": b"m" * 100},
                        multipart={f"{BASE}/multi"})
    r = registrar(syn, bucket, Journal(tmp_path / "j"))
    r.run()
    assert bucket.reads == 1 and r.progress.hashed == 100
    assert {k: v["md5"] for k, v in syn.files().items()} == {
        "single": hashlib.md5(b"s" * 100).hexdigest(), "multi": hashlib.md5(b"m" * 100).hexdigest()}
    syn2, bucket2 = FakeSynapse(), FakeBucket(bucket.objects)
    registrar(syn2, bucket2, Journal(tmp_path / "j2"), hash_all=True).run()
    assert bucket2.reads == 2


def test_sse_kms_etags_are_never_taken_for_md5s(tmp_path):
    """A listing cannot tell an SSE-KMS ETag (32 hex digits, not the MD5) from an MD5: the
    object is asked (HeadObject) before its ETag would be registered, and then hashed."""
    kms, plain = f"{BASE}/kms.bin", f"{BASE}/plain.txt"
    objects = {kms: b"k" * 300, plain: b"p" * 10}
    syn, bucket = FakeSynapse(), FakeBucket(objects, kms={kms})
    first = registrar(syn, bucket, Journal(tmp_path / "j"))
    first.run()
    assert {k: v["md5"] for k, v in syn.files().items()} == {
        "kms.bin": hashlib.md5(objects[kms]).hexdigest(),
        "plain.txt": hashlib.md5(objects[plain]).hexdigest()}
    assert bucket.reads == 1 and bucket.heads == 3        # both asked; kms.bin hashed, re-asked
    for journal in ("j", "fresh"):                       # a re-run, with and without the journal
        again = registrar(syn, FakeBucket(objects, kms={kms}), Journal(tmp_path / journal))
        again.run()
        assert again.progress.counts == {"skipped": 2}, again.progress.out.getvalue()
    assert all(e.get("version", 1) == 1 for e in syn.entities.values())


def test_hash_all_reruns_add_no_versions(tmp_path):
    objects = {f"{BASE}/a": b"a" * 50, f"{BASE}/b": b"b" * 70}
    syn = FakeSynapse()
    for journal in ("j", "j", "fresh"):
        bucket = FakeBucket(objects, kms=set(objects))
        registrar(syn, bucket, Journal(tmp_path / journal), hash_all=True).run()
        assert bucket.heads <= 2                          # only after hashing, to see no change
    assert {k: v["md5"] for k, v in syn.files().items()} == {
        k.rsplit("/", 1)[-1]: hashlib.md5(v).hexdigest() for k, v in objects.items()}
    assert all(e.get("version", 1) == 1 for e in syn.entities.values())


def test_an_object_changed_while_hashed_fails_and_is_not_registered(tmp_path):
    syn = FakeSynapse()
    key = f"{BASE}/moving"
    bucket = FakeBucket({key: b"v1" * 50}, multipart={key})
    bucket.change_after_read = key
    r = registrar(syn, bucket, Journal(tmp_path / "j"))
    r.run()
    assert r.progress.failed == 1 and syn.files() == {} and syn.handle_posts == 0
    assert "changed while it was hashed" in r.progress.err.getvalue()


def test_synapse_refusing_the_handle_names_the_owner_rule(tmp_path):
    syn = FakeSynapse()
    syn.refuse_handles = True
    r = registrar(syn, FakeBucket({f"{BASE}/a": b"a", f"{BASE}/b": b"b"}), Journal(tmp_path / "j"))
    with pytest.raises(RegisterError) as exc:
        r.run()
    assert OWNER_RULE in str(exc.value) and "s3://bkt/base/a" in str(exc.value)
    assert syn.handle_posts == 1                          # the run stops at the first refusal
    syn_not_owner = FakeSynapse(owner=False)
    with pytest.raises(RegisterError) as exc:
        registrar(syn_not_owner, FakeBucket({}), Journal(tmp_path / "j")).locate()
    assert "did not create storage location 5" in str(exc.value)


def test_an_object_synapse_refuses_fails_and_the_run_goes_on(tmp_path):
    syn = FakeSynapse()
    r = registrar(syn, FakeBucket({f"{BASE}/refused/a": b"a", f"{BASE}/z": b"z"}),
                  Journal(tmp_path / "j"))
    r.run()
    assert r.progress.reasons == {"refused by Synapse": 1} and set(syn.files()) == {"z"}
    assert "refused/a: Synapse refused it (400 Invalid Name" in r.progress.err.getvalue()


def test_throttling_beyond_the_retry_budget_stops_with_exit_8(tmp_path):
    syn = FakeSynapse()
    syn.unavailable = True
    r = registrar(syn, FakeBucket({f"{BASE}/a": b"a"}), Journal(tmp_path / "j"))
    with pytest.raises(RegisterError) as exc:
        r.run()
    assert exc.value.exit_code == 8 and "run the same command again" in str(exc.value)
    assert "HTTP 429" in str(exc.value)


def test_key_paths_become_folders_created_once_and_reused(tmp_path):
    syn = FakeSynapse()
    syn.entities[50] = {"kind": Kind.FOLDER, "parent": 1, "name": "d"}     # already in Synapse
    objects = {f"{BASE}/d/e/a": b"a", f"{BASE}/d/e/b": b"b", f"{BASE}/d/f/c": b"c",
               f"{BASE}/g/h": b"h"}
    r = registrar(syn, FakeBucket(objects), Journal(tmp_path / "j"))
    r.run()
    assert syn.folder_posts == 3                          # d/e, d/f, g: one POST each
    folders = {(e["parent"], e["name"]) for e in syn.entities.values()
               if e["kind"] == Kind.FOLDER}
    assert len(folders) == 5 and (1, "d") in folders      # root, d (reused), d/e, d/f, g
    assert sorted(syn.files()) == ["a", "b", "c", "h"]
    assert r.progress.out.getvalue().count("created folder d/e/") == 1
    again = registrar(syn, FakeBucket(objects), Journal(tmp_path / "j"))
    again.run()
    assert syn.folder_posts == 3 and again.progress.counts["skipped"] == 4


def test_dry_run_creates_nothing(tmp_path):
    syn = FakeSynapse()
    r = registrar(syn, FakeBucket({f"{BASE}/d/e/a": b"a", f"{BASE}/d/e/b": b"b"}),
                  Journal(tmp_path / "j", read_only=True), dry_run=True)
    r.run()
    out = r.progress.out.getvalue()
    assert out.count("would create folder d/e/") == 1 and out.count("would register") == 2
    assert syn.handle_posts == 0 and len(syn.entities) == 1


# ---- progress --------------------------------------------------------------------------
class Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_on_a_terminal_and_one_line_summary():
    now = [0.0]
    err, out = Tty(), io.StringIO()
    p = Progress(out=out, err=err, calls=lambda: 12, clock=lambda: now[0])
    p.listed(2)
    now[0] = 1.0
    p.add_hashed(3 * 1024 * 1024)
    assert "0/2 objects" in err.getvalue() and "3.0 MiB hashed" in err.getvalue()
    assert "12 calls" in err.getvalue()
    p.result("registered", "registered a")
    p.result("failed", "synfs: failed: b: bad name", reason_kind="bad name")
    p.finish()
    assert err.getvalue().endswith("\r\x1b[K")                     # the bar is cleared
    assert "registered a\n" in out.getvalue()
    assert p.summary() == ("1 registered, 0 new versions, 0 skipped, 1 failed (bad name: 1); "
                           "3.0 MiB hashed, 12 calls, 1.0s")
    quiet = Progress(out=io.StringIO(), err=Tty(), bar=False)
    quiet.listed()
    assert quiet.err.getvalue() == ""
    assert "interrupted" in quiet.summary(interrupted=True)


def test_summary_says_how_long_the_request_limit_made_it_wait():
    from types import SimpleNamespace

    from synfs.cli.register import _throttle_note
    from synfs.synapse.throttle import RateLimiter

    now = [0.0]
    limiter = RateLimiter(concurrency=3, max_requests=2, period=10.0, margin=0.0,
                          clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    client = SimpleNamespace(limiter=limiter)
    for _ in range(2):
        with limiter.slot():
            pass
    assert _throttle_note(client) == ""
    with limiter.slot():                                  # the third waits for the window
        pass
    assert _throttle_note(client) == "waited 10.0s for Synapse's request limit (2 per 10s)"

"""Plain, immutable models the Synapse client returns to the filesystem core.

No I/O and no requests/boto3 imports here: the core depends only on these shapes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum

CT = "org.sagebionetworks.repo.model."


class Kind(enum.Enum):
    PROJECT = "project"
    FOLDER = "folder"
    FILE = "file"
    LINK = "link"
    OTHER = "other"      # tables, views, docker repos, datasets: not shown in the tree

    @property
    def is_container(self) -> bool:
        return self in (Kind.PROJECT, Kind.FOLDER)


_KINDS = {
    CT + "Project": Kind.PROJECT,
    CT + "Folder": Kind.FOLDER,
    CT + "FileEntity": Kind.FILE,
    CT + "Link": Kind.LINK,
}


def kind_of(concrete_type: str | None) -> Kind:
    return _KINDS.get(concrete_type or "", Kind.OTHER)


def parse_id(value) -> int:
    """``"syn123"`` / ``"123"`` / 123 -> 123 (ValueError otherwise)."""
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.lower().startswith("syn"):
        text = text[3:]
    if not text.isdigit():
        raise ValueError(f"not a Synapse id: {value!r}")
    return int(text)


def parse_date(text: str | None) -> float:
    """Synapse ISO date -> POSIX timestamp (0.0 when missing)."""
    if not text:
        return 0.0
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.timestamp()


@dataclasses.dataclass(frozen=True)
class ChildHeader:
    """One row of ``POST /entity/children``."""

    id: int
    name: str
    kind: Kind
    modified_on: float
    version: int | None = None


@dataclasses.dataclass(frozen=True)
class FileHandle:
    id: int
    size: int
    md5: str | None
    concrete_type: str
    storage_location_id: int | None = None
    bucket: str | None = None
    key: str | None = None
    file_name: str | None = None
    content_type: str | None = None

    @property
    def is_s3(self) -> bool:
        return self.concrete_type == CT + "file.S3FileHandle" and bool(self.bucket and self.key)


@dataclasses.dataclass(frozen=True)
class Entity:
    """An entity with, for a file, its current file handle (when the caller may download it)."""

    id: int
    name: str
    kind: Kind
    parent_id: int | None
    etag: str
    created_on: float
    modified_on: float
    version: int | None = None
    file_handle_id: int | None = None
    file_handle: FileHandle | None = None
    can_download: bool = True
    unmet_access_requirement: bool = False
    can_update: bool = False       # UPDATE (UserEntityPermissions.canEdit)
    can_create: bool = False       # CREATE (canAddChild)
    can_delete: bool = False       # DELETE (canDelete)
    from_store: bool = False       # read back from the metadata store: attributes only


@dataclasses.dataclass(frozen=True)
class UploadDestination:
    storage_location_id: int
    concrete_type: str
    sts_enabled: bool = False
    bucket: str | None = None
    base_key: str | None = None

    @property
    def is_external_s3(self) -> bool:
        return self.concrete_type == CT + "file.ExternalS3UploadDestination"


@dataclasses.dataclass(frozen=True)
class StsCredentials:
    bucket: str
    base_key: str | None
    access_key_id: str
    secret_access_key: str = dataclasses.field(repr=False)
    session_token: str = dataclasses.field(repr=False)
    expiration: dt.datetime = dataclasses.field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))
    fetched_at: float = 0.0   # time.monotonic() when received

    def remaining(self, now: dt.datetime | None = None) -> float:
        now = now or dt.datetime.now(dt.timezone.utc)
        return (self.expiration - now).total_seconds()

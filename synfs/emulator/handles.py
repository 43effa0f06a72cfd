"""File-handle rows (no routes): lookup, the FileHandle JSON shape and S3FileHandle creation.

Sits in the storage layer so the entity modules can read handles without importing the file
API (``filehandles``), which re-exports these helpers.
"""

from __future__ import annotations

from . import db

S3_HANDLE = "org.sagebionetworks.repo.model.file.S3FileHandle"


def get_handle_row(c, fh_id):
    """The ``file_handles`` row for ``fh_id`` (int or numeric string), or None."""
    try:
        fh_id = int(fh_id)
    except (TypeError, ValueError):
        return None
    return c.execute("SELECT * FROM file_handles WHERE id = ?", (fh_id,)).fetchone()


def handle_json(row) -> dict:
    """FileHandle JSON (S3FileHandle fields of §4.1); null fields omitted."""
    out = {"id": str(row["id"]), "etag": row["etag"], "createdBy": str(row["created_by"]),
           "createdOn": row["created_on"], "modifiedOn": row["modified_on"],
           "concreteType": row["concrete_type"], "contentType": row["content_type"],
           "contentMd5": row["content_md5"], "fileName": row["file_name"],
           "storageLocationId": row["storage_location_id"], "contentSize": row["content_size"],
           "status": row["status"]}
    if row["concrete_type"] == S3_HANDLE:
        out.update(bucketName=row["bucket_name"], key=row["key"],
                   isPreview=bool(row["is_preview"]))
    elif row["external_url"] is not None:
        out["externalURL"] = row["external_url"]
    return {k: v for k, v in out.items() if v is not None}


def insert_s3_handle(c, created_by: int, bucket: str, key: str, file_name: str | None,
                     content_type: str | None, content_md5: str | None, content_size: int | None,
                     storage_location_id: int | None) -> int:
    """Create an S3FileHandle row and return its id."""
    fh_id = db.Store.next_id(c, "file_handle")
    stamp = db.synapse_date()
    c.execute("INSERT INTO file_handles(id, concrete_type, etag, created_by, created_on,"
              " modified_on, content_type, content_md5, content_size, file_name,"
              " storage_location_id, status, bucket_name, key) VALUES"
              " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'AVAILABLE', ?, ?)",
              (fh_id, S3_HANDLE, db.new_etag(), created_by, stamp, stamp, content_type,
               content_md5, content_size, file_name, storage_location_id, bucket, key))
    return fh_id

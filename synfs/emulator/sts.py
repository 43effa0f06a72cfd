"""STS vending: ``GET /repo/v1/entity/{id}/sts?permission=read_only|read_write``.

Checks in current Synapse's order (synapse-api.md §6.1): the entity must exist and not be in
the trash (404), the caller needs DOWNLOAD (read_only) or DOWNLOAD, UPDATE, CREATE and DELETE
in that order (read_write; 403 names the first one missing), the effective upload setting must
be STS-enabled (400 "Entity must have an STS-enabled storage location", also when there is no
setting at all), and write access is refused on Synapse storage (400). This is
``StsManagerImpl.getTemporaryCredentials`` since PLFM-7604 (permissions before the project
setting, so a missing entity is a 404); older releases answered 400 "Entity must have a project
setting" for a missing entity. Credentials come from a real AssumeRole on the local S3 server with Synapse's session
policy (``S3World.mint``), scoped to the storage location's bucket and baseKey. When the
``sts_expiration_s`` fault is set, the reported expiration is that many seconds away and the
S3 proxy rejects the key after it.
"""

from __future__ import annotations

import datetime as dt
import logging

from flask import Blueprint, jsonify, request

from . import acl, context, db, entity_core, storage
from .errors import BadRequest, SynapseError

log = logging.getLogger(__name__)

repo = Blueprint("sts", __name__)
BLUEPRINTS = [(repo, "/repo/v1")]

PERMISSIONS = ("read_only", "read_write")
ACCESS_BY_PERMISSION = {"read_only": ("DOWNLOAD",),
                        "read_write": ("DOWNLOAD", "UPDATE", "CREATE", "DELETE")}
DURATION_S = 12 * 60 * 60


def _permission() -> str:
    value = request.args.get("permission")
    if value is None:
        raise BadRequest("Required request parameter 'permission' for method parameter type "
                         "StsPermission is not present")
    if value not in PERMISSIONS:
        raise BadRequest(f"Failed to convert value of type 'java.lang.String' to required type "
                         f"'org.sagebionetworks.repo.model.sts.StsPermission'; No enum constant "
                         f"org.sagebionetworks.repo.model.sts.StsPermission.{value}")
    return value


@repo.get("/entity/<entity_id>/sts")
@context.scopes("view", "modify", "download")
def get_sts_credentials(entity_id: str):
    permission = _permission()
    eid = db.parse_syn_id(entity_id)
    if eid is None:
        raise BadRequest(f"Invalid entity id: {entity_id}")
    user = context.user()
    with context.store().tx() as c:
        entity_core.get_live_entity(c, eid)                  # 404: absent or in the trash
        for access in ACCESS_BY_PERMISSION[permission]:     # 403: the first access missing
            acl.require(c, user, eid, access)
        setting = storage.effective_setting(c, eid)
        loc = storage.location_row(c, setting["locations"][0]) if setting else None
        body = loc["body"] if loc else None
        if not storage.is_sts_location(body):
            raise BadRequest("Entity must have an STS-enabled storage location")
        if permission == "read_write" and body["concreteType"] == storage.S3_SETTING:
            raise BadRequest("STS write access is not allowed in Synapse storage")
        bucket = storage.location_bucket(body)
        base_key = body.get("baseKey")
    return jsonify(mint(bucket, base_key, permission, f"sts-{user.id}-{eid}"))


def mint(bucket: str, base_key: str | None, permission: str, session_name: str) -> dict:
    """StsCredentials JSON from a real AssumeRole (outside any DB transaction)."""
    state = context.state()
    reported = None
    lifetime = getattr(state.faults, "sts_expiration_s", None)
    if lifetime is not None:
        reported = db.now() + dt.timedelta(seconds=float(lifetime))
    try:
        creds = state.s3.mint(bucket, base_key, permission, session_name=session_name,
                              duration_s=DURATION_S, reported_expiration=reported)
    except Exception as exc:  # noqa: BLE001 - an AWS failure is a 502 in Synapse
        log.warning("STS AssumeRole failed: %s", type(exc).__name__)
        raise SynapseError(f"AmazonServiceException: {type(exc).__name__}", status=502) from None
    out = {"bucket": bucket}
    if base_key is not None:
        out["baseKey"] = base_key
    out.update(accessKeyId=creds["accessKeyId"], secretAccessKey=creds["secretAccessKey"],
               sessionToken=creds["sessionToken"], expiration=db.synapse_date(creds["expiration"]))
    return out

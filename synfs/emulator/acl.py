"""Entity permissions (no routes): benefactor lookup, access decisions, access requirements,
UserEntityPermissions and the ACL rows (read, write, delete). The REST API over them
(``/entity/{id}/acl``, ``/entity/{id}/benefactor``) is ``acl_api``.

Permissions come from the benefactor's ACL (nearest ancestor-or-self with a row in ``acls``;
the root and the trash folder are their own benefactors). Decisions follow Synapse's
``EntityAuthorizationManagerImpl`` decider chains: trash -> 404, admin -> granted, anonymous
-> READ only, certification for CREATE/UPDATE (UPDATE only outside projects), unmet access
requirements deny DOWNLOAD, then the ACL.
"""

from __future__ import annotations

from .db import (ANONYMOUS_ID, AUTHENTICATED_USERS_ID, PROJECT, PUBLIC_GROUP_ID, ROOT_ID,
                 TRASH_ID, Store, new_etag, synapse_date, syn_id)
from .errors import Forbidden, NotFound, SynapseError

ACCESS_TYPES = ("READ", "DOWNLOAD", "UPDATE", "CREATE", "DELETE", "CHANGE_PERMISSIONS",
                "CHANGE_SETTINGS", "MODERATE")
# Access types Synapse knows but the emulator does not model: accepted in ACL bodies.
OTHER_ACCESS_TYPES = ("UPLOAD", "SEND_MESSAGE", "PARTICIPATE", "SUBMIT", "READ_PRIVATE_SUBMISSION",
                      "UPDATE_SUBMISSION", "DELETE_SUBMISSION", "TEAM_MEMBERSHIP_UPDATE",
                      "REVIEW_SUBMISSIONS", "EXEMPTION_ELIGIBLE")
ADMIN_ACCESS = ("READ", "DOWNLOAD", "UPDATE", "CREATE", "DELETE", "CHANGE_PERMISSIONS",
                "CHANGE_SETTINGS", "MODERATE")

MSG_CERTIFIED = "Only certified users may create or update content in Synapse."
MSG_ANONYMOUS = "Anonymous users have only READ access permission."
MSG_UNMET = ("There are unmet access requirements that must be met to read content in the "
             "requested container.")
MSG_NOT_FOUND = "The resource you are attempting to access cannot be found"
MSG_PROJECT_ACL = "Cannot remove the ACL of a project"


def lack(access: str) -> str:
    return f"You lack {access} access to the requested entity."


# ---- core decisions ---------------------------------------------------------------------
def principals(user) -> set[int]:
    """Principal ids the caller acts as (no teams in the emulator)."""
    if user is None:
        return {ANONYMOUS_ID, PUBLIC_GROUP_ID}
    return {user.id, PUBLIC_GROUP_ID, AUTHENTICATED_USERS_ID}


def benefactor(c, eid: int) -> int:
    """Nearest ancestor-or-self with its own ACL (root and trash are their own benefactors)."""
    cur = eid
    for _ in range(200):
        if cur in (ROOT_ID, TRASH_ID):
            return cur
        if c.execute("SELECT 1 FROM acls WHERE entity_id = ?", (cur,)).fetchone():
            return cur
        row = c.execute("SELECT parent_id FROM entities WHERE id = ?", (cur,)).fetchone()
        if row is None or row["parent_id"] is None:
            return cur
        cur = row["parent_id"]
    return cur


def granted(c, user, ben: int) -> set[str]:
    """Access types the ACL of ``ben`` gives any of the caller's principals."""
    ids = sorted(principals(user))
    marks = ",".join("?" * len(ids))
    rows = c.execute(f"SELECT DISTINCT access_type FROM acl_entries WHERE entity_id = ?"
                     f" AND principal_id IN ({marks})", (ben, *ids)).fetchall()
    return {r["access_type"] for r in rows}


def unmet_requirements(c, user, eid: int) -> list[int]:
    """Ids of access requirements on ``eid`` or any ancestor the caller has not been approved for."""
    chain = Store.ancestors(c, eid)
    marks = ",".join("?" * len(chain))
    rows = c.execute(f"SELECT id FROM access_requirements WHERE entity_id IN ({marks})"
                     " ORDER BY id", chain).fetchall()
    out = []
    for r in rows:
        if user is not None and c.execute(
                "SELECT 1 FROM access_approvals WHERE requirement_id = ? AND user_id = ?",
                (r["id"], user.id)).fetchone():
            continue
        out.append(int(r["id"]))
    return out


def decide(c, user, eid: int, access: str) -> SynapseError | None:
    """None when granted, else the exception Synapse would raise for this denial."""
    row = c.execute("SELECT concrete_type, created_by, parent_id FROM entities WHERE id = ?",
                    (eid,)).fetchone()
    if row is None:
        return NotFound(MSG_NOT_FOUND)
    ben = benefactor(c, eid)
    admin = user is not None and user.is_admin
    if access == "DELETE" and admin:
        return None
    if ben == TRASH_ID and eid != TRASH_ID:
        return NotFound(f"Entity {syn_id(eid)} is in trash can.")
    if admin:
        return None
    if access == "READ":
        return None if "READ" in granted(c, user, ben) else Forbidden(lack("READ"))
    if access == "DOWNLOAD":
        if unmet_requirements(c, user, eid):
            return Forbidden(MSG_UNMET)
        if user is None:
            return Forbidden(MSG_ANONYMOUS)
        return None if "DOWNLOAD" in granted(c, user, ben) else Forbidden(lack("DOWNLOAD"))
    if user is None:
        return Forbidden(MSG_ANONYMOUS)
    if access == "CREATE" and not user.certified:
        return Forbidden(MSG_CERTIFIED)
    if access == "UPDATE" and row["concrete_type"] != PROJECT and not user.certified:
        return Forbidden(MSG_CERTIFIED)
    if access == "CHANGE_SETTINGS":
        if not user.certified:
            return Forbidden(MSG_CERTIFIED)
        if row["created_by"] == user.id:
            return None
    return None if access in granted(c, user, ben) else Forbidden(lack(access))


def can(c, user, eid: int, access: str) -> bool:
    return decide(c, user, eid, access) is None


def require(c, user, eid: int, access: str, message: str | None = None) -> None:
    """Raise the Synapse error for a denial: 404 (missing/trash) or 403 (``message`` if given)."""
    err = decide(c, user, eid, access)
    if err is None:
        return
    if message is not None and isinstance(err, Forbidden):
        raise Forbidden(message)
    raise err


def can_delete_acl(c, user, eid: int) -> SynapseError | None:
    row = c.execute("SELECT parent_id FROM entities WHERE id = ?", (eid,)).fetchone()
    if row is None:
        return NotFound(MSG_NOT_FOUND)
    if benefactor(c, eid) == TRASH_ID:
        return NotFound(f"Entity {syn_id(eid)} is in trash can.")
    if row["parent_id"] in (None, ROOT_ID):
        return Forbidden(MSG_PROJECT_ACL)
    return decide(c, user, eid, "CHANGE_PERMISSIONS")


def user_permissions(c, user, eid: int) -> dict:
    """UserEntityPermissions JSON for the caller on ``eid``."""
    row = c.execute("SELECT concrete_type, created_by FROM entities WHERE id = ?",
                    (eid,)).fetchone()
    ben = benefactor(c, eid)
    acl_types = granted(c, user, ben) if user is not None else set()
    admin = user is not None and user.is_admin
    public = c.execute("SELECT 1 FROM acl_entries WHERE entity_id = ? AND principal_id = ?"
                       " AND access_type = 'READ'", (ben, PUBLIC_GROUP_ID)).fetchone()
    ok = {a: can(c, user, eid, a) for a in ACCESS_TYPES}
    return {
        "canView": ok["READ"],
        "canEdit": ok["UPDATE"],
        "canMove": ok["UPDATE"] and ok["CHANGE_PERMISSIONS"],
        "canAddChild": ok["CREATE"],
        "canCertifiedUserEdit": admin or "UPDATE" in acl_types,
        "canCertifiedUserAddChild": admin or "CREATE" in acl_types,
        "isCertifiedUser": bool(user is not None and user.certified),
        "canChangePermissions": ok["CHANGE_PERMISSIONS"],
        "canChangeSettings": ok["CHANGE_SETTINGS"],
        "canDelete": ok["DELETE"],
        "canDownload": ok["DOWNLOAD"],
        "canUpload": user is not None,
        "canEnableInheritance": can_delete_acl(c, user, eid) is None,
        "ownerPrincipalId": int(row["created_by"]) if row else None,
        "canPublicRead": bool(public),
        "canModerate": ok["MODERATE"],
        "isCertificationRequired": True,
        "isEntityOpenData": False,
        "isDataContributor": False,
    }


# ---- ACL rows ---------------------------------------------------------------------------
def acl_json(c, eid: int) -> dict | None:
    row = c.execute("SELECT * FROM acls WHERE entity_id = ?", (eid,)).fetchone()
    if row is None:
        return None
    entries = c.execute("SELECT principal_id, access_type FROM acl_entries WHERE entity_id = ?"
                        " ORDER BY principal_id, access_type", (eid,)).fetchall()
    by_principal: dict[int, list[str]] = {}
    for e in entries:
        by_principal.setdefault(int(e["principal_id"]), []).append(e["access_type"])
    return {
        "id": syn_id(eid),
        "creationDate": row["created_on"],
        "etag": row["etag"],
        "resourceAccess": [{"principalId": p, "accessType": sorted(t)}
                           for p, t in sorted(by_principal.items())],
    }


def write_acl(c, eid: int, resource_access: list[tuple[int, list[str]]]) -> None:
    """Create or replace the ACL of ``eid`` (new ACL etag; creationDate kept on replace)."""
    stamp = synapse_date()
    c.execute("INSERT INTO acls(entity_id, etag, created_on, modified_on) VALUES (?, ?, ?, ?)"
              " ON CONFLICT(entity_id) DO UPDATE SET etag = excluded.etag,"
              " modified_on = excluded.modified_on", (eid, new_etag(), stamp, stamp))
    c.execute("DELETE FROM acl_entries WHERE entity_id = ?", (eid,))
    for principal, types in resource_access:
        for t in set(types):
            c.execute("INSERT OR IGNORE INTO acl_entries(entity_id, principal_id, access_type)"
                      " VALUES (?, ?, ?)", (eid, principal, t))


def grant_creator_all(c, eid: int, user_id: int) -> None:
    """The ACL a new Project gets: its creator holds every permission."""
    write_acl(c, eid, [(user_id, list(ADMIN_ACCESS))])


def delete_acl(c, eid: int) -> None:
    c.execute("DELETE FROM acl_entries WHERE entity_id = ?", (eid,))
    c.execute("DELETE FROM acls WHERE entity_id = ?", (eid,))


def delete_subtree_acls(c, eid: int) -> None:
    """Drop every ACL at or below ``eid`` (moving to the trash does this)."""
    rows = c.execute(
        "WITH RECURSIVE sub(id) AS (SELECT ? UNION ALL SELECT e.id FROM entities e"
        " JOIN sub ON e.parent_id = sub.id) SELECT id FROM sub", (eid,)).fetchall()
    for r in rows:
        delete_acl(c, r["id"])

"""User profiles: ``GET /userProfile`` and ``GET /userProfile/{id}`` (repo)."""

from __future__ import annotations

from flask import Blueprint, jsonify

from . import context
from .db import ANONYMOUS_ID
from .errors import NotFound

repo = Blueprint("users", __name__)
BLUEPRINTS = [(repo, "/repo/v1")]


def profile_json(row) -> dict:
    return {
        "ownerId": str(row["id"]),
        "etag": row["etag"],
        "firstName": row["display_name"] or row["user_name"],
        "lastName": "",
        "userName": row["user_name"],
        "displayName": row["display_name"] or row["user_name"],
        "email": row["email"],
        "emails": [row["email"]],
        "openIds": [],
        "createdOn": row["created_on"],
        "twoFactorAuthEnabled": False,
    }


@repo.get("/userProfile")
@context.scopes("view")
def my_profile():
    u = context.user()
    if u is None:
        return jsonify({"ownerId": str(ANONYMOUS_ID), "userName": "anonymous",
                        "displayName": "anonymous", "emails": []})
    with context.store().tx() as c:
        row = c.execute("SELECT * FROM users WHERE id = ?", (u.id,)).fetchone()
    return jsonify(profile_json(row))


@repo.get("/userProfile/<int:profile_id>")
@context.scopes("view")
def other_profile(profile_id: int):
    with context.store().tx() as c:
        row = c.execute("SELECT * FROM users WHERE id = ?", (profile_id,)).fetchone()
    if row is None:
        raise NotFound(f"UserProfile cannot be found for: {profile_id}")
    out = profile_json(row)
    if context.user() is None or context.user().id != profile_id:
        out.pop("email", None)
        out.pop("emails", None)
    return jsonify(out)


@repo.get("/user/<int:profile_id>/team")
@context.scopes("view")
def user_teams(profile_id: int):
    """Teams are not modelled: every user belongs to none (PaginatedResults shape)."""
    return jsonify({"results": [], "totalNumberOfResults": 0})

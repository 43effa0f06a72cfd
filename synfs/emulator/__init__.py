"""The local Synapse emulator: REST shapes of Synapse over SQLite state, with STS from a real S3.

Modules: ``errors`` (Synapse error responses), ``db`` (SQLite schema and row helpers),
``context`` (per-request user, scopes, body), ``app`` (Flask app, auth, throttling, faults),
``faults`` (run-time fault injection), ``server`` (process lifecycle), and one module per API
area (entities, acl, storage, sts, filehandles, multipart, admin).
"""

"""The local Synapse emulator: Synapse's REST shapes over SQLite state, with S3 and STS from a
real local S3 server (SeaweedFS behind ``s3world``/``s3proxy``), and file views queried in SQL.

Layers, each importing only from those before it (checked by ``tests/emulator/test_layers.py``):
errors, db, context, faults, s3config/s3proxy/s3world -> storage, handles, columns, view_schema,
table_query -> acl -> entity_core, annotations, entity_children, entity_versions, entity_bundle,
trash, entities, views -> REST handlers (acl_api, storage_api, filehandles, multipart, sts,
users, admin, table_jobs, table_api) -> app, server.

A world apart from the mount: it shares no code with the rest of synfs, so it cannot hide a bug
of the code it tests. May import nothing outside ``emulator``.
Imported by ``cli`` (its emulator and demo commands, at call time).
"""

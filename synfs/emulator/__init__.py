"""The local Synapse emulator: Synapse's REST shapes over SQLite state, with S3 and STS from a
real local S3 server (SeaweedFS behind ``s3world``/``s3proxy``).

Layers, each importing only from those before it (checked by ``tests/emulator/test_layers.py``):
errors, db, context, faults, s3config/s3proxy/s3world -> storage, handles -> acl -> entity_core,
entity_children, entity_versions, entity_bundle, trash, entities -> acl_api, storage_api,
filehandles, multipart, sts, users, admin (REST handlers) -> app, server.
"""

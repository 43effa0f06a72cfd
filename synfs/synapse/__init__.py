"""The seam to Synapse: a blocking REST ``client`` (auth, paging, retries, typed errors) with
its request scheduler (``throttle``), the plain ``models`` it returns, the ``writer`` (file
handles, entities, versions), file-view queries (``tables``), the entity-name rule (``names``)
and the STS ``credentials`` store. Called from worker threads via ``remote``.

May import the foundation only.
Imported by ``s3``, ``remote``, ``read``, ``write``, ``fs``, ``register``, ``snapshot``,
``service`` and ``cli``.
"""

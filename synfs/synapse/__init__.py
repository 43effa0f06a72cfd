"""The seam to Synapse: a blocking REST client (auth, paging, retries, typed errors, the request
scheduler), the plain models it returns, the writer, and the STS credential store. May import
only the foundation modules (``errors``, ``redact``); called from worker threads via ``remote``.
"""

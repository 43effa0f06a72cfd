"""The seam to Synapse: a blocking REST client (auth, paging, retries, typed errors), the
plain models it returns, and the STS credential store."""

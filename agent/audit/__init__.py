"""The auditor's side: verify a bucket against allowed signers, and the report."""

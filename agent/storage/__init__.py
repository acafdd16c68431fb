"""Where state lives: the bucket (S3, local directory, the shared upload pool) and the journal (SQLite)."""

"""Where state lives: the bucket (S3, local directory, the shared upload pool), the journal (SQLite), the custody
chain's writer and the transparency log's hash store. The only layer that talks to SQLite, S3 or the bucket directory.
"""

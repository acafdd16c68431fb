"""Imported by the bay workers' forkserver when the daemon's bucket is S3 (agent/service/bayworker.py):
botocore and S3's models are loaded once there, and every worker forked from it shares them instead of
importing and parsing them again at each docking (issue 14, the daemon's CPU per GiB)."""

from __future__ import annotations

from bodycam.agent.storage.bucket import preload_s3

preload_s3()

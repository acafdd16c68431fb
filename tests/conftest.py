"""Shared pytest fixtures. The SeaweedFS S3 server fixtures live in ``s3server.py``."""

from __future__ import annotations

from .s3server import s3_bucket, seaweedfs

__all__ = ["s3_bucket", "seaweedfs"]

"""Evidence formats: age, SSH signatures, the manifest, the custody chain, agreements and the transparency log.

Pure: bytes in, bytes out (files read where a format names them); a stranger can reimplement each from docs/formats.md.
"""

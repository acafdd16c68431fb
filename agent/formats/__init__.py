"""Evidence formats: age encryption, SSH signatures, the manifest and the custody chain (pure, no I/O beyond files)."""

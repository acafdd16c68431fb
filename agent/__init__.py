"""The docking-station agent (installed as ``bodycam.agent``), one package per layer, bottom up.

``config`` (one Config object) < ``formats`` (age, SSHSIG, manifest, custody chain, agreements, tlog)
< ``storage`` (bucket, journal, custody writer, log store) < ``pipeline`` (the dock's work) and
``audit`` (the auditor's, apart from it) < ``service`` (daemon) < ``cli``. docs/ARCHITECTURE.md draws it.
"""

__version__ = "0.1.0"

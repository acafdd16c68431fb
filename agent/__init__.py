"""The docking-station agent: pipeline, service and CLI (installed as ``bodycam.agent``)."""

__version__ = "0.1.0"

"""Sigil's live monitor: a WebSocket transport for ``sigil orchestrate --monitor``, the monitor
server (stream, REST reads, dashboard), ``sigil monitor`` and the spec's ``monitor.py``."""

__version__ = "0.1.0"

"""sink_otel: every Sigil run as one OpenTelemetry trace, in the GenAI semantic conventions.

The plugin module (:mod:`sigil_sink_otel.plugin`) imports nothing heavy: the OpenTelemetry SDK is
imported only when a run starts with an OTLP endpoint configured.
"""

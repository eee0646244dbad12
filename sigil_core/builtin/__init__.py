"""The core's default plugins. Each is an ordinary plugin module registered through the same
hooks as third-party plugins (``trylast``), so any of them can be replaced or disabled."""

"""pytest integration: the plugin and pytest-benchmark's JSON."""

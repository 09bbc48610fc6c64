"""The results contract: the typed schema, its file format, the SQL store and the latency statistics. The
only part of the harness `reports/` imports."""

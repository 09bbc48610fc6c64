"""Renderers over the results schema; they read `harness.schema` and `harness.stats`, nothing else."""

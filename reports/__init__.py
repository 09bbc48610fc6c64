"""Renderers over the results schema; they read `harness.results.schema` and `harness.results.stats`,
nothing else."""

"""The process boundary: spawning an isolated worker, the typed messages it sends, the environment it
inherits."""

"""The "how" of a run: plan, backends, isolated workers, timing, memory, energy, parity, statistics,
schema."""

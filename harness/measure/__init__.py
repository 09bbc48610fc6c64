"""The child side of an unpaired case: load, first inference, timing loop, memory, energy, thermal state."""

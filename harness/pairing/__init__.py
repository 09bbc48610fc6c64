"""Paired measurement: the child that alternates blocks of calls, the parent's series of paired processes,
the sequential verdict."""

"""Reasoning over snapshots (trace, doctor): pure functions, no I/O, no UI imports."""

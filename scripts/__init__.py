"""Runnable scripts (`make demo`, `make chaos`); importable by the tests as `scripts.*`."""

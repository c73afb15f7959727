"""Preflight, in the parent: every check that can run before a model loads or a GPU is touched (run.py)."""

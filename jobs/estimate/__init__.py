"""The memory estimate, in the parent: sizes from the model's headers (formula.py) against this machine (memory.py)."""

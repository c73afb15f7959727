"""`python -m jobs.methods`: the method names, one per line (the Makefile's training targets)."""

from jobs.methods import METHODS

print("\n".join(METHODS))  # noqa: T201 - the output is the product

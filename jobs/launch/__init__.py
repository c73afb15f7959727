"""Between the parent and the training processes: in process, or `accelerate launch` (launcher.py, worker.py)."""

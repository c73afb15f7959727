"""The trainer callbacks that guard one run: stop on SIGTERM, non-finite steps, checkpoints, memory, progress."""

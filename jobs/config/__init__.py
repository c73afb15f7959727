"""The run's settings, in the parent before any model loads: TRAIN_* parsed (settings.py), the defaults the job
adds (defaults.py), the topology (topology.py), and the run worked out once for this machine (resolved.py)."""

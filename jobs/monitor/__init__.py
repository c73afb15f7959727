"""Monitoring: the job's Prometheus metrics (listed in the README's Monitoring section).

Writers (`metrics`, one per process through `writer`) and the HTTP exporter (`server`) live in different
processes: every process of the job writes its values into memory-mapped files (prometheus_client's
multiprocess mode: an O(1) write, no lock shared with a scrape), and a small server process started by
the entrypoint reads them at scrape time, together with NVML GPU readings (`gpu`) and process/system
readings (`system`). So a scrape never blocks a training step, and a training process that hangs, is
stopped (SIGSTOP) or dies still has its last values served, which is what the stalled/failed alerts
need. `lifecycle` starts and stops the server from the entrypoint; the trainer callback that maps TRL's
logs to the metrics runs in the training processes (jobs/train/guards/metrics_callback.py).
"""

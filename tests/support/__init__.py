"""Helpers that several test files use, so that no test file imports another.

`servers`: free loopback ports, HTTP gets, polling, and starting/stopping a server process by its own
handle; `nvml`: a stand-in NVML for GPU-less machines; `rules`: the shipped alert rules and promtool.
"""

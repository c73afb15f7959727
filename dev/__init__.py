"""The development package: the demo (a tiny offline model, sample data, `make <method>`), the benchmark
models' shapes, and the helpers that run the entrypoint as a user does, for tests and benchmarks. The
image holds jobs/, not this."""

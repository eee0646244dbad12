"""A local Chat Completions server for tests and benchmarks (:mod:`.server`)."""

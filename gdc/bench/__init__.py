"""Benchmarks: gdc measured against the tools people use today (``gdc bench ...``)."""

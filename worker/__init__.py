"""The queue side of gdc: the job contract the API stands on, and the warm worker that runs jobs.

``connection``, ``job``, ``queue``, ``sweep``, ``keys``, ``meta``, ``schemas``, ``store``, ``settings`` and
``callbacks`` are torch-free and shared with the API; only ``worker.tasks`` and ``worker.main`` import the engine
(torch).
See docs/architecture.md.
"""

"""The queue side of gdc: RQ tasks that run the engine, and the warm worker that runs them.

Only ``worker.tasks`` and ``worker.main`` import torch; the API imports ``keys``, ``jobs``
and ``store`` to enqueue work and read results.
"""

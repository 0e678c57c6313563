"""The top floor: the ``gdc`` command (segment, eval, batch, bench, serve, worker, submit) and what only
commands need (flags, a progress bar, COCO files, scoring, starting a service from a script).

It stands on the engine (:mod:`gdc`), the worker and the service; nothing below imports it.
"""

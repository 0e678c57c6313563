"""One router per resource: segment (submit), jobs (status, results, cancel), options, health."""

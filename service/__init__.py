"""The gdc web service: a FastAPI front (``service.app``) over an RQ queue worked by ``worker``."""

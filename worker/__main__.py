"""``python -m worker``: one worker on the settings of its environment (``REDIS_URL``, ``GDC_*``).

What ``gdc serve`` starts for each of its embedded workers; ``gdc worker`` is the same with flags.
"""
import sys

from .main import run
from .settings import QueueSettings

settings = QueueSettings()
sys.exit(run(settings, [settings.queue]))

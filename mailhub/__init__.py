# Every entry point (manage.py, gunicorn, celery, pytest) imports this package first, so this is
# the one place where a bad setting is turned into a one-line error before anything else runs.
from mailhub.startup import load_settings_or_exit

load_settings_or_exit()

from mailhub.celery import app as celery_app  # noqa: E402

__all__ = ("celery_app",)

"""The benchmarks' settings profile: the demo's settings with quiet logging.

Later releases add limits (rate, size) that this profile raises, so that the defaults never
distort a measurement.
"""

from demo_project.settings import *  # noqa: F403

DEBUG = False
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}

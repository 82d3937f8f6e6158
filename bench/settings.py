"""The benchmarks' settings profile: the demo's settings with quiet logging, the open policy and
the limits off, so that the secure defaults never distort a measurement (docs/benchmarks.md).

The load generator connects anonymously without tokens, from one address, and floods on purpose.
"""

import json
import os

from demo_project.settings import *  # noqa: F403
from demo_project.settings import THINWS_CHANNELS

THINWS_CHANNELS = {
    **THINWS_CHANNELS,
    "ANONYMOUS": "open",
    "RATE_LIMIT": None,
    "MAX_FRAME_BYTES": None,
    "MAX_PAYLOAD_DEPTH": None,
    "MAX_ROOMS_PER_CONNECTION": None,
    "MAX_SOCKETS_PER_CONNECTION": None,
    "MAX_CONNECTIONS_PER_ADDRESS": None,
    "MAX_SEND_BUFFER": None,
    "CONNECT_TIMEOUT": None,
}

DEBUG = False
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}

# One run may turn a limit back on to measure its cost, e.g.
# THINWS_BENCH_SETTINGS='{"MAX_SEND_BUFFER": 1048576}' (docs/benchmarks.md).
THINWS_CHANNELS.update(json.loads(os.environ.get("THINWS_BENCH_SETTINGS") or "{}"))

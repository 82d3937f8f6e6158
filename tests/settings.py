"""Settings for the test suite: the app on SQLite and the in-memory channel layer.

Integration tests start real daphne processes of ``demo_project`` instead (tests/servers.py).
"""

import os
import tempfile

SECRET_KEY = "tests-only"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "channels",
    "thinws_channels",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "tests.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

_DB_FILE = os.path.join(tempfile.gettempdir(), f"thinws-tests-{os.getpid()}.sqlite3")

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        # A file, not :memory:, so the ORM thread of database_sync_to_async sees the same data.
        "NAME": _DB_FILE,
        "TEST": {"NAME": _DB_FILE},
    }
}

CHANNEL_LAYERS = {
    "default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 10_000}}
}

# The protocol tests' profile: anonymous sockets may connect without a token, and no rate limit
# or per-address limit gets in the way of tests that send fast from one address, nor a connect
# timeout in the way of fault tests whose sockets wait minutes for Redis. The secure defaults are
# what tests/test_security*.py test (they override this with {}).
PROTOCOL_TEST_PROFILE: dict[str, object] = {
    "ANONYMOUS": "open",
    "RATE_LIMIT": None,
    "MAX_CONNECTIONS_PER_ADDRESS": None,
    "CONNECT_TIMEOUT": None,
}
THINWS_CHANNELS: dict[str, object] = dict(PROTOCOL_TEST_PROFILE)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
STATIC_URL = "static/"

"""Settings of the demo project: a real Django project that uses thinws_channels.

Environment:
    REDIS_URL       use channels-redis on this Redis (default: the in-memory layer, one process)
    THINWS_LAYER    with REDIS_URL: "pubsub" (RedisPubSubChannelLayer, the default) or "core"
                    (RedisChannelLayer)
    DATABASE_PATH   the SQLite file (default: db.sqlite3 beside manage.py)
    DJANGO_DEBUG    "1" for debug mode (default on, this is a demo)
    DJANGO_ALLOWED_HOSTS  comma-separated (default: localhost, 127.0.0.1, [::1])
    THINWS_INSTANCE a name for this process, sent in the connect ack and shown on the demo page,
                    to tell instances apart (INSTANCE_NAME)
    THINWS_GROUP_REFRESH_INTERVAL  seconds (default 60), see docs/configuration.md
    THINWS_SETTINGS a JSON object merged into THINWS_CHANNELS (tests and benchmarks use it for
                    their profiles, e.g. '{"ANONYMOUS": "open", "RATE_LIMIT": null}')
"""

import json
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "demo-only-insecure-key-change-me")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "thinws_channels",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "demo_project.urls"
ASGI_APPLICATION = "demo_project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DATABASE_PATH") or BASE_DIR / "db.sqlite3",
        # Several daphne processes may share one SQLite file in the demo: wait for the lock
        # instead of failing at once, and let readers run beside a writer.
        "OPTIONS": {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL;",
        },
    }
}

REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    if os.environ.get("THINWS_LAYER", "pubsub") == "core":
        CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                # One channel per process carries every room message to it: give it room.
                "CONFIG": {"hosts": [REDIS_URL], "capacity": 10_000},
            }
        }
    else:
        CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                "CONFIG": {"hosts": [REDIS_URL]},
            }
        }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": 10_000},
        }
    }

THINWS_CHANNELS = {
    "INSTANCE_NAME": os.environ.get("THINWS_INSTANCE", ""),
    "GROUP_REFRESH_INTERVAL": float(os.environ.get("THINWS_GROUP_REFRESH_INTERVAL", "60")),
    **json.loads(os.environ.get("THINWS_SETTINGS") or "{}"),
}

AUTH_PASSWORD_VALIDATORS: list[dict[str, str]] = []

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# The demo's own CSS and JS (demo_project/static/demo/); the app's thinws.js comes from
# thinws_channels/static/. demo_project/asgi.py serves both from these folders, no collectstatic.
STATICFILES_DIRS = [BASE_DIR / "demo_project" / "static"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"thinws_channels": {"handlers": ["console"], "level": "INFO", "propagate": False}},
}

"""Django settings for sched. Every value an operator sets comes from ``config.load()``."""

from __future__ import annotations

import secrets
import socket

import dj_database_url

from .config import BASE_DIR, load

SCHED = load()

DEBUG = SCHED.debug
# No secret in code: without SCHED_SECRET_KEY a debug run gets a random per-process key and a
# production run fails its system check (sched.E001).
SECRET_KEY = SCHED.secret_key or (secrets.token_urlsafe(50) if DEBUG else "")
ALLOWED_HOSTS = list(SCHED.allowed_hosts)

# Behind TLS (README, "Deployment"): each from the environment, off by default so that a
# local run over plain HTTP keeps its session.
SECURE_PROXY_SSL_HEADER = SCHED.proxy_ssl_header
CSRF_TRUSTED_ORIGINS = list(SCHED.csrf_trusted_origins)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = SCHED.secure_cookies
SECURE_SSL_REDIRECT = SCHED.ssl_redirect
# Health checks and scrapes come from inside the network, over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
SECURE_HSTS_SECONDS = SCHED.hsts_seconds
SECURE_HSTS_INCLUDE_SUBDOMAINS = SCHED.hsts_seconds > 0
SECURE_HSTS_PRELOAD = SCHED.hsts_preload

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "channels",
    "django_prometheus",
    "workflows",
    "dispatch",
    "timers",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "schedproject.querystrings.RefuseNulQueryMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "schedproject.urls"
ASGI_APPLICATION = "schedproject.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "builtins": ["workflows.dashboard.templatetags"],
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "workflows.dashboard.access.context",
            ],
        },
    },
]


def _database() -> dict[str, object]:
    if SCHED.database_url:
        db: dict[str, object] = dict(dj_database_url.parse(SCHED.database_url, conn_max_age=0))
        if SCHED.uses_postgres:
            options = dict(db.get("OPTIONS") or {})  # type: ignore[call-overload]
            options.setdefault("pool", {"min_size": 1, "max_size": 8, "timeout": 10})
            # A process paused inside a transaction (SIGSTOP, a debugger) must not hold its row
            # locks, and so every other engine, forever.
            options.setdefault("options", "-c idle_in_transaction_session_timeout=5000")
            # Lets psycopg prepare statements: the hot statements of ``schedproject.sql`` bind
            # on the server and ask for it (Django's own cursors bind on the client and never
            # do). Behind a pooler that cannot keep prepared statements, set it to None.
            options.setdefault("prepare_threshold", 5)
            db["OPTIONS"] = options
        return db
    SCHED.data_dir.mkdir(parents=True, exist_ok=True)
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": SCHED.data_dir / "sched.sqlite3",
        # Opening a SQLite connection is cheap but not free: long-lived threads (the worker
        # consumer's, the loops') keep theirs.
        "CONN_MAX_AGE": 300,
        "OPTIONS": {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": (
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=30000;"
            ),
        },
        "TEST": {"NAME": SCHED.data_dir / "test.sqlite3"},
    }


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Idle seconds before the first probe, seconds between probes, probes lost before the
# connection is dropped (Linux names; elsewhere the system's defaults apply).
_REDIS_KEEPALIVE = {getattr(socket, name): value for name, value in
                    (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3))
                    if hasattr(socket, name)}

if SCHED.redis_url:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # channels-redis blocks 5 s at a time waiting for messages (BZPOPMIN, answered by
            # a live server within that), so redis-py gets no socket timeout of its own: with
            # one, each write goes through asyncio.wait_for, which on Python 3.11 can swallow
            # the cancel of a consumer's receive (a disconnecting consumer then never ends).
            # A server that went silent is found by TCP keepalive instead (about 25 s).
            "CONFIG": {"hosts": [{"address": SCHED.redis_url, "socket_timeout": None,
                                  "socket_keepalive": True,
                                  "socket_keepalive_options": _REDIS_KEEPALIVE}],
                       "capacity": 10_000, "expiry": 60},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = SCHED.data_dir / "staticfiles"

DATA_UPLOAD_MAX_MEMORY_SIZE = SCHED.max_payload_bytes

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["workflows.api.auth.BearerTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "workflows.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "sched API",
    "DESCRIPTION": "Start, signal, cancel and inspect durable workflows.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Vendored and pinned (static/vendor/swagger-ui/VERSION): the docs page loads nothing
    # from a CDN.
    "SWAGGER_UI_DIST": "/static/vendor/swagger-ui",
    "SWAGGER_UI_FAVICON_HREF": "/static/vendor/swagger-ui/favicon-32x32.png",
}

LOGIN_URL = "/login/"

# Failed logins are counted per user name and client address (workflows.dashboard.logins):
# in Redis when there is one (shared by the engines), else in this process.
AUTHENTICATION_BACKENDS = ["workflows.dashboard.logins.RateLimitedModelBackend"]
CACHES = {"default": (
    {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": SCHED.redis_url,
     "KEY_PREFIX": "sched"}
    if SCHED.redis_url else
    {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"})}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"()": "schedproject.logs.TextFormatter"},
        "json": {"()": "schedproject.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": SCHED.log_format},
    },
    "root": {"handlers": ["console"], "level": SCHED.log_level},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
    },
}

# /metrics (django-prometheus): per-view latency buckets, in seconds.
PROMETHEUS_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                              30.0, 60.0, float("inf"))

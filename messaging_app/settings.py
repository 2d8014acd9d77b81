"""
Settings for messaging_app: one file, driven by the environment.

Development default: `DJANGO_DEBUG=1` (the Makefile sets it) with an embedded
SQLite database and a throwaway secret. Production (`DJANGO_DEBUG` unset or
off) refuses to start without `DJANGO_SECRET_KEY`, or with a placeholder or
short one.

Every variable is listed in docs/configuration.md.
"""
import importlib.util
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from messaging_app.redis_clients import RedisConfig, parse_sentinels

BASE_DIR = Path(__file__).resolve().parent.parent

# Settings come from the real environment only (a `.env` file belongs to docker compose).
env = environ.Env()

DEBUG = env.bool("DJANGO_DEBUG", default=False)

SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. Set it (any long random string) or, "
            "for local development only, set DJANGO_DEBUG=1."
        )
    SECRET_KEY = "django-insecure-development-only-key-do-not-use-in-production"

# Words that mark a value copied from an example file (secret.env.example, .env.example) and
# never replaced. Production refuses such a key, and one too short to resist guessing, so a
# deployment cannot run with a secret published in this repository.
# "not-a-production-secret": the key `make serve` once signed with, published in the Makefile.
PLACEHOLDER_SECRET_MARKERS = (
    "change-me", "changeme", "replace-me", "replace-with", "placeholder", "not-a-production-secret",
)
SECRET_KEY_MIN_LENGTH = 32
if not DEBUG:
    lowered = SECRET_KEY.lower()
    if any(marker in lowered for marker in PLACEHOLDER_SECRET_MARKERS) or lowered.startswith("django-insecure"):
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is a placeholder from an example file. Set a long random string, e.g. "
            "python3 -c 'import secrets; print(secrets.token_urlsafe(50))'."
        )
    if len(SECRET_KEY) < SECRET_KEY_MIN_LENGTH or len(set(SECRET_KEY)) < 5:
        raise ImproperlyConfigured(
            f"DJANGO_SECRET_KEY is too short or too uniform (at least {SECRET_KEY_MIN_LENGTH} characters, "
            "5 different). Set a long random string, e.g. "
            "python3 -c 'import secrets; print(secrets.token_urlsafe(50))'."
        )

ALLOWED_HOSTS = env.list(
    "DJANGO_ALLOWED_HOSTS",
    default=["localhost", "127.0.0.1", "[::1]"] if DEBUG else [],
)
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    # First, so its management commands win over Django's (changepassword ends the user's logins).
    "chats",
    # Files and images sent with messages (attachments/: upload, download, thumbnails, limits).
    "attachments",
    # Background work (Celery tasks) and outgoing webhooks (notifications/, docs/webhooks.md).
    "notifications",
    # Personal access tokens for bots and scripts (bots/: `Authorization: Token <token>`).
    "bots",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "channels",
    "rest_framework",
    # Refresh tokens are rotated and the used ones blacklisted; logout blacklists too.
    "rest_framework_simplejwt.token_blacklist",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "drf_standardized_errors",
    # The reference web client at /app/: its HTML shell and static files (webclient/).
    "webclient",
]

MIDDLEWARE = [
    # /healthz and /readyz answer first: no host check, no HTTPS redirect, no session.
    "messaging_app.health.HealthCheckMiddleware",
    # X-Request-ID (taken when it is a canonical UUID, else made) and the request's log line.
    "messaging_app.request_log.RequestLogMiddleware",
    # Prometheus: rate, latency, status and SQL queries/time per route (messaging_app/metrics.py).
    "messaging_app.metrics.MetricsMiddleware",
    # Cache-Control: no-store on the API, a Content-Security-Policy on HTML pages.
    "messaging_app.security_headers.SecurityHeadersMiddleware",
    "messaging_app.limits.BodySizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

if env.list("DATABASE_REPLICA_URLS", default=[]):
    # Read replicas: whether a request's reads may use one (messaging_app/db/replicas.py).
    MIDDLEWARE.insert(MIDDLEWARE.index("messaging_app.metrics.MetricsMiddleware") + 1,
                      "messaging_app.db.replicas.ReplicaRoutingMiddleware")

if DEBUG and importlib.util.find_spec("daphne"):
    # Development only (requirements-run.txt): `runserver` then serves the ASGI application,
    # HTTP and WebSockets. Production uses gunicorn + uvicorn, without Twisted. The devserver
    # app comes first so its runserver (daphne's, exiting when it cannot listen) wins.
    INSTALLED_APPS[:0] = ["messaging_app.devserver", "daphne"]

ROOT_URLCONF = "messaging_app.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # The landing page and the rendered docs (messaging_app/pages.py).
        "DIRS": [BASE_DIR / "messaging_app" / "templates"],
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

WSGI_APPLICATION = "messaging_app.wsgi.application"
ASGI_APPLICATION = "messaging_app.asgi.application"

# --- Database -----------------------------------------------------------------
# DATABASE_URL: sqlite:///path, mysql://user:pass@host:3306/name (MySQL/MariaDB),
# postgres://user:pass@host:5432/name. Default: embedded SQLite next to manage.py.


def _database(url: str) -> dict:
    config = env.db_url_config(url)
    if config["ENGINE"] == "django.db.backends.mysql":
        # utf8mb4 so message bodies may carry any Unicode character (emoji included).
        config.setdefault("OPTIONS", {}).setdefault("charset", "utf8mb4")
        config.setdefault("TEST", {}).update({"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"})
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # Writers take the lock when their transaction starts and wait for each other
        # (up to 20 s) instead of failing with "database is locked" mid-transaction.
        config.setdefault("OPTIONS", {}).update({"transaction_mode": "IMMEDIATE", "timeout": 20})
    else:
        # A database that takes connections but does not answer (frozen, partitioned) fails a new
        # connection after 5 s, answered with 503, instead of holding the request (and /readyz)
        # forever. `?connect_timeout=` in DATABASE_URL overrides it.
        config.setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
    # MySQL/MariaDB and PostgreSQL through Django's backends with small changes (messaging_app/db): a
    # connection that answered less than DB_HEALTH_CHECK_BYPASS seconds ago is not pinged again, and
    # MySQL's date-times are parsed (and made aware) in C by the driver.
    config["ENGINE"] = {
        "django.db.backends.mysql": "messaging_app.db.mysql",
        "django.db.backends.postgresql": "messaging_app.db.postgresql",
    }.get(config["ENGINE"], config["ENGINE"])
    # Persistent: HTTP requests run on a fixed pool of threads per process (messaging_app/wsgi_pool.py),
    # each keeping its connection for as long as it works (unset: no age limit); N renews it after N
    # seconds; 0 opens one per request.
    config["CONN_MAX_AGE"] = int(_conn_max_age) if _conn_max_age.strip() else None
    # Reused connections are checked before each request (unless they answered moments ago), so
    # service resumes by itself after a database restart.
    config["CONN_HEALTH_CHECKS"] = True
    return config


_conn_max_age = env.str("DJANGO_CONN_MAX_AGE", default="")
DATABASES = {
    # An empty DATABASE_URL counts as unset.
    "default": _database(env.str("DATABASE_URL", default="") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
# Read replicas (messaging_app/db/replicas.py): DATABASE_REPLICA_URLS, comma-separated URLs of the
# same kind as DATABASE_URL, become the aliases replica1, replica2...; none: every query on the primary.
DATABASE_REPLICAS = []
for _number, _url in enumerate(env.list("DATABASE_REPLICA_URLS", default=[]), start=1):
    DATABASE_REPLICAS.append(f"replica{_number}")
    # Tests run them on the primary's test database (nothing to replicate there).
    DATABASES[f"replica{_number}"] = {**_database(_url), "TEST": {"MIRROR": "default"}}
# Seconds a client's reads stay on the primary after it wrote (shared through the cache).
READ_YOUR_WRITES_SECONDS = env.float("READ_YOUR_WRITES_SECONDS", default=5.0)
# A replica further behind than this takes no reads until it catches up.
REPLICA_MAX_LAG_SECONDS = env.float("REPLICA_MAX_LAG_SECONDS", default=2.0)
# Seconds between two checks of each replica (lag, or unreachable), per process.
REPLICA_CHECK_SECONDS = env.float("REPLICA_CHECK_SECONDS", default=2.0)
DATABASE_ROUTERS = ["messaging_app.db.replicas.ReplicaRouter"] if DATABASE_REPLICAS else []

# Redis (docs/redis.md): live delivery between processes, socket slots and presence, the shared
# cache, the default Celery broker. REDIS_URL (e.g. redis://127.0.0.1:6379/0): one server. For
# failover, REDIS_SENTINELS="host:port,host:port,host:port" (Redis Sentinel) watching the primary
# named REDIS_SENTINEL_MASTER: the clients ask the sentinels where the primary is, and REDIS_URL
# only gives the database number, password and TLS (rediss://); unset, redis://<master>/0.
# REDIS_SENTINEL_PASSWORD: the sentinels' own password, if they have one. Neither: no Redis, one
# process (events, slots and counters in memory), fine for `make run`.
try:
    REDIS_SENTINELS = parse_sentinels(env.str("REDIS_SENTINELS", default=""))
except ValueError as exc:
    raise ImproperlyConfigured(str(exc)) from None
REDIS_SENTINEL_MASTER = env.str("REDIS_SENTINEL_MASTER", default="messaging")
REDIS_SENTINEL_PASSWORD = env.str("REDIS_SENTINEL_PASSWORD", default="")
REDIS_URL = env.str("REDIS_URL", default="") or (f"redis://{REDIS_SENTINEL_MASTER}/0" if REDIS_SENTINELS else "")

# Shared cache: throttling and password-guess counters. Redis when configured (one connection
# pool per process: messaging_app/cache.py), else per process.
CACHES = {
    "default": (
        {"BACKEND": "messaging_app.cache.SharedPoolRedisCache", "LOCATION": REDIS_URL}
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

# Largest request body accepted (bytes); larger requests get 413 before any parsing.
MAX_REQUEST_BODY_BYTES = env.int("MAX_REQUEST_BODY_BYTES", default=262144)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES
# Deepest nesting of JSON arrays/objects in a body or WebSocket frame (ours nest 4 at most);
# deeper is a 400 parse_error / a bad frame, not a RecursionError (messaging_app/parsers.py).
MAX_JSON_DEPTH = 32
# Largest WebSocket message a client may send (ours are a few hundred bytes); larger closes the
# socket with 1009. daphne (make run) reads the DAPHNE_ settings, uvicorn messaging_app/server.py.
WS_MAX_MESSAGE_BYTES = 65536
DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE = DAPHNE_WEBSOCKET_MAX_FRAME_SIZE = WS_MAX_MESSAGE_BYTES

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Users and authentication ------------------------------------------------
AUTH_USER_MODEL = "chats.User"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Every password check (HTTP Basic, /api/token/, /api-auth/login/, /admin/login/) is counted
# against the password_ip and password_account limits before the password is hashed.
AUTHENTICATION_BACKENDS = ["chats.password_limits.PasswordLimitedModelBackend"]

# The browsable API's session login (rest_framework.urls); browsers opening an API page
# without credentials are sent there.
LOGIN_URL = "/api-auth/login/"
LOGIN_REDIRECT_URL = "/api/"

# --- Internationalisation and static files ------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# `collectstatic` gathers admin, browsable API and Swagger/Redoc assets here; WhiteNoise
# serves them (compressed, with far-future cache headers) from the app itself.
STATIC_ROOT = Path(env.str("DJANGO_STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# --- Attachments (attachments/, docs/attachments.md) ------------------------------------
# Where uploads are kept: "local" (default: files under DJANGO_MEDIA_ROOT, nothing to set up)
# or "s3" (any S3-compatible object store, through django-storages; a private bucket). Either
# way downloads go through the API, which checks access on every request and streams the file:
# nothing is ever served from MEDIA_ROOT or the bucket directly.
MEDIA_ROOT = Path(env.str("DJANGO_MEDIA_ROOT", default=str(BASE_DIR / "media")))
# An empty ATTACHMENTS_STORAGE counts as unset.
ATTACHMENTS_STORAGE = env.str("ATTACHMENTS_STORAGE", default="").strip().lower() or "local"
if ATTACHMENTS_STORAGE == "local":
    STORAGES["attachments"] = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(MEDIA_ROOT / "attachments"), "base_url": None},
    }
elif ATTACHMENTS_STORAGE == "s3":
    if not env.str("AWS_STORAGE_BUCKET_NAME", default=""):
        raise ImproperlyConfigured("ATTACHMENTS_STORAGE=s3 needs AWS_STORAGE_BUCKET_NAME (and credentials).")
    STORAGES["attachments"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env.str("AWS_STORAGE_BUCKET_NAME"),
            # Empty: AWS itself; else e.g. http://minio:9000 or https://<account>.r2.cloudflarestorage.com.
            "endpoint_url": env.str("AWS_S3_ENDPOINT_URL", default="") or None,
            "region_name": env.str("AWS_S3_REGION_NAME", default="") or None,
            # Unset: boto3's own chain (instance role, IRSA, ~/.aws).
            "access_key": env.str("AWS_ACCESS_KEY_ID", default="") or None,
            "secret_key": env.str("AWS_SECRET_ACCESS_KEY", default="") or None,
            # Keys under this prefix of the bucket.
            "location": env.str("AWS_LOCATION", default="attachments"),
            # Private objects: no ACL sent (the bucket's own policy, private by default) and
            # signed requests only; the API streams them to authorised users.
            "default_acl": None,
            "querystring_auth": True,
            "file_overwrite": False,
            "addressing_style": env.str("AWS_S3_ADDRESSING_STYLE", default="") or None,
        },
    }
else:
    raise ImproperlyConfigured(f"ATTACHMENTS_STORAGE must be 'local' or 's3', not {ATTACHMENTS_STORAGE!r}.")
# Largest file (bytes) one upload may carry: 25 MiB. Larger uploads are answered 413 from their
# Content-Length, before anything is read, or as soon as the bytes read pass it.
ATTACHMENTS_MAX_BYTES = env.int("ATTACHMENTS_MAX_BYTES", default=25 * 1024 * 1024)
# Content types accepted (comma-separated; `image/*`-style wildcards allowed). Images are
# recognised by their content, not by the name or type the client gives.
ATTACHMENTS_ALLOWED_TYPES = env.list(
    "ATTACHMENTS_ALLOWED_TYPES",
    default=[
        "image/png", "image/jpeg", "image/gif", "image/webp", "image/svg+xml",
        "application/pdf", "text/plain", "text/csv", "application/zip", "application/json",
        "audio/mpeg", "audio/ogg", "video/mp4", "video/webm",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "application/msword", "application/vnd.ms-excel", "application/octet-stream",
    ],
)
# Bytes of attachments one user may keep stored (uploads not yet sent count too): 1 GiB.
ATTACHMENTS_USER_QUOTA_BYTES = env.int("ATTACHMENTS_USER_QUOTA_BYTES", default=1024 * 1024 * 1024)
# Uploads never attached to a message are deleted after this many hours (manage.py prune_attachments).
ATTACHMENTS_UNATTACHED_TTL_HOURS = env.int("ATTACHMENTS_UNATTACHED_TTL_HOURS", default=24)
# Largest image (width x height) decoded for a thumbnail; larger ones are refused with 400
# (a small file can decode to gigabytes: a "decompression bomb").
ATTACHMENTS_MAX_IMAGE_PIXELS = env.int("ATTACHMENTS_MAX_IMAGE_PIXELS", default=50_000_000)
# At most this many attachments on one message.
ATTACHMENTS_MAX_PER_MESSAGE = 10

# --- Production security (on by default whenever DEBUG is off) ------------------------
# Behind a TLS-terminating proxy or ingress that sets X-Forwarded-Proto. Each can be
# relaxed explicitly, e.g. DJANGO_SECURE_SSL_REDIRECT=0 for plain-HTTP smoke tests.
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("DJANGO_SECURE_PROXY_SSL_HEADER", default=not DEBUG) else None
)
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=not DEBUG)
SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# --- Django REST Framework -----------------------------------------------------
# Rate limits per scope (`N/sec|min|hour|day`); THROTTLE_<SCOPE> sets one in any mode. Production
# (DEBUG off) applies the real limits. A development server (DEBUG on: `make run`, scripts/live_server.sh)
# keeps throttling on with limits nobody trying the API meets, even running the Postman collection
# back to back (10 logins and 4 registrations a run). docs/api.md ("Limits") lists both.
# password_ip / password_account: failed password checks, whatever the route (chats/password_limits.py).
PRODUCTION_THROTTLE_RATES = {
    "anon": "120/min", "user": "1200/min", "login": "20/min", "register": "30/hour", "send": "300/min",
    "password_ip": "30/hour", "password_account": "10/hour",
}
DEVELOPMENT_THROTTLE_RATES = {
    "anon": "1000/min", "user": "10000/min", "login": "1000/min", "register": "1000/min", "send": "3000/min",
    "password_ip": "100/min", "password_account": "100/min",
}
_throttle_defaults = DEVELOPMENT_THROTTLE_RATES if DEBUG else PRODUCTION_THROTTLE_RATES

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # SimpleJWT's, with a cheaper user lookup.
        "chats.tokens.JWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.BasicAuthentication",
        # Personal access tokens (bots/): `Authorization: Token <token>`, within the token's scopes.
        "bots.authentication.PersonalAccessTokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated", "bots.permissions.TokenScopes"],
    # DRF's two, JSON encoded in C (messaging_app/renderers.py: the same bytes).
    "DEFAULT_RENDERER_CLASSES": [
        "messaging_app.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PARSER_CLASSES": [
        "messaging_app.parsers.BoundedJSONParser",
        # The browsable API posts HTML forms.
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "chats.filters.BoundedSearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_THROTTLE_CLASSES": [
        # DRF's scopes, counted in fixed windows (one cache increment per request).
        "chats.throttles.AnonRateThrottle",
        "chats.throttles.UserRateThrottle",
    ],
    # Requests per client; counters live in the default cache (Redis when REDIS_URL is set,
    # so they hold across processes). Login and registration count per IP address.
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("THROTTLE_ANON", default=_throttle_defaults["anon"]),
        "user": env.str("THROTTLE_USER", default=_throttle_defaults["user"]),
        "login": env.str("THROTTLE_LOGIN", default=_throttle_defaults["login"]),
        "register": env.str("THROTTLE_REGISTER", default=_throttle_defaults["register"]),
        "send": env.str("THROTTLE_SEND", default=_throttle_defaults["send"]),
        "password_ip": env.str("THROTTLE_PASSWORD_IP", default=_throttle_defaults["password_ip"]),
        "password_account": env.str("THROTTLE_PASSWORD_ACCOUNT", default=_throttle_defaults["password_account"]),
    },
    # Client addresses come from X-Forwarded-For only through this many trusted proxies.
    "NUM_PROXIES": env.int("DJANGO_NUM_PROXIES", default=0),
    "DEFAULT_PAGINATION_CLASS": "chats.pagination.StandardPagination",
    "PAGE_SIZE": 20,
    "DEFAULT_SCHEMA_CLASS": "chats.schema.AutoSchema",
    "EXCEPTION_HANDLER": "drf_standardized_errors.handler.exception_handler",
}

DRF_STANDARDIZED_ERRORS = {
    "EXCEPTION_HANDLER_CLASS": "messaging_app.errors.ApiExceptionHandler",
    # The schema documents every error status the API answers with (chats/schema.py): 413 and
    # 503 come from errors.py and limits.py, 401 carries SimpleJWT's token_not_valid too.
    "ALLOWED_ERROR_STATUS_CODES": ["400", "401", "403", "404", "405", "406", "413", "415", "429", "500", "503"],
    "ERROR_SCHEMAS": {
        "401": "chats.schema.ErrorResponse401Serializer",
        "413": "chats.schema.ErrorResponse413Serializer",
        "503": "chats.schema.ErrorResponse503Serializer",
    },
}

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env.int("JWT_ACCESS_MINUTES", default=15)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env.int("JWT_REFRESH_DAYS", default=7)),
    "USER_ID_FIELD": "user_id",
    "USER_ID_CLAIM": "user_id",
    "UPDATE_LAST_LOGIN": False,
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "ALGORITHM": "HS256",  # tokens signed any other way (or "none") are refused
    # Logins carry a login_id claim through every rotation, so logging out closes that login's sockets.
    "TOKEN_OBTAIN_SERIALIZER": "chats.tokens.TokenObtainPairSerializer",
    "TOKEN_BLACKLIST_SERIALIZER": "chats.tokens.TokenBlacklistSerializer",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "messaging_app API",
    "DESCRIPTION": (
        "Register, find people, open one-to-one and group conversations and exchange "
        "messages. Authenticate with a JWT (`POST /api/token/`, then "
        "`Authorization: Bearer <access>`), HTTP Basic (email:password) or the "
        "browser session. Every error has one JSON shape: "
        '`{"type": "validation_error"|"client_error"|"server_error", '
        '"errors": [{"code", "detail", "attr"}]}`. '
        "Live events (new, edited and deleted messages, membership changes, read state, typing) "
        "are pushed over the WebSocket endpoint `/ws/`; its protocol is described in "
        "[the WebSocket guide](/docs/websocket/) (docs/websocket.md in the repository)."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # The Authorize dialog keeps what you enter across reloads (in the browser's localStorage);
    # no call to validator.swagger.io (its badge would send the schema's URL there).
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "persistAuthorization": True, "validatorUrl": None},
    # The system's fonts: the docs load nothing from another host (messaging_app/api_docs.py).
    "REDOC_UI_SETTINGS": {
        "theme": {
            "typography": {
                "fontFamily": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
                "headings": {"fontFamily": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"},
            }
        }
    },
    # The served schema names the server it was requested from (chats.schema.postprocess_security_and_servers);
    # a file written by `make schema` names the development server.
    "SERVERS": [{"url": "http://127.0.0.1:8000", "description": "`make run` on this machine."}],
    "ENUM_NAME_OVERRIDES": {
        "ValidationErrorEnum": "drf_standardized_errors.openapi_serializers.ValidationErrorEnum.choices",
        "ClientErrorEnum": "drf_standardized_errors.openapi_serializers.ClientErrorEnum.choices",
        "ServerErrorEnum": "drf_standardized_errors.openapi_serializers.ServerErrorEnum.choices",
        "ErrorCode401Enum": "chats.schema.ErrorCode401Enum.choices",
        "UserRoleEnum": "chats.models.USER_ROLES",
        "ParticipantRoleEnum": "chats.models.PARTICIPANT_ROLES",
        "AssignableRoleEnum": "chats.serializers.ASSIGNABLE_ROLES",
        "TokenObtainErrorCode401Enum": "chats.schema.TokenObtainErrorCode401Enum.choices",
        "TokenRefreshErrorCode401Enum": "chats.schema.TokenRefreshErrorCode401Enum.choices",
        "TokenBlacklistErrorCode401Enum": "chats.schema.TokenBlacklistErrorCode401Enum.choices",
        "ErrorCode403Enum": "drf_standardized_errors.openapi_serializers.ErrorCode403Enum.choices",
        "ErrorCode404Enum": "drf_standardized_errors.openapi_serializers.ErrorCode404Enum.choices",
        "ErrorCode405Enum": "drf_standardized_errors.openapi_serializers.ErrorCode405Enum.choices",
        "ErrorCode406Enum": "drf_standardized_errors.openapi_serializers.ErrorCode406Enum.choices",
        "ErrorCode410Enum": "chats.schema.ErrorCode410Enum.choices",
        "ErrorCode415Enum": "drf_standardized_errors.openapi_serializers.ErrorCode415Enum.choices",
        "ErrorCode429Enum": "drf_standardized_errors.openapi_serializers.ErrorCode429Enum.choices",
        "ErrorCode500Enum": "drf_standardized_errors.openapi_serializers.ErrorCode500Enum.choices",
        "ErrorCode413Enum": "chats.schema.ErrorCode413Enum.choices",
        "ErrorCode503Enum": "chats.schema.ErrorCode503Enum.choices",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_standardized_errors.openapi_hooks.postprocess_schema_enums",
        # After it: error attrs of list items ("participants.0") as patterns.
        "chats.schema.postprocess_indexed_attrs",
        # Bearer first in Swagger UI's Authorize dialog; `servers` from the request.
        "chats.schema.postprocess_security_and_servers",
    ],
}

# --- Real-time delivery (WebSockets) ------------------------------------------------
# Redis (REDIS_URL or REDIS_SENTINELS, above) shares events across processes and pods: each
# write publishes once on LIVE_CHANNEL, and every process hands that to its own sockets
# (chats/delivery.py). Without it, events stay inside one process (fine for `make run`).
# The Redis pub/sub channel of live delivery: deployments sharing one Redis keep their own.
LIVE_CHANNEL = env.str("LIVE_CHANNEL", default="messaging:live")
# A socket that stops reading is closed with 4408 (its client resumes from its last event_id):
# when a frame waits WS_SEND_TIMEOUT seconds to be taken, or WS_MAX_PENDING_EVENTS events wait.
WS_SEND_TIMEOUT = env.float("WS_SEND_TIMEOUT", default=30.0)
WS_MAX_PENDING_EVENTS = env.int("WS_MAX_PENDING_EVENTS", default=1000)
# Seconds a user must have no socket open before they are announced offline (chats/presence.py):
# a reload or a short network drop announces nothing.
PRESENCE_OFFLINE_GRACE = env.float("PRESENCE_OFFLINE_GRACE", default=10.0)
# People in one conversation, the creator included (issue 14: 1,000-member groups). Responses stay
# bounded whatever it is: a conversation lists at most 100 participants inline with its
# `participant_count`; GET /api/conversations/{id}/participants/ pages through all (docs/groups.md).
CHATS_MAX_PARTICIPANTS = env.int("CHATS_MAX_PARTICIPANTS", default=1000)
if CHATS_MAX_PARTICIPANTS < 2:
    raise ImproperlyConfigured("CHATS_MAX_PARTICIPANTS must be at least 2.")
# Days each user's events are kept for replay (GET /api/events/?since=, the socket's resume):
# older ones are deleted by `manage.py prune_events`, and a cursor before them is answered 410.
EVENTS_RETENTION_DAYS = env.int("EVENTS_RETENTION_DAYS", default=7)
# A change whose events go to more people than this queues them in the event outbox, numbered into
# the streams and delivered just after its commit, off the request (chats/outbox.py): a send's
# time no longer grows with its conversation. Fewer: numbered in the change's transaction. 0: all queued.
EVENTS_INLINE_RECIPIENTS = env.int("EVENTS_INLINE_RECIPIENTS", default=50)
# Seconds after which an outbox row still queued (its process stopped before draining it) is
# drained by the sweep each server process runs this often (`manage.py drain_events` does it once).
EVENTS_OUTBOX_SWEEP_SECONDS = env.float("EVENTS_OUTBOX_SWEEP_SECONDS", default=5.0)
if EVENTS_INLINE_RECIPIENTS < 0 or EVENTS_OUTBOX_SWEEP_SECONDS <= 0:
    raise ImproperlyConfigured("EVENTS_INLINE_RECIPIENTS must be 0 or more, EVENTS_OUTBOX_SWEEP_SECONDS more than 0.")
# The outbox keeps each conversation's order by reading the latest committed rows: READ COMMITTED,
# Django's level on MySQL/MariaDB (a transaction-wide snapshot could miss a row queued just before).
if str(DATABASES["default"].get("OPTIONS", {}).get("isolation_level", "read committed")).lower() not in (
    "read committed", "1", "isolationlevel.read_committed"
):
    raise ImproperlyConfigured("The database's isolation level must stay READ COMMITTED (chats/outbox.py).")
# Seconds a socket has to authenticate before it is closed with 4401.
WS_AUTH_TIMEOUT = env.float("WS_AUTH_TIMEOUT", default=5.0)
# Authenticated sockets one user may hold at once, across every process (counted in Redis
# when REDIS_URL is set); one more is closed with 4409 (chats/socket_slots.py).
WS_MAX_SOCKETS_PER_USER = env.int("WS_MAX_SOCKETS_PER_USER", default=20)
if WS_MAX_SOCKETS_PER_USER < 1:
    raise ImproperlyConfigured("WS_MAX_SOCKETS_PER_USER must be at least 1.")

# --- Background worker (Celery) and outgoing webhooks (notifications/, docs/webhooks.md) ----
# CELERY_BROKER_URL: redis://127.0.0.1:6379/1 or amqp://guest:guest@127.0.0.1:5672// (RabbitMQ);
# unset, REDIS_URL is the broker. With neither (`make run`), tasks run in-process right after the
# commit that scheduled them (task_always_eager): no worker to start.
# With Sentinel, the default broker is the same primary through kombu's sentinel:// transport.
_REDIS_BROKER, _REDIS_BROKER_OPTIONS = RedisConfig(
    REDIS_URL, tuple(REDIS_SENTINELS), REDIS_SENTINEL_MASTER, REDIS_SENTINEL_PASSWORD).celery_broker()
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="") or _REDIS_BROKER
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
# Results are not kept (tasks write what they did to the database); tests may set a backend.
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default="") or None
CELERY_TASK_IGNORE_RESULT = CELERY_RESULT_BACKEND is None
# A task is acknowledged when it has finished, not when it is taken: a worker killed mid-task
# (or a pod stopped) leaves it to be delivered again. One task taken at a time per process, so
# a stopping worker holds nothing it has not started.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_QUEUE", default="messaging")
# Redis redelivers a task taken by a worker that died (never acknowledged) after this many seconds.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600),
    **(_REDIS_BROKER_OPTIONS if CELERY_BROKER_URL == _REDIS_BROKER else {}),
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# Where webhooks may deliver. Production: public addresses over https only (every address the
# host resolves to is checked at send time). Development (DEBUG) and tests may allow more.
WEBHOOKS_ALLOW_PRIVATE = env.bool("WEBHOOKS_ALLOW_PRIVATE", default=DEBUG)
WEBHOOKS_ALLOW_HTTP = env.bool("WEBHOOKS_ALLOW_HTTP", default=DEBUG)
# Seconds to connect and to answer; a slower receiver counts as a failed attempt.
WEBHOOKS_TIMEOUT = env.float("WEBHOOKS_TIMEOUT", default=10.0)
# Retries: WEBHOOKS_RETRY_BASE_SECONDS * 2**(failures-1), at most WEBHOOKS_RETRY_MAX_SECONDS apart.
WEBHOOKS_RETRY_BASE_SECONDS = env.float("WEBHOOKS_RETRY_BASE_SECONDS", default=10.0)
WEBHOOKS_RETRY_MAX_SECONDS = env.float("WEBHOOKS_RETRY_MAX_SECONDS", default=3600.0)
# A webhook is disabled after this many failed attempts in a row (30: about a day of retries).
WEBHOOKS_DISABLE_AFTER_FAILURES = env.int("WEBHOOKS_DISABLE_AFTER_FAILURES", default=30)
# A worker delivering a webhook's events holds it this many seconds (renewed per event): another
# worker takes over when one dies mid-delivery.
WEBHOOKS_LEASE_SECONDS = env.float("WEBHOOKS_LEASE_SECONDS", default=60.0)
# Personal access tokens one user may hold.
ACCESS_TOKENS_MAX_PER_USER = env.int("ACCESS_TOKENS_MAX_PER_USER", default=20)
# Webhooks one user may register.
WEBHOOKS_MAX_PER_USER = env.int("WEBHOOKS_MAX_PER_USER", default=10)

# --- Web Push (notifications/push.py, docs/notifications.md) ----------------------------------
# The VAPID key pair that signs every push: the private key as base64url (DER or raw 32 bytes), e.g.
# from `vapid --gen` (py-vapid) then `vapid --applicationServerKey`; empty: push is off (nothing
# scheduled, registrations still accepted). The public key is derived from it.
PUSH_VAPID_PRIVATE_KEY = env.str("PUSH_VAPID_PRIVATE_KEY", default="")
# Who runs this server, for push services to contact (a mailto: or https: URL).
PUSH_VAPID_SUBJECT = env.str("PUSH_VAPID_SUBJECT", default="mailto:admin@example.com")
# Messages to one person in one conversation within this many seconds make one push.
PUSH_BATCH_SECONDS = env.float("PUSH_BATCH_SECONDS", default=10.0)
# How long a push service keeps a push for an offline browser (the TTL header), seconds.
PUSH_TTL_SECONDS = env.int("PUSH_TTL_SECONDS", default=24 * 3600)
# Browser subscriptions one user may register.
PUSH_MAX_SUBSCRIPTIONS_PER_USER = env.int("PUSH_MAX_SUBSCRIPTIONS_PER_USER", default=20)
# --- Email digests (notifications/digests.py) ----------------------------------------------------
# Django's email backend: SMTP at EMAIL_HOST:EMAIL_PORT (EMAIL_HOST_USER / EMAIL_HOST_PASSWORD,
# EMAIL_USE_TLS); "django.core.mail.backends.console.EmailBackend" prints them instead.
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
EMAIL_TIMEOUT = env.float("EMAIL_TIMEOUT", default=10.0)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="messaging <noreply@example.com>")
# The address people reach this server at, for links in emails (the unsubscribe link).
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="http://127.0.0.1:8000")
# How often the worker's beat looks for users due a digest (`celery -A messaging_app beat`, `make beat`).
EMAIL_DIGEST_INTERVAL_SECONDS = env.float("EMAIL_DIGEST_INTERVAL_SECONDS", default=300.0)
CELERY_BEAT_SCHEDULE = {
    "email-digests": {"task": "notifications.email_digests", "schedule": EMAIL_DIGEST_INTERVAL_SECONDS},
}

# Where pushes may go: like webhooks, public https endpoints only in production.
PUSH_ALLOW_PRIVATE = env.bool("PUSH_ALLOW_PRIVATE", default=DEBUG)
PUSH_ALLOW_HTTP = env.bool("PUSH_ALLOW_HTTP", default=DEBUG)

# --- CORS ----------------------------------------------------------------------
# Comma-separated origins allowed to call the API from a browser, e.g.
# "https://app.example.com,http://localhost:3000". Empty: no cross-origin access.
CORS_ALLOWED_ORIGINS = env.list("DJANGO_CORS_ALLOWED_ORIGINS", default=[])

# --- Request ids and logging ----------------------------------------------------------
# X-Request-ID: taken from the request when it is a canonical UUID (lowercase, hyphenated),
# else made; returned in the response and written on every log line of that request
# (messaging_app.request_log).
# DJANGO_LOG_FORMAT: "plain" (default: one readable line per record) or "json" (one JSON object
# per line, for log shippers; docs/observability.md).
LOG_FORMAT = env.str("DJANGO_LOG_FORMAT", default="plain").strip().lower() or "plain"
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"DJANGO_LOG_FORMAT must be 'plain' or 'json', not {LOG_FORMAT!r}.")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "messaging_app.request_log.RequestIdFilter"},
    },
    "formatters": {
        # Control characters from requests are escaped: one record, one line (request_log.py).
        "plain": {
            "class": "messaging_app.request_log.SafeLineFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s",
        },
        # One JSON object per line (timestamp, level, logger, message, request_id...) for log shippers.
        "json": {"()": "messaging_app.request_log.JsonLineFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": LOG_FORMAT,
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": env.str("DJANGO_LOG_LEVEL", default="INFO")},
    # One line per request: our request line (messaging_app.request_log) replaces the servers'
    # access logs, which carry no request id.
    "loggers": {
        # Django's default config gives "django" a console handler of its own besides the root's:
        # every Django record ("Watching for file changes", daphne's access lines) came out twice.
        "django": {"handlers": [], "level": "INFO"},
        # "Not Found: /x" for each 4xx repeats the request line; a 5xx still logs its traceback here.
        "django.request": {"level": "ERROR"},
        "uvicorn.access": {"level": "WARNING"},
        # daphne's access log under `runserver` (its 5xx lines too) and its start-up chatter.
        "django.channels.server": {"level": "CRITICAL"},
        "daphne.server": {"level": "WARNING"},
    },
}

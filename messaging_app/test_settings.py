"""Settings for the test suite: the real settings with a fixed, test-only secret."""
import os
import tempfile

# Production-like settings whatever the shell says (the Makefile exports DJANGO_DEBUG=1 for
# `make run`): the tests check what a deployment gets.
os.environ["DJANGO_DEBUG"] = "0"
os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-secret-key-not-used-anywhere-else-0123456789-abcdefghijklmnop")

from messaging_app.settings import *  # noqa: E402,F401,F403

# Hashing cost is irrelevant to what the tests check and dominates their run time.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, not shared-cache memory: the concurrency tests use real threads, and only
    # a file database gives each its own connection with SQLite's normal locking.
    # One file per run, so parallel runs on one machine never share it.
    DATABASES["default"]["TEST"] = {  # noqa: F405
        "NAME": os.path.join(tempfile.gettempdir(), f"messaging_app-test-{os.getpid()}.sqlite3")
    }

# Tests render admin and docs pages without running collectstatic first.
STORAGES = {
    **STORAGES,  # noqa: F405
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Uploaded attachments go to a directory of this run (made by the first upload), removed at the
# end of the session (chats/tests/conftest.py).
MEDIA_ROOT = os.path.join(tempfile.gettempdir(), f"messaging_app-test-media-{os.getpid()}")
STORAGES["attachments"] = {  # noqa: F405
    "BACKEND": "django.core.files.storage.FileSystemStorage",
    "OPTIONS": {"location": os.path.join(MEDIA_ROOT, "attachments"), "base_url": None},
}
# The test client speaks plain HTTP; test_production.py turns the redirect back on.
SECURE_SSL_REDIRECT = False

# Generous limits: the suite sends bursts from one address; test_abuse_limits.py lowers them.
REST_FRAMEWORK = {
    **REST_FRAMEWORK,  # noqa: F405
    "DEFAULT_THROTTLE_RATES": {scope: "100000/min" for scope in REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]},  # noqa: F405
}

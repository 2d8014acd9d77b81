#!/bin/sh
# Entrypoint of the production image. Optionally waits for the database and runs the
# migrations, then replaces itself with the command (gunicorn by default), so the server
# is PID 1 and receives SIGTERM directly.
#
#   DB_WAIT_TIMEOUT=60   wait up to 60 s for the database to accept connections (default 0: no wait)
#   RUN_MIGRATIONS=1     run `manage.py migrate` before the command (default 0). With several
#                        replicas prefer one migration job (docker-compose.yml: the `migrate` service).
set -eu

if [ "${DB_WAIT_TIMEOUT:-0}" != 0 ]; then
    python - <<'PY'
import os
import sys
import time

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "messaging_app.settings")
django.setup()

from django.db import connection  # noqa: E402
from django.db.utils import OperationalError  # noqa: E402

deadline = time.monotonic() + float(os.environ["DB_WAIT_TIMEOUT"])
while True:
    try:
        connection.ensure_connection()
        break
    except OperationalError as exc:
        connection.close()
        if time.monotonic() >= deadline:
            sys.exit(f"entrypoint: database not reachable after {os.environ['DB_WAIT_TIMEOUT']} s: {exc}")
        print(f"entrypoint: waiting for the database: {exc}", file=sys.stderr, flush=True)
        time.sleep(2)
connection.close()
PY
fi

if [ "${RUN_MIGRATIONS:-0}" = 1 ]; then
    python manage.py migrate --no-input
fi

exec "$@"

# Production image: gunicorn managing uvicorn workers serve the ASGI application
# (REST API over HTTP and live events over WebSockets) on port 8000.
#
#   docker build -t messaging-app .
#   docker run --rm -p 8000:8000 -e DJANGO_SECRET_KEY=... -e DJANGO_ALLOWED_HOSTS=localhost \
#     -e DATABASE_URL=mysql://user:pass@db-host:3306/messaging messaging-app
#
# Every setting comes from the environment at run time (see .env.example); nothing secret
# is baked in. docker-compose.yml runs it with MySQL and Redis.

# --- builder: compile wheels (mysqlclient builds from source) into a virtualenv -------
FROM python:3.11-slim AS builder

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev pkg-config default-libmysqlclient-dev \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# Optional, for builds behind a package mirror: --build-arg PIP_INDEX_URL=... (pip reads
# them from the environment; unset means PyPI). Never put credentials here: build
# arguments are visible in the image history.
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
RUN python -m venv /opt/venv
# constraints.txt: every package pinned, dependencies of dependencies included (make lock).
COPY requirements.txt constraints.txt /tmp/
RUN /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt -c /tmp/constraints.txt

# --- runtime: the virtualenv, the client library and the source; no compilers ---------
FROM python:3.11-slim

LABEL org.opencontainers.image.title="messaging_app" \
      org.opencontainers.image.description="Messaging REST API and WebSockets (Django, gunicorn + uvicorn workers)"

# libmariadb3: the MySQL/MariaDB client library mysqlclient links against.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libmariadb3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /home/app --create-home --shell /usr/sbin/nologin app

# XDG_RUNTIME_DIR=/tmp: anything that wants a runtime directory finds a writable one when the
# root filesystem is read-only (Kubernetes readOnlyRootFilesystem with an emptyDir on /tmp).
# gunicorn's control socket is off (gunicorn.conf.py).
ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    XDG_RUNTIME_DIR=/tmp \
    PORT=8000

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
# Owned by root and read-only for the app user: the process cannot rewrite its own code.
# It needs no writable path but /tmp, and, for attachments kept locally (ATTACHMENTS_STORAGE=local),
# /var/lib/messaging-app/media (made below, owned by the app user; compose mounts a volume there).
COPY . .

# Static files (admin, browsable API, Swagger UI/Redoc) are gathered at build time and
# served by WhiteNoise. The secret below exists only for this command: settings refuse
# to load without one when DEBUG is off; it is not set in the image's environment.
RUN DJANGO_DEBUG=0 DJANGO_SECRET_KEY=build-only-collectstatic-not-a-runtime-secret \
    python manage.py collectstatic --no-input -v 0 \
    && python -m compileall -q messaging_app chats attachments \
    && mkdir -p /var/lib/messaging-app/media && chown 10001:10001 /var/lib/messaging-app/media

# Numeric, so orchestrators can verify runAsNonRoot.
USER 10001:10001

EXPOSE 8000

# Liveness of the process (no database access); /readyz also checks MySQL and Redis.
# The server must listen on $PORT (the default bind of gunicorn.conf.py).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"]

# The entrypoint can wait for the database and run migrations first (DB_WAIT_TIMEOUT,
# RUN_MIGRATIONS=1), then runs the command; gunicorn reads gunicorn.conf.py from /app.
ENTRYPOINT ["/bin/sh", "/app/docker/entrypoint.sh"]
CMD ["gunicorn", "messaging_app.asgi:application"]

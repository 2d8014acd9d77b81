#!/usr/bin/env bash
# `make serve`: the production setup on this machine (DEBUG off, collectstatic, gunicorn managing
# uvicorn workers), over plain HTTP. It never combines a published key with a reachable port:
#
#   DJANGO_SECRET_KEY  yours if set; otherwise a key made for this machine on first use and kept
#                      outside the repository, in ${XDG_CONFIG_HOME:-~/.config}/messaging_app/secret_key
#                      (mode 0600). Tokens signed on one machine are worthless on any other.
#   GUNICORN_BIND      default 127.0.0.1:$PORT (this machine only). Another interface, e.g.
#                      GUNICORN_BIND=0.0.0.0:8000, is refused when the key is written anywhere in
#                      this repository (an example or default anyone can read).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PY=${PY:-.venv/bin/python}
PORT=${PORT:-8000}
export GUNICORN_BIND=${GUNICORN_BIND:-127.0.0.1:$PORT}

fail() { echo "serve: $*" >&2; exit 2; }

if [ -z "${DJANGO_SECRET_KEY:-}" ]; then
    key_file="${XDG_CONFIG_HOME:-$HOME/.config}/messaging_app/secret_key"
    key_dir=$(dirname "$key_file")
    mkdir -p "$key_dir"
    case "$(cd "$key_dir" && pwd -P)/" in
        "$(pwd -P)"/*) fail "$key_file is inside the repository; keep the key outside it (XDG_CONFIG_HOME)." ;;
    esac
    if [ ! -s "$key_file" ]; then
        (umask 077 && "$PY" -c 'import secrets; print(secrets.token_urlsafe(50))' >"$key_file.new" && mv "$key_file.new" "$key_file")
        echo "==> Made a secret key for this machine: $key_file"
    fi
    chmod 600 "$key_file"
    DJANGO_SECRET_KEY=$(cat "$key_file")
fi
export DJANGO_SECRET_KEY

host=${GUNICORN_BIND%:*}
case "$host" in
    127.*|localhost|"[::1]"|unix) ;;
    *)
        published=0
        if [ -d .git ] || [ -f .git ]; then
            git grep -qF -e "$DJANGO_SECRET_KEY" -- . && published=1
        else
            grep -rqF --exclude-dir=.venv --exclude-dir=node_modules --exclude-dir=staticfiles -e "$DJANGO_SECRET_KEY" . && published=1
        fi
        [ "$published" = 0 ] || fail "refusing to listen on $GUNICORN_BIND with a DJANGO_SECRET_KEY written in this repository: anyone could sign tokens for any user. Unset it (a key is made for this machine) or set your own."
        ;;
esac

echo "==> Serving on http://$GUNICORN_BIND/ (DEBUG off; Ctrl-C to stop)"
export DJANGO_DEBUG=0 DJANGO_SECURE_SSL_REDIRECT=0 DJANGO_SECURE_COOKIES=0
export DJANGO_ALLOWED_HOSTS="${DJANGO_ALLOWED_HOSTS:-localhost,127.0.0.1}"
"$PY" manage.py collectstatic --no-input -v 0
exec "$(dirname "$PY")/gunicorn" messaging_app.asgi:application

# Two commands matter: `make run` and `make test`. Both set everything up first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
# Development defaults; production sets these itself (see docs/configuration.md).
export DJANGO_DEBUG ?= 1

# Processes of the background worker (Celery): make worker WORKER_CONCURRENCY=4
WORKER_CONCURRENCY ?= 2

.PHONY: bench run serve worker beat test test-browser test-integration install install-dev sysdeps migrate lint lock schema seed listen superuser clean

run: install migrate ## Serve the API and WebSockets on http://127.0.0.1:$(PORT)/ (ASGI)
	@echo "==> Serving on http://127.0.0.1:$(PORT)/ (Ctrl-C to stop)"
	$(PY) manage.py runserver 127.0.0.1:$(PORT)

# Local plain-HTTP production run on 127.0.0.1 with a secret made for this machine, kept outside the
# repository (scripts/serve.sh: GUNICORN_BIND for another interface, DJANGO_SECRET_KEY for your own key).
serve: install migrate ## Production-like: DEBUG off, collectstatic, gunicorn + uvicorn workers on 127.0.0.1:$(PORT)
	PORT=$(PORT) PY=$(PY) bash scripts/serve.sh

# Needs a broker: CELERY_BROKER_URL (redis://... or amqp://...) or REDIS_URL. Without one, `make run`
# runs tasks in-process after commit and no worker is needed. Ctrl-C (SIGTERM) finishes the task under way.
worker: install migrate ## The background worker (webhook deliveries): CELERY_BROKER_URL or REDIS_URL must be set
	@if [ -z "$${CELERY_BROKER_URL}$${REDIS_URL}" ]; then \
	  echo "make worker: set CELERY_BROKER_URL (e.g. redis://127.0.0.1:6379/1 or amqp://guest:guest@127.0.0.1:5672//) or REDIS_URL." >&2; \
	  echo "Without a broker, tasks run in-process after commit: \`make run\` needs no worker." >&2; exit 2; \
	fi
	$(PY) -m celery -A messaging_app worker --loglevel=INFO --concurrency=$(WORKER_CONCURRENCY)

# Celery beat enqueues the periodic tasks of CELERY_BEAT_SCHEDULE (the email digests) for the
# worker; it touches no database. Run ONE per deployment: a second enqueues every run twice. Its
# schedule file (when each task last ran) lives in a temporary directory, removed when it stops.
beat: install ## Periodic tasks (email digests) for `make worker`: CELERY_BROKER_URL or REDIS_URL must be set
	@if [ -z "$${CELERY_BROKER_URL}$${REDIS_URL}" ]; then \
	  echo "make beat: beat only enqueues for a worker: set CELERY_BROKER_URL or REDIS_URL as for \`make worker\`." >&2; \
	  exit 2; \
	fi
	@dir="$$(mktemp -d "$${TMPDIR:-/tmp}/messaging-app-beat.XXXXXX")"; trap 'rm -rf "$$dir"' EXIT; \
	  $(PY) -m celery -A messaging_app beat --loglevel=INFO --schedule="$$dir/celerybeat-schedule"

test: install-dev ## Run the whole test suite (SQLite unless DATABASE_URL says otherwise)
	$(PY) -m pytest $(PYTEST_ARGS)

test-integration: install-dev ## Two real servers on MariaDB + Redis (both must be running); DB outages on private MariaDB/PostgreSQL
	$(PY) -m pytest -m integration -p no:cacheprovider $(PYTEST_ARGS)

# The web client in a real browser: Debian's Chromium (installed here if missing; never a
# downloaded browser), driven by Playwright for Python, against a live production-like server.
test-browser: install-dev ## Browser tests of the web client at /app/ (Chromium; about a minute)
	@if [ ! -x /usr/bin/chromium ]; then \
	  echo "==> Installing Debian's chromium"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; \
	fi
	$(PY) -m pytest -m browser -p no:cacheprovider webclient/tests $(PYTEST_ARGS)

# Two steps, each with its own stamp: `make run` installs what serving needs
# (requirements-run.txt); `make test` then only adds the test and lint tools (requirements-dev.txt).
install: $(VENV)/.installed-run
install-dev: $(VENV)/.installed-dev

# mysqlclient compiles against the MySQL/MariaDB client library.
sysdeps:
	@if ! pkg-config --exists mysqlclient 2>/dev/null && ! pkg-config --exists mariadb 2>/dev/null; then \
	  echo "==> Installing system packages for mysqlclient (default-libmysqlclient-dev pkg-config)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq default-libmysqlclient-dev pkg-config build-essential; \
	fi

$(PY):
	@echo "==> Creating the virtualenv $(VENV)"
	$(PYTHON) -m venv $(VENV)

PIP_INSTALL = $(PY) -m pip install --disable-pip-version-check

# constraints.txt pins every package, dependencies of dependencies included (make lock), so a
# fresh install gets exactly what CI tested.
$(VENV)/.installed-run: requirements.txt requirements-run.txt constraints.txt | $(PY)
	@$(MAKE) --no-print-directory sysdeps
	@echo "==> Installing what serving needs (requirements-run.txt; a minute or less the first time)"
	$(PIP_INSTALL) -r requirements-run.txt -c constraints.txt
	@touch $@

$(VENV)/.installed-dev: requirements-dev.txt constraints.txt $(VENV)/.installed-run
	@echo "==> Adding the test and lint tools (requirements-dev.txt)"
	$(PIP_INSTALL) -r requirements-dev.txt -c constraints.txt
	@touch $@

migrate: install
	$(PY) manage.py migrate --no-input

lint: install-dev ## flake8, migrations in step with models, OpenAPI schema valid
	$(PY) -m flake8
	$(PY) manage.py makemigrations --check --dry-run
	$(PY) manage.py spectacular --validate --fail-on-warn --file /dev/null

lock: install-dev ## Regenerate constraints.txt from the requirements files (after changing a pin)
	CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile --quiet --strip-extras --no-emit-index-url --no-emit-find-links \
	  --output-file=constraints.txt requirements-dev.txt

schema: install ## Write the OpenAPI schema to openapi.yaml
	$(PY) manage.py spectacular --validate --fail-on-warn --file openapi.yaml

seed: install migrate ## Demo users and a conversation (idempotent); links use $(PORT)
	$(PY) manage.py seed_demo --server http://127.0.0.1:$(PORT)

superuser: install migrate ## Create an admin account for http://127.0.0.1:$(PORT)/admin/ (asks for email and password)
	$(PY) manage.py createsuperuser $(if $(DJANGO_SUPERUSER_PASSWORD),--no-input)

listen: install ## Print live events: make listen EMAIL=alice@example.com PASSWORD=...
	$(PY) manage.py listen --server http://127.0.0.1:$(PORT) --email "$(EMAIL)" $(if $(PASSWORD),--password "$(PASSWORD)")

bench: install ## Benchmark on MariaDB: make bench [QUICK=1] [BENCH_ARGS="--only inbox,send"]
	$(PY) -m bench.run $(if $(filter 1 yes true,$(QUICK)),--quick) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) db.sqlite3 .pytest_cache node_modules

# Container image for Kubernetes: build and push REGISTRY/messaging-app:TAG (scripts/image_push.sh -h).
.PHONY: image-push
image-push: ## Build and push the image: make image-push REGISTRY=ghcr.io/you TAG=1.1.0 [SET_KUSTOMIZATION=1]
	bash scripts/image_push.sh --registry "$(REGISTRY)" --tag "$(TAG)" $(if $(filter 1,$(SET_KUSTOMIZATION)),--set-kustomization)

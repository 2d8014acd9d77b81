#!/usr/bin/env bash
# Dependency audit: every package constraints.txt locks (all that requirements*.txt pin and
# what they pull in, at the versions installed), checked against PyPI's vulnerability data with pip-audit (in its own virtualenv, not the app's).
# --strict: a package pip-audit cannot look up fails the audit instead of passing unaudited.
# Needs pypi.org's per-release JSON API: GitHub Actions runs it (.github/workflows/ci.yml);
# the local CI machines cannot reach that API (see README, "Security").
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${PIP_AUDIT_VENV:-.venv-audit}
if ! test -x "$VENV/bin/pip-audit"; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check pip-audit==2.10.1
fi
"$VENV/bin/pip-audit" --strict --progress-spinner off --no-deps --requirement constraints.txt

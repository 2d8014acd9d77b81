"""
Celery beat, which enqueues the email digests (CELERY_BEAT_SCHEDULE): `make beat` for real, on a
redis-server of the test's own, and the deployment files that run exactly one of it (compose's `beat`
service, Kubernetes' beat_deployment.yaml) and give the app, the workers and beat the notification
settings (PUSH_*, EMAIL_*). scripts/k8s_validate.sh and scripts/compose_smoke.sh check the same files
against the schemas and podman-compose.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid

import pytest
import yaml

from chats.tests.test_connection_reuse import PrivateRedis
from chats.tests.test_first_run import ROOT

# Settings the deployment files must pass: every PUSH_* and EMAIL_* setting read from the environment,
# and the two the emails need, but not PUSH_ALLOW_HTTP / PUSH_ALLOW_PRIVATE: development relaxations
# of the SSRF guard that production leaves at their default (off). `.env` can still set them.
SETTINGS = (ROOT / "messaging_app" / "settings.py").read_text()
NOTIFICATION_SETTINGS = {
    name for name in re.findall(r'env\.\w+\("((?:PUSH|EMAIL)_[A-Z_]+)"', SETTINGS)
    if not name.startswith("PUSH_ALLOW_")
} | {"DEFAULT_FROM_EMAIL", "PUBLIC_BASE_URL"}
# Held only by the Secret (secret.env), never by the ConfigMap.
SECRET_SETTINGS = {"PUSH_VAPID_PRIVATE_KEY", "EMAIL_HOST_USER", "EMAIL_HOST_PASSWORD"}
# Not worth a line of their own in the deployment files: a per-user cap with a good default.
LEFT_TO_DEFAULTS = {"PUSH_MAX_SUBSCRIPTIONS_PER_USER"}


def make_env(tmp_path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL", "CELERY_", "EMAIL_"))}
    env.update(TMPDIR=str(tmp_path), PYTHONUNBUFFERED="1", **extra)
    return env


def make_beat(env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        ["make", "--no-print-directory", "-o", ".venv/.installed-run", f"PY={sys.executable}", "beat"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )


def test_make_beat_enqueues_the_email_digests_and_keeps_its_schedule_out_of_the_repository(tmp_path):
    redis = PrivateRedis(tmp_path)
    redis.start()
    queue = f"beat-test-{uuid.uuid4().hex}"
    process = make_beat(make_env(
        tmp_path, CELERY_BROKER_URL=f"redis://127.0.0.1:{redis.port}/0", CELERY_QUEUE=queue,
        EMAIL_DIGEST_INTERVAL_SECONDS="1",
    ))
    try:
        deadline = time.monotonic() + 60
        while redis.client.llen(queue) < 2:  # two runs: it keeps its interval, not just a first tick
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "beat enqueued nothing within 60 s"
            time.sleep(0.2)
        messages = [json.loads(raw) for raw in redis.client.lrange(queue, 0, -1)]
        assert {m["headers"]["task"] for m in messages} == {"notifications.email_digests"}
        [schedule_dir] = tmp_path.glob("messaging-app-beat.*")  # in TMPDIR, made for this run
        assert list(schedule_dir.glob("celerybeat-schedule*"))
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        output = process.communicate(timeout=30)[0]
        redis.stop()
    assert "beat: Starting" in output, output
    assert not list(tmp_path.glob("messaging-app-beat.*")), "the schedule's directory outlived beat"
    assert not list(ROOT.glob("celerybeat*")), "beat wrote into the repository"


def test_make_beat_without_a_broker_says_what_to_set(tmp_path):
    result = subprocess.run(
        ["make", "--no-print-directory", "-o", ".venv/.installed-run", f"PY={sys.executable}", "beat"],
        cwd=ROOT, env=make_env(tmp_path), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "set CELERY_BROKER_URL or REDIS_URL" in result.stderr


def compose_services() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


@pytest.mark.parametrize("service", ["web", "worker", "beat", "migrate"])
def test_compose_gives_every_process_the_notification_settings_without_secrets(service):
    environment = compose_services()[service]["environment"]
    assert NOTIFICATION_SETTINGS - LEFT_TO_DEFAULTS <= set(environment), sorted(
        NOTIFICATION_SETTINGS - LEFT_TO_DEFAULTS - set(environment))
    for name in SECRET_SETTINGS:  # from .env only: the file holds no value
        assert environment[name] == f"${{{name}:-}}"
    # Digests print to the log until an SMTP server is configured: no mail leaves a local stack by surprise.
    assert environment["EMAIL_BACKEND"].endswith(":-django.core.mail.backends.console.EmailBackend}")


def test_compose_runs_one_beat_with_its_schedule_in_tmp():
    services = compose_services()
    beat = services["beat"]
    assert beat["command"][:4] == ["celery", "-A", "messaging_app", "beat"]
    assert "--schedule=/tmp/celerybeat-schedule" in beat["command"]
    assert "/tmp" in beat["tmpfs"] and beat["read_only"] is True
    assert beat.get("deploy", {}).get("replicas", 1) == 1 and "scale" not in beat
    assert "celerybeat.pid" in " ".join(beat["healthcheck"]["test"])  # not the image's HTTP check
    assert beat["depends_on"]["redis"]["condition"] == "service_healthy"
    assert [name for name, s in services.items() if "beat" in (s.get("command") or [])] == ["beat"]


def manifest(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((ROOT / name).read_text()) if d]


def test_kubernetes_runs_one_beat_shared_by_both_colours():
    [beat] = manifest("beat_deployment.yaml")
    spec = beat["spec"]
    assert beat["kind"] == "Deployment" and beat["metadata"]["name"] == "messaging-app-beat"
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}  # never two, not even mid-update
    assert spec["selector"]["matchLabels"] == {"app": "messaging-app-beat"}  # no colour: shared
    [container] = spec["template"]["spec"]["containers"]
    assert container["name"] == "beat"  # kubctl-0x02 sets the image of container `beat`
    assert container["args"][:4] == ["celery", "-A", "messaging_app", "beat"]
    assert "--schedule=/tmp/celerybeat-schedule" in container["args"]
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp"}
    assert {next(iter(e.values()))["name"] for e in container["envFrom"]} == {
        "messaging-app-config", "messaging-app-secrets"}
    kustomization = yaml.safe_load((ROOT / "kustomization.yaml").read_text())
    assert "beat_deployment.yaml" in kustomization["resources"]
    assert "deployment/messaging-app-beat \"beat=$IMAGE\"" in (ROOT / "kubctl-0x02").read_text()


def test_kubernetes_gives_every_pod_the_notification_settings_and_keeps_secrets_in_the_secret():
    [config] = [d for d in manifest("kubeservice.yaml") if d["kind"] == "ConfigMap"]
    example = {
        line.lstrip("# ").split("=", 1)[0]
        for line in (ROOT / "secret.env.example").read_text().splitlines()
        if re.match(r"#? ?[A-Z_]+=", line)
    }
    assert not SECRET_SETTINGS & set(config["data"])
    assert SECRET_SETTINGS <= example
    assert NOTIFICATION_SETTINGS - LEFT_TO_DEFAULTS - SECRET_SETTINGS <= set(config["data"])
    # Every pod reads both: the API colours, the workers and beat.
    for name in ("blue_deployment.yaml", "green_deployment.yaml", "blue_worker_deployment.yaml",
                 "green_worker_deployment.yaml", "beat_deployment.yaml"):
        for d in manifest(name):
            if d["kind"] == "Deployment":
                container = d["spec"]["template"]["spec"]["containers"][0]
                refs = {next(iter(e.values()))["name"] for e in container["envFrom"]}
                assert refs == {"messaging-app-config", "messaging-app-secrets"}, name


@pytest.mark.parametrize("colour", ["blue", "green"])
def test_workers_are_ready_only_once_they_answer_through_the_broker(colour):
    [worker] = manifest(f"{colour}_worker_deployment.yaml")
    container = worker["spec"]["template"]["spec"]["containers"][0]
    probe = " ".join(container["readinessProbe"]["exec"]["command"])
    assert "celery -A messaging_app inspect ping" in probe and "celery@$(hostname)" in probe  # the node's name
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 30

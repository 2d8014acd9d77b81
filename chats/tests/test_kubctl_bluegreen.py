"""
kubctl-0x02, the blue/green switch, run for real against a stand-in cluster (scripts/
kubctl_fake_cluster.py: no Kubernetes can run here) that keeps its objects between calls and logs
every call. Asserted: the idle colour's worker is deployed with the release's image and is ready
before any traffic moves; after the switch the old colour's worker is drained (scaled to 0) and the
shared beat moves to the new image; a release whose watch fails puts the Service, the old worker's
replicas and the new worker back; a new worker that never gets ready stops the release before the
switch and is scaled back. scripts/k8s_validate.sh covers the refusal paths (no or placeholder Secret).
"""
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OLD, NEW = "registry.example.com/messaging-app:1.0.0", "ghcr.io/acme/messaging-app:2.0.0"


def deployment(labels: dict, replicas: int, grace: int = 30) -> dict:
    return {"labels": labels, "image": OLD, "replicas": replicas, "grace": grace}


@pytest.fixture
def cluster(tmp_path):
    """Blue live (API, worker); green's worker drained by the last release; the shared beat."""
    state = {
        "secret": {
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "DATABASE_URL": f"postgres://messaging:{secrets.token_hex(8)}@db.internal:5432/messaging",
        },
        "services": {
            name: {"selector": {"app": "messaging-app", "version": colour}}
            for name, colour in (("messaging-app", "blue"), ("messaging-app-blue", "blue"),
                                 ("messaging-app-green", "green"))
        },
        "deployments": {
            "messaging-app-blue": deployment({"app": "messaging-app", "version": "blue"}, 2),
            "messaging-app-worker-blue": deployment({"app": "messaging-app-worker", "version": "blue"}, 1, 60),
            "messaging-app-worker-green": deployment({"app": "messaging-app-worker", "version": "green"}, 0, 60),
            "messaging-app-beat": deployment({"app": "messaging-app-beat"}, 1),
        },
        "hpas": {"messaging-app-blue": 2},
    }
    (tmp_path / "state.json").write_text(json.dumps(state))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "kubectl"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{ROOT / "scripts" / "kubctl_fake_cluster.py"}" "$@"\n')
    shim.chmod(0o755)
    return tmp_path


def switch(cluster: Path, **faults: str) -> tuple[int, str, list[str], dict]:
    """Runs kubctl-0x02 to the idle colour: (exit status, output, kubectl calls, the cluster after)."""
    env = {
        **os.environ,
        "PATH": f"{cluster / 'bin'}:{os.environ['PATH']}",
        "FAKE_KUBE_STATE": str(cluster / "state.json"),
        "FAKE_KUBE_LOG": str(cluster / "calls.log"),
        "TMPDIR": str(cluster),
        "NAMESPACE": "",
        **faults,
    }
    result = subprocess.run(
        ["bash", str(ROOT / "kubctl-0x02"), "-i", NEW, "--watch", "5", "--timeout", "10"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    calls = (cluster / "calls.log").read_text().splitlines()
    assert not [c for c in calls if c.startswith("UNSUPPORTED")], calls
    return result.returncode, result.stdout + result.stderr, calls, json.loads((cluster / "state.json").read_text())


def position(calls: list[str], fragment: str) -> int:
    matching = [i for i, call in enumerate(calls) if fragment in call]
    assert len(matching) == 1, f"{fragment!r}: {matching} in {calls}"
    return matching[0]


def test_a_release_deploys_the_new_worker_before_the_switch_and_drains_the_old_one_after(cluster):
    status, output, calls, after = switch(cluster)
    assert status == 0, output
    deployments = after["deployments"]
    assert after["services"]["messaging-app"]["selector"] == {"app": "messaging-app", "version": "green"}
    assert deployments["messaging-app-green"]["image"] == NEW and deployments["messaging-app-green"]["replicas"] == 2
    # The new colour's worker: the release's image, back from 0 to the file's one replica, ready first.
    assert deployments["messaging-app-worker-green"] == {
        "labels": {"app": "messaging-app-worker", "version": "green", "app.kubernetes.io/name": "messaging-app",
                   "app.kubernetes.io/component": "worker"},
        "image": NEW, "replicas": 1, "grace": 60,
    }
    ready = position(calls, "rollout status deployment messaging-app-worker-green")
    switched = position(calls, "patch service messaging-app ")
    drained = position(calls, "scale deployment messaging-app-worker-blue --replicas=0")
    assert ready < position(calls, "port-forward --address 127.0.0.1 service/messaging-app-green") < switched
    assert switched < drained < position(calls, "wait --for=delete pod -l app=messaging-app-worker,version=blue")
    assert "--timeout=90s" in calls[position(calls, "wait --for=delete")]  # its 60 s grace period, and some
    assert deployments["messaging-app-worker-blue"]["replicas"] == 0 and deployments["messaging-app-worker-blue"][
        "image"] == OLD
    # The shared beat follows the release once the watch has passed.
    assert deployments["messaging-app-beat"]["image"] == NEW
    assert drained < position(calls, "set image deployment/messaging-app-beat beat=" + NEW)
    # The old API colour stays for a quick rollback, which the script spells out.
    assert deployments["messaging-app-blue"]["replicas"] == 2
    assert "scale deployment messaging-app-worker-blue --replicas=1" in output


def test_a_failed_watch_rolls_back_the_service_and_both_workers(cluster):
    status, output, calls, after = switch(cluster, FAKE_KUBE_LIVE_STATUS="500")
    assert status == 1, output
    assert "ROLLING BACK" in output
    deployments = after["deployments"]
    assert after["services"]["messaging-app"]["selector"]["version"] == "blue"
    assert deployments["messaging-app-worker-blue"]["replicas"] == 1  # restored after its drain
    assert deployments["messaging-app-worker-green"]["replicas"] == 0  # back to where it was
    drained = position(calls, "scale deployment messaging-app-worker-blue --replicas=0")
    restored = position(calls, "scale deployment messaging-app-worker-blue --replicas=1")
    assert drained < position(calls, "patch service messaging-app --type merge -p {\"spec\":{\"selector\":"
                                     "{\"app\":\"messaging-app\",\"version\":\"blue\"}}}") < restored
    assert restored < position(calls, "scale deployment messaging-app-worker-green --replicas=0")
    assert deployments["messaging-app-beat"]["image"] == OLD  # beat moves only after a passed watch


def test_a_new_worker_that_never_gets_ready_stops_the_release_before_the_switch(cluster):
    status, output, calls, after = switch(cluster, FAKE_KUBE_ROLLOUT_FAILS="messaging-app-worker-green")
    assert status == 1, output
    assert "messaging-app-worker-green did not become ready" in output
    assert not [c for c in calls if " patch service " in f" {c} "]
    deployments = after["deployments"]
    assert after["services"]["messaging-app"]["selector"]["version"] == "blue"
    assert deployments["messaging-app-worker-green"]["replicas"] == 0  # scaled back: takes no task
    assert deployments["messaging-app-worker-blue"]["replicas"] == 1  # never touched
    assert not [c for c in calls if "messaging-app-worker-blue --replicas" in c]
    assert deployments["messaging-app-beat"]["image"] == OLD

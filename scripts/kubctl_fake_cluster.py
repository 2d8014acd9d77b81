#!/usr/bin/env python3
"""
A stand-in `kubectl` with a tiny cluster behind it, for testing kubctl-0x02 where no cluster can run
(machine.md: no local Kubernetes here). It answers exactly the calls kubctl-0x02 makes, keeps the
cluster in a JSON file between calls, and logs every call, so a test can assert what was done, in
which order, and what the cluster looks like afterwards (chats/tests/test_kubctl_bluegreen.py).

    FAKE_KUBE_STATE=state.json FAKE_KUBE_LOG=calls.log kubctl_fake_cluster.py <kubectl arguments>

The state: {"secret": {KEY: value}, "services": {name: {"selector": {...}}}, "deployments": {name:
{"labels", "image", "replicas", "grace", "terminating"}}, "hpas": {name: minReplicas}}. Pods are
derived: a Deployment with N replicas has pods <name>-fake-0 ... <name>-fake-(N-1), never restarting;
scaled down, the pods it lost stay (terminating, no endpoints) until `wait --for=delete` sees them go.
`port-forward` serves HTTP on a free port of 127.0.0.1 like a healthy app (/healthz and /readyz 200,
/api/ 401 in the error shape) until it is killed. Faults, from the environment:
  FAKE_KUBE_ROLLOUT_FAILS=name[,name]   `rollout status deployment <name>` fails (never ready);
  FAKE_KUBE_LIVE_STATUS=500             the `messaging-app` Service (only used after the switch)
                                        answers every request with this status.
Anything else is refused with exit 1 and logged as "UNSUPPORTED", which a test can look for.
"""
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

import yaml

STATE = os.environ["FAKE_KUBE_STATE"]


def load() -> dict:
    with open(STATE) as f:
        return json.load(f)


def save(state: dict) -> None:
    with open(STATE, "w") as f:
        json.dump(state, f, indent=1, sort_keys=True)


def option(args: list[str], name: str, default=None):
    """The value of --name=value, --name value or -o value in args."""
    for i, arg in enumerate(args):
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
        if arg == name and i + 1 < len(args):
            return args[i + 1]
    return default


def selector(text: str) -> dict:
    return dict(part.split("=", 1) for part in text.split(",") if part)


def matching(state: dict, wanted: dict) -> list[tuple[str, dict]]:
    return [(name, d) for name, d in sorted(state["deployments"].items()) if wanted.items() <= d["labels"].items()]


def pods(state: dict, wanted: dict, terminating: bool = True) -> list[str]:
    return [
        f"{name}-fake-{i}"
        for name, d in matching(state, wanted)
        for i in range(d["replicas"] + (d.get("terminating", 0) if terminating else 0))
    ]


def not_found(kind: str, name: str) -> int:
    print(f'Error from server (NotFound): {kind} "{name}" not found', file=sys.stderr)
    return 1


def get(state: dict, args: list[str]) -> int:
    kind, rest = args[0], args[1:]
    output = option(rest, "-o", "")
    name = rest[0] if rest and not rest[0].startswith("-") else None
    if kind == "secret":
        for key, value in state["secret"].items():
            print(f"{key}={value}")
        return 0
    if kind == "service":
        service = state["services"].get(name)
        if service is None:
            return not_found("services", name)
        if output == "jsonpath={.spec.selector.version}":
            print(service["selector"].get("version", ""), end="")
        return 0
    if kind == "deployment":
        d = state["deployments"].get(name)
        if d is None:
            return not_found("deployments.apps", name)
        fields = {
            "jsonpath={.spec.replicas}": d["replicas"],
            "jsonpath={.spec.template.spec.terminationGracePeriodSeconds}": d["grace"],
        }
        print(fields.get(output, f"{name} {d['replicas']}/{d['replicas']}"), end="")
        return 0
    if kind == "hpa":
        if name not in state["hpas"]:
            return not_found("horizontalpodautoscalers.autoscaling", name)
        print(state["hpas"][name], end="")
        return 0
    if kind == "pods":
        names = pods(state, selector(option(rest, "-l", "")))
        if output == "name":
            print("\n".join(f"pod/{n}" for n in names))
        elif "restartCount" in output:
            print("".join("0\n" for _ in names), end="")
        else:
            print("\n".join(names))
        return 0
    if kind == "endpointslices":
        service = state["services"][selector(option(rest, "-l", ""))["kubernetes.io/service-name"]]
        print("".join(f"{n}\n" for n in pods(state, service["selector"], terminating=False)), end="")
        return 0
    return unsupported(args)


def apply(state: dict, path: str) -> int:
    with open(path) as f:
        documents = [d for d in yaml.safe_load_all(f) if d]
    for d in documents:
        name = d["metadata"]["name"]
        if d["kind"] == "Deployment":
            spec, pod = d["spec"], d["spec"]["template"]["spec"]
            before = state["deployments"].get(name, {})
            state["deployments"][name] = {
                "labels": d["spec"]["template"]["metadata"]["labels"],
                "image": pod["containers"][0]["image"],
                # No replicas in the file (an HPA owns them): what it had, else 1, as the API server does.
                "replicas": spec.get("replicas", before.get("replicas", 1)),
                "grace": pod.get("terminationGracePeriodSeconds", 30),
            }
        elif d["kind"] == "HorizontalPodAutoscaler":
            state["hpas"][name] = d["spec"].get("minReplicas", 1)
        print(f"{d['kind'].lower()}/{name} configured")
    save(state)
    return 0


def port_forward(state: dict, target: str) -> int:
    kind, name = target.split("/", 1)
    broken = name == "messaging-app" and os.environ.get("FAKE_KUBE_LIVE_STATUS")

    class App(BaseHTTPRequestHandler):
        def do_GET(self):
            if broken:
                status, body = int(broken), {"type": "server_error"}
            elif self.path in ("/healthz", "/readyz"):
                status, body = 200, {"status": "ok"}
            else:
                status, body = 401, {"type": "client_error", "errors": [{"code": "not_authenticated"}]}
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), App)
    print(f"Forwarding from 127.0.0.1:{server.server_address[1]} -> 8000", flush=True)
    server.serve_forever()
    return 0


def unsupported(args: list[str]) -> int:
    log("UNSUPPORTED " + " ".join(args))
    print("fake kubectl: unsupported call: " + " ".join(args), file=sys.stderr)
    return 1


def log(line: str) -> None:
    with open(os.environ["FAKE_KUBE_LOG"], "a") as f:
        f.write(line + "\n")


def main(argv: list[str]) -> int:
    log(" ".join(argv))
    args = list(argv)
    if args[:1] == ["-n"]:
        args = args[2:]
    verb, rest = (args[0], args[1:]) if args else ("", [])
    if verb == "version":
        return 0
    if verb == "config":
        print("fake-cluster")
        return 0
    state = load()
    if verb == "get":
        return get(state, rest)
    if verb == "apply":
        return apply(state, option(rest, "-f"))
    if verb == "scale" and rest[0] == "deployment":
        d, replicas = state["deployments"][rest[1]], int(option(rest, "--replicas"))
        d["terminating"] = d.get("terminating", 0) + max(d["replicas"] - replicas, 0)
        d["replicas"] = replicas
        save(state)
        return 0
    if verb == "rollout" and rest[:2] == ["status", "deployment"]:
        if rest[2] in os.environ.get("FAKE_KUBE_ROLLOUT_FAILS", "").split(","):
            print(f"error: timed out waiting for the condition on deployments/{rest[2]}", file=sys.stderr)
            return 1
        print(f'deployment "{rest[2]}" successfully rolled out')
        return 0
    if verb == "patch" and rest[0] == "service":
        patch = json.loads(option(rest, "-p"))
        state["services"][rest[1]]["selector"] = patch["spec"]["selector"]
        save(state)
        return 0
    if verb == "set" and rest[0] == "image":
        name = rest[1].split("/", 1)[1]
        state["deployments"][name]["image"] = rest[2].split("=", 1)[1]
        save(state)
        return 0
    if verb == "wait" and option(rest, "--for") == "delete":
        for _name, d in matching(state, selector(option(rest, "-l", ""))):
            d["terminating"] = 0  # their tasks finished within the grace period
        save(state)
        return 0
    if verb == "port-forward":
        return port_forward(state, [a for a in rest if "/" in a][0])
    if verb in ("logs", "describe"):
        return 0
    return unsupported(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The targets the numbers must meet, and bench/results/*.md."""

# (scenario, minimum throughput in % of the floor)
THROUGHPUT_TARGETS = [("inbox", 40), ("newest", 50), ("send", 30), ("send_client_id", 30)]
# (1M-message scenario, its small counterpart): within 1.5x in throughput and p50 latency
FLAT_PAIRS = [("newest_1m", "newest_1k"), ("deep_1m", "deep_1k"), ("inbox_1m", "inbox"), ("flat_1m", "flat")]
FLAT_RATIO = 1.5
TAIL_RATIO = 10  # p99 < 10x p50 for every read


def targets(results: dict) -> list[dict]:
    by_name = {s["name"]: s for s in results["scenarios"]}
    checks = []

    def check(target: str, measured: float, limit: str, passed: bool) -> None:
        checks.append({"target": target, "measured": round(measured, 2), "limit": limit,
                       "result": "PASS" if passed else "FAIL"})

    for name, minimum in THROUGHPUT_TARGETS:
        if name in by_name:
            pct = by_name[name]["pct_of_floor"]
            check(f"{name}: throughput >= {minimum}% of floor", pct, f">= {minimum}", pct >= minimum)
    for big, small in FLAT_PAIRS:
        if big in by_name and small in by_name:
            b, s = by_name[big], by_name[small]
            throughput = s["rps"] / b["rps"] if b["rps"] else float("inf")
            note = f" (at {b['connections']} vs {s['connections']} connections)"
            note = "" if b["connections"] == s["connections"] else note
            check(f"{big} vs {small}: throughput ratio ({small} / {big}){note}", throughput, f"<= {FLAT_RATIO}",
                  throughput <= FLAT_RATIO)
            if not note:  # latencies compare only at equal concurrency (fewer connections queue less)
                latency = b["p50_ms"] / s["p50_ms"] if s["p50_ms"] else float("inf")
                check(f"{big} vs {small}: p50 ratio ({big} / {small})", latency, f"<= {FLAT_RATIO}",
                      latency <= FLAT_RATIO)
    for s in results["scenarios"]:
        if s["kind"] == "read" and s["requests"] >= 20:  # not for a scenario too slow to load-test
            ratio = s["p99_ms"] / s["p50_ms"] if s["p50_ms"] else float("inf")
            check(f"{s['name']}: p99 / p50", ratio, f"< {TAIL_RATIO}", ratio < TAIL_RATIO)
    return checks


def markdown(results: dict) -> str:
    m, c, d, f = results["machine"], results["config"], results["dataset"], results["floor"]
    lines = [
        f"# Benchmark results ({results['mode']} mode, {results['date']})",
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM; {m['db']}; Redis {m['redis']}; "
        f"Python {m['python']}, Django {m['django']}; commit {m['commit']}",
        f"- Load average (1 min): {results['load']['start']} at the start, {results['load']['min']}-"
        f"{results['load']['max']} during the scenarios, {results['load']['end']} at the end "
        "(other work on the machine slows every scenario alike; compare the ratios)",
        f"- Server: gunicorn + {c['workers']} uvicorn workers pinned to CPU {c['server_cpus']}, DEBUG off, "
        f"CONN_MAX_AGE {c['conn_max_age']}, Redis channel layer and cache; wrk pinned to CPU {c['wrk_cpus']}, "
        f"{c['concurrency']} connections, {c['duration']} s per scenario"
        + (f" after {c['warmup']} s of warm-up" if c["warmup"] else " (no warm-up but for the first floor run)"),
        f"- Dataset: {d['description']} ({d['database']})",
        f"- Floor: {f['rps']:,.0f} req/s; the {f['probe_seconds']} s probes of it after each scenario: "
        f"{min(f['probes']):,.0f}-{max(f['probes']):,.0f} req/s. A scenario's % of floor uses the mean of the "
        "floor runs just before and after it"
        + (" (**they moved by more than 30% during the run: the machine's load changed, ratios are rough**)"
           if max(f["probes"]) > 1.3 * min(f["probes"]) else ""),
        "",
        "| scenario | request | req/s | % of floor | p50 ms | p99 ms | p99/p50 | SQL queries | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in results["scenarios"]:
        tail = f"{s['p99_ms'] / s['p50_ms']:.1f}" if s["p50_ms"] else "-"
        title = s["title"] + (f" ({s['connections']} connections)" if s["connections"] != c["concurrency"] else "")
        lines.append(
            f"| {s['name']} | {title} | {s['rps']:,.1f} | {s['pct_of_floor']:.1f}% | {s['p50_ms']:.2f} | "
            f"{s['p99_ms']:.2f} | {tail} | {s['queries']} | {s['errors']} |"
        )
    ws = results.get("websocket")
    if ws:
        lines += [
            "",
            f"WebSocket delivery, REST send to receipt by the other participant ({ws['sends']} sends one at a "
            f"time, {ws['sockets']} sockets, idle server): p50 {ws['p50_ms']} ms, p99 {ws['p99_ms']} ms, "
            f"max {ws['max_ms']} ms; {ws['missing']} deliveries missing; the send itself: p50 {ws['rest_p50_ms']} ms.",
        ]
    lines += ["", "| target | measured | limit | result |", "|---|---:|---:|---|"]
    for t in results["targets"]:
        lines.append(f"| {t['target']} | {t['measured']} | {t['limit']} | **{t['result']}** |")
    lines += [
        "",
        "req/s, p50, p99: wrk (closed loop: every connection sends its next request when the last is answered). "
        "SQL queries: one request of the scenario, measured in-process (Django test client + "
        "CaptureQueriesContext) on the same database. errors: socket errors, timeouts and non-2xx answers.",
    ]
    return "\n".join(lines) + "\n"

#!/usr/bin/env python3
"""perf/compare.sh's report: reads a work dir's runs.tsv, every run's keel-bench JSON,
machine.env and the floor measurements; writes <results>/<name>.md (goals with verdicts,
medians with keel/etcd ratios, raw rows), <name>-runs.csv, <name>-throughput.svg and
<name>-p99.svg. An existing <name>.md is not overwritten: the name gets -2, -3, ...

  report.py report WORKDIR RESULTS_DIR NAME
  report.py rps RUN.json          (requests/s of a run, for the script's calibration)

Standard library only (no matplotlib): the SVG is written by hand.
"""

import csv
import json
import math
import os
import statistics
import sys

CASE_ORDER = ["put", "range-l", "range-s", "txn-put", "watch-latency"]
CASE_TITLE = {
    "put": "put",
    "range-l": "range, linearizable",
    "range-s": "range, serializable",
    "txn-put": "txn-put",
    "watch-latency": "watch latency (events)",
}
SIZE_TITLE = {"single": "1 member", "three": "3 members"}
SIZE_ORDER = ["single", "three"]
TARGETS = ["etcd", "keel"]
GOAL_FACTOR = 5.0


def main_report(run_json, case=None):
    """The report of one run that the comparison is about: watch-latency's events (each
    watcher's event latency), otherwise the run's only report."""
    reps = run_json["reports"]
    if run_json.get("workload") == "watch-latency" or case == "watch-latency":
        for r in reps:
            if r["name"] == "watch-event":
                return r
    return reps[0]


def cmd_rps(path):
    with open(path) as f:
        print(main_report(json.load(f))["requests_per_sec"])


# ---- loading ---------------------------------------------------------------------------------


def load(workdir):
    env = {}
    with open(os.path.join(workdir, "machine.env")) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("=")
            env[k] = v
    floors = []
    for name in ("floor-before.json", "floor-after.json"):
        p = os.path.join(workdir, name)
        if os.path.exists(p):
            with open(p) as f:
                floors.append(json.load(f))
    runs = []
    with open(os.path.join(workdir, "runs.tsv")) as f:
        for row in csv.DictReader(f, delimiter="\t"):
            with open(os.path.join(workdir, row["json"])) as jf:
                rep = main_report(json.load(jf), row["case"])
            cpu = float(row["server_cpu_s"])
            pct = rep.get("percentiles", {})
            runs.append(
                {
                    "target": row["target"],
                    "size": row["size"],
                    "members": 1 if row["size"] == "single" else 3,
                    "case": row["case"],
                    "conns": int(row["conns"]),
                    "clients": int(row["clients"]),
                    "round": int(row["round"]),
                    "total": int(row["total"]),
                    "count": rep["count"],
                    "errors": rep["errors"],
                    "req_per_s": rep["requests_per_sec"],
                    "p50_ms": pct.get("p50", float("nan")) * 1e3,
                    "p99_ms": pct.get("p99", float("nan")) * 1e3,
                    "server_cpu_s": cpu,
                    "req_per_cpu_s": rep["count"] / cpu if cpu > 0 else float("nan"),
                    "peak_rss_mib": int(row["peak_rss_kb"]) / 1024.0,
                    "client_cpu_s": float(row["client_cpu_s"]),
                    "wall_s": float(row["wall_s"]),
                    "json": row["json"],
                }
            )
    return env, floors, runs


METRICS = ["req_per_s", "p50_ms", "p99_ms", "server_cpu_s", "req_per_cpu_s", "peak_rss_mib"]


def medians(runs):
    """{(size, case, conns, clients, target): {metric: median, ..., 'rounds': [runs]}}"""
    groups = {}
    for r in runs:
        groups.setdefault((r["size"], r["case"], r["conns"], r["clients"], r["target"]), []).append(r)
    out = {}
    for k, rs in groups.items():
        m = {x: statistics.median(r[x] for r in rs) for x in METRICS}
        m["rounds"] = rs
        m["errors"] = sum(r["errors"] for r in rs)
        out[k] = m
    return out


def order_key(k):
    size, case, conns, clients = k[:4]
    return (
        SIZE_ORDER.index(size) if size in SIZE_ORDER else 9,
        CASE_ORDER.index(case) if case in CASE_ORDER else 9,
        clients,
        conns,
    )


# ---- formatting ------------------------------------------------------------------------------


def fmt(metric, v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if metric in ("req_per_s", "req_per_cpu_s"):
        return f"{v:,.0f}"
    if metric in ("p50_ms", "p99_ms"):
        return f"{v:.3g}" if v < 100 else f"{v:,.0f}"
    if metric == "server_cpu_s":
        return f"{v:.2f}"
    if metric == "peak_rss_mib":
        return f"{v:.0f}"
    return str(v)


def ratio(a, b):
    if a is None or b is None or b == 0 or math.isnan(a) or math.isnan(b):
        return float("nan")
    return a / b


def fratio(x):
    return "–" if math.isnan(x) else f"{x:.2f}×"


# ---- goals -----------------------------------------------------------------------------------


def floor_bound(floors):
    """(rtt p50, durable write p50, mode, bound = 2 x (rtt + write)): the smaller p50 of the
    floor measurements (before and after the matrix). Other load on the machine only adds to a
    floor (a busy disk once gave a 4 ms write p50 next to 0.16 ms a minute later), and the
    smaller floor is the stricter bound for keel."""
    if not floors:
        return None
    rtt = min(f["loopback_rtt_p50_s"] for f in floors) * 1e3
    wr = min(f["dsync_write_p50_s"] for f in floors) * 1e3
    mode = "/".join(sorted({f["dsync_mode"] for f in floors}))
    return rtt, wr, mode, 2 * (rtt + wr)


def goals(med, floors):
    """Rows (goal, numbers, verdict)."""
    rows = []

    def get(size, case, conns, clients, target):
        return med.get((size, case, conns, clients, target))

    def verdict(ok):
        return "**met**" if ok else "**NOT met**"

    sizes = [s for s in SIZE_ORDER if any(k[0] == s for k in med)]
    for size in sizes:
        st = SIZE_TITLE[size]
        for case in ("put", "range-l", "range-s"):
            e, k = get(size, case, 10, 100, "etcd"), get(size, case, 10, 100, "keel")
            goal = f"{st}, {CASE_TITLE[case]}, 10 conns / 100 clients: req/s ≥ 5× etcd's"
            if not (e and k):
                rows.append((goal, "not measured", "–"))
            else:
                x = ratio(k["req_per_s"], e["req_per_s"])
                rows.append(
                    (
                        goal,
                        f"keel {fmt('req_per_s', k['req_per_s'])} vs etcd "
                        f"{fmt('req_per_s', e['req_per_s'])} req/s: {fratio(x)}",
                        verdict(x >= GOAL_FACTOR),
                    )
                )
            goal = f"{st}, {CASE_TITLE[case]}, 10 conns / 100 clients: p99 ≤ ⅕ of etcd's"
            if not (e and k):
                rows.append((goal, "not measured", "–"))
            else:
                x = ratio(k["p99_ms"], e["p99_ms"])
                rows.append(
                    (
                        goal,
                        f"keel {fmt('p99_ms', k['p99_ms'])} ms vs etcd "
                        f"{fmt('p99_ms', e['p99_ms'])} ms: {fratio(x)} (goal ≤ 0.20×)",
                        verdict(x <= 1 / GOAL_FACTOR),
                    )
                )
    fb = floor_bound(floors)
    for size in sizes:
        st = SIZE_TITLE[size]
        k = get(size, "put", 1, 1, "keel")
        goal = f"{st}, put, 1 conn / 1 client: p50 ≤ 2 × (loopback round trip + one durable 4 KiB write)"
        if not k or not fb:
            rows.append((goal, "not measured", "–"))
            continue
        rtt, wr, mode, bound = fb
        shared = ""
        w3 = [f["dsync3_write_p50_s"] for f in floors if "dsync3_write_p50_s" in f]
        if size == "three" and w3:
            # Context, not the goal's bound: the three members' WALs share this one disk.
            w3 = min(w3) * 1e3
            shared = (
                f"; the three members' WALs share this disk: three such writes at once take "
                f"p50 {w3:.3f} ms each, 2 × ({rtt:.3f} + {w3:.3f}) = {2 * (rtt + w3):.3f} ms"
            )
        idle = [f["dsync_idle_write_p50_s"] for f in floors if "dsync_idle_write_p50_s" in f]
        if idle:
            # Context, not the goal's bound: a 1/1 put's WAL write comes after the rest of
            # the put's cycle, not straight after the previous write.
            wi = min(idle) * 1e3
            shared += (
                f"; the same write issued after 1 ms without I/O (as a 1/1 put's WAL write "
                f"is issued after the rest of the put's cycle) takes p50 {wi:.3f} ms, "
                f"2 × ({rtt:.3f} + {wi:.3f}) = {2 * (rtt + wi):.3f} ms"
            )
        rows.append(
            (
                goal,
                f"keel p50 {k['p50_ms']:.3f} ms; bound 2 × ({rtt:.3f} + {wr:.3f}) = {bound:.3f} ms "
                f"(round trip and {mode} write p50 on this machine during this run: the smaller of "
                f"the before and after measurements){shared}",
                verdict(k["p50_ms"] <= bound),
            )
        )
    keys = sorted({kk[:4] for kk in med}, key=order_key)
    met = total = 0
    parts = []
    for size, case, conns, clients in keys:
        e, k = get(size, case, conns, clients, "etcd"), get(size, case, conns, clients, "keel")
        if not (e and k):
            continue
        x = ratio(k["req_per_cpu_s"], e["req_per_cpu_s"])
        total += 1
        ok = x >= GOAL_FACTOR
        met += ok
        parts.append(
            f"{SIZE_TITLE[size]} {case} {conns}/{clients}: {fratio(x)}{'' if ok else ' ✗'}"
        )
    if total:
        rows.append(
            (
                "requests per server CPU-second ≥ 5× etcd's (every measured case)",
                f"{met} of {total} cases: " + "; ".join(parts),
                verdict(met == total),
            )
        )
    else:
        rows.append(("requests per server CPU-second ≥ 5× etcd's", "not measured", "–"))
    return rows


# ---- SVG -------------------------------------------------------------------------------------

COLOR = {"etcd": "#d95f02", "keel": "#1b5fa8"}
DASH = {"single": "", "three": "6,4"}


def esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def nice_ticks(lo, hi):
    """Log-scale ticks within [lo, hi]: 1-2-5 per decade, or decades only for wide spans."""
    d0, d1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    mults = (1,) if d1 - d0 > 3 else (1, 2, 5)
    return [m * 10**d for d in range(d0, d1 + 1) for m in mults if lo * 0.999 <= m * 10**d <= hi * 1.001]


def tick_label(v):
    if v >= 1e6:
        return f"{v / 1e6:g}M"
    if v >= 1e3:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


def plot(med, metric, path, title, ylabel):
    cases = [c for c in CASE_ORDER if any(k[1] == c for k in med)]
    sizes = [s for s in SIZE_ORDER if any(k[0] == s for k in med)]
    pw, ph = 360, 260
    ml, mr, mt, mb = 68, 16, 34, 48
    ncol = min(3, max(1, len(cases)))
    nrow = math.ceil(len(cases) / ncol) if cases else 1
    head = 84
    width, height = max(ncol * pw, 700), head + nrow * ph
    o = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="16" font-weight="bold">{esc(title)}</text>',
    ]
    # Legend: one entry per (target, size).
    lx = 20
    for t in TARGETS:
        for s in sizes:
            y = 48
            dash = f' stroke-dasharray="{DASH[s]}"' if DASH[s] else ""
            o.append(
                f'<line x1="{lx}" y1="{y}" x2="{lx + 36}" y2="{y}" stroke="{COLOR[t]}" stroke-width="2.5"{dash}/>'
            )
            o.append(marker(t, s, lx + 18, y))
            o.append(f'<text x="{lx + 44}" y="{y + 4}">{esc(t)}, {esc(SIZE_TITLE[s])}</text>')
            lx += 165
    o.append(f'<text x="20" y="72" fill="#555">points: median of the rounds; vertical bars: min–max of the rounds</text>')
    for i, case in enumerate(cases):
        px, py = (i % ncol) * pw, head + (i // ncol) * ph
        x0, x1, y0, y1 = px + ml, px + pw - mr, py + mt, py + ph - mb
        pts = {k: v for k, v in med.items() if k[1] == case}
        loads = sorted({(k[3], k[2]) for k in pts})  # (clients, conns)
        vals = [r[metric] for v in pts.values() for r in v["rounds"] if r[metric] > 0]
        o.append(f'<text x="{(x0 + x1) / 2}" y="{py + 20}" text-anchor="middle" font-weight="bold">{esc(CASE_TITLE[case])}</text>')
        o.append(f'<rect x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}" fill="none" stroke="#333"/>')
        if not vals:
            o.append(f'<text x="{(x0 + x1) / 2}" y="{(y0 + y1) / 2}" text-anchor="middle">no data</text>')
            continue
        lo, hi = min(vals), max(vals)
        ylo = 10 ** math.floor(math.log10(lo))
        yhi = 10 ** math.ceil(math.log10(hi))
        if yhi <= ylo:
            yhi = ylo * 10
        cl = [c for c, _ in loads]
        xlo, xhi = math.log10(min(cl)) - 0.5, math.log10(max(cl)) + 0.5

        def X(c):
            return x0 + (math.log10(c) - xlo) / (xhi - xlo) * (x1 - x0)

        def Y(v):
            return y1 - (math.log10(v) - math.log10(ylo)) / (math.log10(yhi) - math.log10(ylo)) * (y1 - y0)

        for tv in nice_ticks(ylo, yhi):
            yy = Y(tv)
            o.append(f'<line x1="{x0}" y1="{yy:.1f}" x2="{x1}" y2="{yy:.1f}" stroke="#ddd"/>')
            o.append(f'<text x="{x0 - 5}" y="{yy + 4:.1f}" text-anchor="end">{tick_label(tv)}</text>')
        for c, conns in loads:
            xx = X(c)
            o.append(f'<line x1="{xx:.1f}" y1="{y1}" x2="{xx:.1f}" y2="{y1 + 5}" stroke="#333"/>')
            o.append(f'<text x="{xx:.1f}" y="{y1 + 18}" text-anchor="middle">{c} ({conns} conn{"s" if conns > 1 else ""})</text>')
        o.append(f'<text x="{(x0 + x1) / 2}" y="{y1 + 36}" text-anchor="middle" fill="#333">clients (log scale)</text>')
        o.append(
            f'<text x="{px + 14}" y="{(y0 + y1) / 2}" text-anchor="middle" fill="#333" '
            f'transform="rotate(-90 {px + 14} {(y0 + y1) / 2})">'
            f'{esc("events/s" if case == "watch-latency" and metric == "req_per_s" else ylabel)} (log scale)</text>'
        )
        for si, (t, s) in enumerate((t, s) for t in TARGETS for s in sizes):
            # Each series a few pixels to the side, so coinciding points stay visible.
            off = (si - 1.5) * 4
            series = sorted(
                (k[3], v) for k, v in pts.items() if k[4] == t and k[0] == s and v[metric] > 0
            )
            if not series:
                continue
            dash = f' stroke-dasharray="{DASH[s]}"' if DASH[s] else ""
            if len(series) > 1:
                d = " ".join(f"{X(c) + off:.1f},{Y(v[metric]):.1f}" for c, v in series)
                o.append(f'<polyline points="{d}" fill="none" stroke="{COLOR[t]}" stroke-width="2"{dash}/>')
            for c, v in series:
                rv = [r[metric] for r in v["rounds"] if r[metric] > 0]
                if len(rv) > 1:
                    o.append(
                        f'<line x1="{X(c) + off:.1f}" y1="{Y(min(rv)):.1f}" x2="{X(c) + off:.1f}" '
                        f'y2="{Y(max(rv)):.1f}" stroke="{COLOR[t]}" stroke-width="1.5"/>'
                    )
                o.append(marker(t, s, X(c) + off, Y(v[metric]), f"{t} {SIZE_TITLE[s]} {case} {c} clients: {fmt(metric, v[metric])}"))
    o.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(o) + "\n")


def marker(t, s, x, y, tip=None):
    tt = f"<title>{esc(tip)}</title>" if tip else ""
    if s == "single":
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{COLOR[t]}">{tt}</circle>'
    return f'<rect x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8" fill="white" stroke="{COLOR[t]}" stroke-width="2">{tt}</rect>'


# ---- the report ------------------------------------------------------------------------------


def free_name(results, name):
    stem, n = name, 2
    while os.path.exists(os.path.join(results, stem + ".md")):
        stem = f"{name}-{n}"
        n += 1
    return stem


def cmd_report(workdir, results, name):
    env, floors, runs = load(workdir)
    med = medians(runs)
    os.makedirs(results, exist_ok=True)
    stem = free_name(results, name)
    md_path = os.path.join(results, stem + ".md")

    cols = [
        "target", "members", "case", "conns", "clients", "round", "total", "count", "errors",
        "req_per_s", "p50_ms", "p99_ms", "server_cpu_s", "req_per_cpu_s", "peak_rss_mib",
        "client_cpu_s", "wall_s", "json",
    ]
    with open(os.path.join(results, stem + "-runs.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in sorted(runs, key=lambda r: order_key((r["size"], r["case"], r["conns"], r["clients"])) + (r["round"], r["target"])):
            w.writerow([round(r[c], 6) if isinstance(r[c], float) else r[c] for c in cols])

    plot(med, "req_per_s", os.path.join(results, stem + "-throughput.svg"),
         "keel vs etcd 3.4: throughput", "requests/s")
    plot(med, "p99_ms", os.path.join(results, stem + "-p99.svg"),
         "keel vs etcd 3.4: p99 latency", "p99, ms")

    smoke = name.startswith("smoke")
    L = []
    title = "keel vs etcd 3.4: issue 9 comparison"
    L.append(f"# {title}{' — SMOKE RUN' if smoke else ''} ({env.get('start', '')[:10]})")
    L.append("")
    if smoke:
        L.append(
            "> **Smoke run, not the official numbers.** It only proves `perf/compare.sh` end to "
            "end (few rounds, short runs, busy machine). The official comparison is the full "
            "matrix on a quiet machine."
        )
        L.append("")
    try:
        busy = float(env.get("loadavg_before", "0").split()[0]) > 0.25 * int(env.get("nproc", "1"))
    except ValueError:
        busy = False
    L.append(
        f"Produced by `perf/compare.sh` (ROUNDS={env.get('rounds')}, SECS={env.get('secs')}, "
        f"SIZES=\"{env.get('sizes')}\", CASES=\"{env.get('cases')}\", LOADS=\"{env.get('loads')}\", "
        f"WATCH_RATE={env.get('watch_rate')}"
        + (f", ETCD_ARGS=\"{env['etcd_args']}\"" if env.get("etcd_args") else "")
        + (f", KEEL_ARGS=\"{env['keel_args']}\"" if env.get("keel_args") else "")
        + (", KEEL_SPREAD=1" if env.get("keel_spread") == "1" else "")
        + f"), {env.get('start')} to {env.get('end')} "
        f"({int(env.get('duration_s', '0')) / 60:.1f} min)."
    )
    L.append("")
    L.append("## Machine")
    L.append("")
    L.append(f"- {env.get('nproc')} CPUs ({env.get('cpu')}), {env.get('mem')}, {env.get('kernel')}")
    L.append(f"- data dirs: {env.get('fs')} (work dir `{env.get('workdir')}`)")
    L.append(
        f"- load average before: {env.get('loadavg_before')}; after: {env.get('loadavg_after')}"
        + (" — **the machine was not quiet**" if busy else "")
    )
    L.append(f"- keel commit {env.get('commit')} (branch {env.get('branch')}); etcd {env.get('etcd')}")
    fb = floor_bound(floors)
    if fb:
        per = "; ".join(
            f"{w}: round trip p50 {f['loopback_rtt_p50_s'] * 1e3:.3f} ms, {f['dsync_mode']} 4 KiB "
            f"write p50 {f['dsync_write_p50_s'] * 1e3:.3f} ms (write + fdatasync "
            f"{f['fdatasync_write_p50_s'] * 1e3:.3f} ms"
            + (
                f"; three such writers at once, each on its own file: p50 "
                f"{f['dsync3_write_p50_s'] * 1e3:.3f} ms"
                if "dsync3_write_p50_s" in f
                else ""
            )
            + (
                f"; one write after 1 ms without I/O: p50 "
                f"{f['dsync_idle_write_p50_s'] * 1e3:.3f} ms"
                if "dsync_idle_write_p50_s" in f
                else ""
            )
            + ")"
            for w, f in zip(("before", "after"), floors)
        )
        L.append(f"- floor (`perf/floor.rs`, {floors[0]['samples']} samples each): {per}")
    L.append("")
    L.append(
        "Both servers run with their defaults and the same etcd flags (--name, --data-dir, "
        "--listen/advertise client and peer URLs, --initial-cluster, --initial-cluster-state new, "
        "--initial-cluster-token), all members on 127.0.0.1, fresh data dirs and freshly started "
        "processes for every run. Load: `keel-bench` (`--target etcd`: gRPC; `--target keel`: "
        "keel's protocol), 8-byte keys, 256-byte values, every member's endpoint given (connection "
        "i goes to member i mod n). Range reads one key (`rangekey`, 256 bytes). watch-latency: "
        "one watcher per client on one key, puts at WATCH_RATE/s; its req/s is events delivered "
        "per second and its latencies are put-to-event latencies. Server CPU: utime + stime of every "
        "member over the run (/proc/PID/stat); peak RSS: the largest member's VmHWM."
    )
    L.append("")
    L.append("## Issue 9's goals (medians)")
    L.append("")
    L.append("| goal | numbers | verdict |")
    L.append("|---|---|---|")
    for g, n, v in goals(med, floors):
        L.append(f"| {g} | {n} | {v} |")
    L.append("")
    L.append("## Medians per case")
    L.append("")
    L.append(f"![throughput]({stem}-throughput.svg)")
    L.append("")
    L.append(f"![p99]({stem}-p99.svg)")
    L.append("")
    L.append("Each cell: etcd → keel (keel/etcd). Medians over the rounds.")
    L.append("")
    heads = ["req/s", "p50 ms", "p99 ms", "server CPU s", "req per server CPU-s", "peak RSS MiB"]
    L.append("| members | workload | conns/clients | " + " | ".join(heads) + " | errors (etcd, keel) |")
    L.append("|---|---|---|" + "---|" * len(heads) + "---|")
    for key in sorted({k[:4] for k in med}, key=order_key):
        size, case, conns, clients = key
        e, k = med.get(key + ("etcd",)), med.get(key + ("keel",))
        cells = []
        for m in METRICS:
            ev = e[m] if e else None
            kv = k[m] if k else None
            cells.append(f"{fmt(m, ev)} → {fmt(m, kv)} ({fratio(ratio(kv, ev) if (e and k) else float('nan'))})")
        errs = f"{e['errors'] if e else '–'}, {k['errors'] if k else '–'}"
        L.append(
            f"| {1 if size == 'single' else 3} | {CASE_TITLE.get(case, case)} | {conns}/{clients} | "
            + " | ".join(cells) + f" | {errs} |"
        )
    L.append("")
    L.append("## Every run")
    L.append("")
    L.append(f"Also in [{stem}-runs.csv]({stem}-runs.csv); keel-bench's JSON of each run is in the work dir.")
    L.append("")
    L.append("| members | workload | conns/clients | round | server | --total | req/s | p50 ms | p99 ms | server CPU s | req per CPU-s | peak RSS MiB | errors |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in sorted(runs, key=lambda r: order_key((r["size"], r["case"], r["conns"], r["clients"])) + (r["round"], r["target"])):
        L.append(
            f"| {r['members']} | {CASE_TITLE.get(r['case'], r['case'])} | {r['conns']}/{r['clients']} | "
            f"{r['round']} | {r['target']} | {r['total']} | {fmt('req_per_s', r['req_per_s'])} | "
            f"{fmt('p50_ms', r['p50_ms'])} | {fmt('p99_ms', r['p99_ms'])} | "
            f"{fmt('server_cpu_s', r['server_cpu_s'])} | {fmt('req_per_cpu_s', r['req_per_cpu_s'])} | "
            f"{fmt('peak_rss_mib', r['peak_rss_mib'])} | {r['errors']} |"
        )
    L.append("")
    with open(md_path, "w") as f:
        f.write("\n".join(L))
    print(md_path)


def main():
    a = sys.argv[1:]
    if len(a) == 2 and a[0] == "rps":
        cmd_rps(a[1])
    elif len(a) == 4 and a[0] == "report":
        cmd_report(a[1], a[2], a[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Turns bench-out/<date>/runs.tsv (written by run.sh) into summary.md and chart.svg.

Ratios are paired: ringmaster's run of repetition r against HAProxy's (or the baseline
ringmaster's, with run.sh --baseline) run of the same repetition, mode and test (they ran next to
each other, on the same core), then the median of those ratios. Only such ratios are meant to be
compared; absolute figures drift between runs.

Two costs are reported per unit of work: the proxy's own CPU time (what one core can do), and the
whole machine's busy CPU time from /proc/stat (proxy, client, server, softirq, kernel workers), so
that a proxy cannot look cheaper by moving work into the kernel or onto its peers.

    python3 benches/compare/summarize.py bench-out/<date>
"""

import math
import os
import statistics as st
import subprocess
import sys

MODES = ["passthrough", "offload", "reencrypt"]
TESTS = ["keepalive", "bulk", "handshake", "idle"]
# Figures where less is better (the chart inverts their ratio so that > 1 means ringmaster wins).
LOWER_IS_BETTER = {"idle", "keepalive p99"}
PROXY_NAMES = {"ringmaster": "ringmaster", "baseline": "baseline rm", "haproxy": "HAProxy tcp",
               "haproxy-http": "HAProxy http"}
# A core counts as saturated by what we measured above this share of its time.
BUSY = 0.85


def num(x):
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v


def load(path):
    with open(path) as f:
        header = f.readline().rstrip("\n").split("\t")
        rows = [dict(zip(header, line.rstrip("\n").split("\t"))) for line in f if line.strip()]
    for r in rows:
        for k in ("rep", "count", "errors"):
            r[k] = int(num(r[k])) if not math.isnan(num(r[k])) else 0
        for k in ("figure", "wall_s", "proxy_cpu_s", "load_cpu_s", "backend_cpu_s", "p99_ms",
                  "rss0_kib", "rss1_kib", "cpu0_busy", "cpu1_busy", "full", "resumed"):
            r[k] = num(r[k])
        r["machine_cpu_s"] = num(r.get("machine_cpu_s"))
        r["proxy_user_s"] = num(r.get("proxy_user_s"))
        r["proxy_sys_s"] = num(r.get("proxy_sys_s"))
        raw_perf, r["perf"] = r.get("perf") or "-", {}
        for item in raw_perf.split(","):
            name, _, value = item.partition("=")
            if value:
                r["perf"][name] = num(value)
        c, pc = r["count"], r["proxy_cpu_s"]
        # Work per proxy CPU-second (requests, MiB, handshakes); none for the memory test.
        r["per_cpu"] = c / pc if r["test"] != "idle" and pc > 0 and c > 0 else math.nan
        r["client_us"] = r["load_cpu_s"] * 1e6 / c if c > 0 else math.nan
        r["backend_us"] = r["backend_cpu_s"] * 1e6 / c if c > 0 else math.nan
        r["peers_us"] = r["client_us"] + r["backend_us"]
        # The whole machine's CPU per unit of work (µs per request, MiB or handshake).
        m = r["machine_cpu_s"]
        r["machine_us"] = m * 1e6 / c if r["test"] != "idle" and c > 0 and ok(m) else math.nan
        w = r["wall_s"]
        r["proxy_busy"] = pc / w if w > 0 else math.nan
        r["load_busy"] = (r["load_cpu_s"] + r["backend_cpu_s"]) / w if w > 0 else math.nan
    return rows


def ok(v):
    return v is not None and not math.isnan(v)


def fmt(v):
    if not ok(v):
        return "–"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def med_range(vals):
    vals = [v for v in vals if ok(v)]
    if not vals:
        return "–"
    if len(vals) == 1:
        return fmt(vals[0])
    return f"{fmt(st.median(vals))} ({fmt(min(vals))}–{fmt(max(vals))})"


def median(vals):
    vals = [v for v in vals if ok(v)]
    return st.median(vals) if vals else math.nan


class Runs:
    def __init__(self, rows):
        self.rows = rows

    def get(self, mode, test, proxy):
        return sorted((r for r in self.rows if (r["mode"], r["test"], r["proxy"]) == (mode, test, proxy)),
                      key=lambda r: r["rep"])

    def values(self, mode, test, proxy, key):
        return [r[key] for r in self.get(mode, test, proxy)]

    def has(self, proxy):
        return any(r["proxy"] == proxy for r in self.rows)

    def ratios(self, mode, test, other, key):
        """Paired ratios ringmaster / other, per repetition."""
        a = {r["rep"]: r[key] for r in self.get(mode, test, "ringmaster")}
        b = {r["rep"]: r[key] for r in self.get(mode, test, other)}
        return [a[k] / b[k] for k in sorted(a) if k in b and ok(a[k]) and ok(b[k]) and b[k] != 0]

    def present(self):
        seen = {(r["mode"], r["test"]) for r in self.rows}
        return [(m, t) for m in MODES for t in TESTS if (m, t) in seen]


def ratio_cells(rs):
    if not rs:
        return "–", "–"
    return ", ".join(f"{r:.2f}" for r in rs), f"**{st.median(rs):.2f}**"


def figure_table(runs, key, title, units, note):
    base = runs.has("baseline")
    head = "| mode | test | unit | ringmaster |"
    rule = "|---|---|---|---|"
    if base:
        head += " baseline rm | rm/baseline median |"
        rule += "---|---|"
    head += " HAProxy tcp | rm/HA per rep | rm/HA median | HAProxy http | rm/HA-http median |"
    rule += "---|---|---|---|---|"
    out = [f"### {title}", "", note, "", head, rule]
    lines = []
    for mode, test in runs.present():
        variants = [(test, key)]
        if key == "figure" and test == "keepalive":
            variants.append(("keepalive p99", "p99_ms"))
        for label, k in variants:
            if k in ("per_cpu", "machine_us") and test == "idle":
                continue
            unit = units(label, mode, test)
            rm = med_range(runs.values(mode, test, "ringmaster", k))
            cells = [rm]
            if base:
                cells += [med_range(runs.values(mode, test, "baseline", k)),
                          ratio_cells(runs.ratios(mode, test, "baseline", k))[1]]
            ha = med_range(runs.values(mode, test, "haproxy", k))
            per, medr = ratio_cells(runs.ratios(mode, test, "haproxy", k))
            cells += [ha, per, medr]
            hh, hhr = "", ""
            if mode == "reencrypt":
                hh = med_range(runs.values(mode, test, "haproxy-http", k))
                hhr = ratio_cells(runs.ratios(mode, test, "haproxy-http", k))[1]
            cells += [hh, hhr]
            lines.append(f"| {mode} | {label} | {unit} | " + " | ".join(cells) + " |")
    return out + lines + [""]


def unit_raw(label, mode, test):
    return {"keepalive": "req/s", "keepalive p99": "ms (less is better)", "bulk": "MiB/s",
            "handshake": "full handshakes/s", "idle": "KiB RSS per idle conn (less is better)"}[label]


def unit_cpu(label, mode, test):
    return {"keepalive": "req per CPU-s", "bulk": "MiB per CPU-s",
            "handshake": "handshakes per CPU-s"}[label]


def unit_machine(label, mode, test):
    return {"keepalive": "µs per request (less is better)", "bulk": "µs per MiB (less is better)",
            "handshake": "µs per handshake (less is better)"}[label]


def cost_table(runs):
    out = ["### Peers' CPU per request, and which side was the bottleneck", "",
           "Client = the load generator (wrk or hsload, /usr/bin/time), backend = the nginx worker "
           "(/proc). µs of CPU per request (per MiB for bulk, per connection for idle); medians. "
           "Busy = CPU used by what we measured / wall time: the proxy on CPU 0, client + nginx on "
           f"CPU 1. Bottleneck: the side above {BUSY:.0%}, else the busier one. \"Other\" is "
           "what the rest of the machine used of that CPU meanwhile (builds, other tests).", "",
           "| mode | test | proxy | client µs | backend µs | peers µs | peers rm/HA | proxy core busy | load core busy | bottleneck | other on CPU0 / CPU1 | errors |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for mode, test in runs.present():
        for proxy in ["ringmaster", "baseline", "haproxy", "haproxy-http"]:
            rows = runs.get(mode, test, proxy)
            if not rows:
                continue
            pb = median([r["proxy_busy"] for r in rows])
            lb = median([r["load_busy"] for r in rows])
            o0 = median([r["cpu0_busy"] - r["proxy_busy"] for r in rows])
            o1 = median([r["cpu1_busy"] - r["load_busy"] for r in rows])
            if test == "idle":
                neck = "n/a"
            elif ok(pb) and ok(lb):
                if pb >= BUSY and lb >= BUSY:
                    neck = "both"
                elif pb >= BUSY or lb >= BUSY:
                    neck = "proxy" if pb >= lb else "load core"
                else:
                    neck = ("proxy" if pb >= lb else "load core") + " (neither saturated)"
            else:
                neck = "–"
            pr = ""
            if proxy != "ringmaster":
                rs = runs.ratios(mode, test, proxy, "peers_us")
                pr = f"{st.median(rs):.2f} (vs {PROXY_NAMES[proxy]})" if rs else "–"
            errs = sum(r["errors"] for r in rows)
            out.append(
                f"| {mode} | {test} | {PROXY_NAMES[proxy]} | {fmt(median([r['client_us'] for r in rows]))} | "
                f"{fmt(median([r['backend_us'] for r in rows]))} | {fmt(median([r['peers_us'] for r in rows]))} | "
                f"{pr} | {pb:.0%} | {lb:.0%} | {neck} | {max(o0, 0):.0%} / {max(o1, 0):.0%} | {errs} |")
    return out + [""]


# What `run.sh --perf` counted, as (column, events summed).
PERF_COLUMNS = [
    ("syscalls", ["raw_syscalls:sys_enter"]),
    ("io_uring_enter", ["syscalls:sys_enter_io_uring_enter"]),
    ("epoll_wait", ["syscalls:sys_enter_epoll_wait"]),
    ("recv + send", ["syscalls:sys_enter_recvfrom", "syscalls:sys_enter_sendto"]),
    ("ring ops", ["io_uring:io_uring_submit_req"]),
    ("polls armed", ["io_uring:io_uring_poll_arm"]),
    ("task work", ["io_uring:io_uring_task_add"]),
    ("ctx switches", ["context-switches"]),
]


def perf_table(runs):
    """Per keep-alive request, the medians of what perf stat counted on the proxy."""
    rows_out = []
    for mode, test in runs.present():
        if test != "keepalive":
            continue
        for proxy in ["ringmaster", "baseline", "haproxy", "haproxy-http"]:
            rows = [r for r in runs.get(mode, test, proxy) if r["perf"] and r["count"] > 0]
            if not rows:
                continue
            cells = []
            for _, events in PERF_COLUMNS:
                vals = []
                for r in rows:
                    got = [r["perf"].get(e) for e in events]
                    if all(ok(g) for g in got if g is not None) and any(g is not None for g in got):
                        vals.append(sum(g for g in got if g is not None) / r["count"])
                cells.append(fmt(median(vals)) if vals else "–")
            for key in ("proxy_user_s", "proxy_sys_s"):
                cells.append(fmt(median([r[key] * 1e6 / r["count"] for r in rows])))
            rows_out.append(f"| {mode} | {PROXY_NAMES[proxy]} | " + " | ".join(cells) + " |")
    if not rows_out:
        return []
    return ["### Per keep-alive request, on the proxy (perf stat)", "",
            "Counted by `perf stat -p` on the proxy over each keep-alive run (`run.sh --perf`), "
            "divided by the requests wrk completed; medians over repetitions. Ring ops = io_uring "
            "operations submitted; polls armed = operations that found no data and waited on a "
            "poll; task work = completions run as task work; user and system µs = the proxy's CPU "
            "time per request (/proc, 10 ms ticks). – where a proxy has no such thing.",
            "",
            "| mode | proxy | " + " | ".join(c for c, _ in PERF_COLUMNS) + " | user µs | system µs |",
            "|---|---|" + "---|" * (len(PERF_COLUMNS) + 2), *rows_out, ""]


def handshake_notes(runs):
    out = []
    for mode, test in runs.present():
        if test not in ("handshake", "idle"):
            continue
        for proxy in ["ringmaster", "baseline", "haproxy", "haproxy-http"]:
            rows = runs.get(mode, test, proxy)
            if not rows:
                continue
            full = sum(r["full"] for r in rows if ok(r["full"]))
            res = sum(r["resumed"] for r in rows if ok(r["resumed"]))
            out.append(f"- {mode} {test} via {PROXY_NAMES[proxy]}: {full:,.0f} full handshakes, "
                       f"{res:,.0f} resumed ({rows[0]['tool']})")
    return out


def chart(runs, outdir):
    """Median paired ratio per CPU-second (memory: HAProxy/ringmaster) per mode x test."""
    groups = [(m, "haproxy", m) for m in MODES] + [("reencrypt", "haproxy-http", "reencrypt\\nvs HA http")]
    cols = [("keepalive", "per_cpu", "keep-alive 1 KiB, per CPU-s"),
            ("bulk", "per_cpu", "bulk 1 MiB, per CPU-s"),
            ("handshake", "per_cpu", "full handshakes, per CPU-s"),
            ("idle", "figure", "idle conn memory (HA/rm)")]
    lines = ["group\t" + "\t".join(f'"{c[2]}"' for c in cols)]
    any_value = False
    for mode, other, label in groups:
        vals = []
        for test, key, _ in cols:
            rs = runs.ratios(mode, test, other, key)
            v = st.median(rs) if rs else math.nan
            if ok(v) and test == "idle" and v > 0:
                v = 1 / v
            any_value |= ok(v)
            vals.append(f"{v:.3f}" if ok(v) else "NaN")
        lines.append(f'"{label}"\t' + "\t".join(vals))
    dat = os.path.join(outdir, "chart.dat")
    with open(dat, "w") as f:
        f.write("\n".join(lines) + "\n")
    if not any_value:
        return "no ratios to chart"
    gp = os.path.join(os.path.dirname(os.path.abspath(__file__)), "chart.gp")
    svg = os.path.join(outdir, "chart.svg")
    try:
        subprocess.run(["gnuplot", "-e", f"datafile='{dat}'; outfile='{svg}'", gp], check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        return f"gnuplot failed: {e}"
    return None


def main():
    outdir = sys.argv[1]
    runs = Runs(load(os.path.join(outdir, "runs.tsv")))
    versions = []
    vpath = os.path.join(outdir, "versions.txt")
    if os.path.exists(vpath):
        with open(vpath) as f:
            versions = [line.rstrip("\n") for line in f if line.strip()]
    md = ["# ringmaster vs HAProxy, one core each, same run", ""]
    md += [f"- {v}" for v in versions]
    md += ["- proxy on CPU 0 (`taskset -c 0`, ringmaster `workers = 1`, HAProxy `nbthread 1`); "
           "nginx backend and load generator on CPU 1; one RSA-2048 certificate everywhere",
           "- rm/HA = ringmaster / HAProxy `mode tcp` paired per repetition (runs alternated A B A B); "
           "HAProxy http = `mode http` + `http-reuse never` (reencrypt only)"
           + ("; baseline rm = the ringmaster given with `--baseline`, alternating too" if runs.has("baseline") else ""),
           ""]
    md += figure_table(runs, "figure", "Figures", unit_raw,
                       "Median (min–max) over repetitions. For idle and p99, less is better, so a "
                       "ratio below 1 favours ringmaster there.")
    md += figure_table(runs, "per_cpu", "Per proxy CPU-second", unit_cpu,
                       "The figure divided by the proxy's own CPU time (utime+stime from /proc) "
                       "over the run: the work one core can do, whichever side was the bottleneck.")
    md += figure_table(runs, "machine_us", "Whole machine's CPU per unit of work", unit_machine,
                       "Busy time of every CPU (/proc/stat: user, system, irq, softirq, kernel "
                       "threads) over the run, divided by the work done: proxy, client, nginx and "
                       "the kernel's loopback TCP together. Less is better, so a ratio below 1 "
                       "favours ringmaster. Anything else running on the machine counts too.")
    md += perf_table(runs)
    md += cost_table(runs)
    md += ["### How each test was measured", ""]
    md += ["- keepalive: `wrk -t1 -c32 --latency` GET /1k, TLS 1.3 sessions kept alive; p99 from wrk.",
           "- bulk: `wrk -t1 -c4` GET /1m; MiB/s = requests × 1 MiB / wrk's duration.",
           "- handshake: `hsload` (rustls 0.23 + aws-lc-rs, `Resumption::disabled()`, X25519, "
           "from 127.0.0.2–6): each request on a new connection with a full handshake "
           "(`Connection: close`). Passthrough handshakes end at nginx (OpenSSL), through the proxy.",
           "- idle: RSS growth of the proxy (VmRSS) between before and after `hsload --idle N` "
           "opened N connections (full handshake + one keep-alive GET /1k each, from 127.0.0.2–6), "
           "divided by N; a short warm-up load runs before the first RSS sample.",
           ""]
    md += handshake_notes(runs)
    err = chart(runs, outdir)
    md += ["", "![ratios](chart.svg)" if err is None else f"(chart: {err})", ""]
    with open(os.path.join(outdir, "summary.md"), "w") as f:
        f.write("\n".join(md))


if __name__ == "__main__":
    main()

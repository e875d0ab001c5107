#!/usr/bin/env python3
"""Benchmarks of cacerts-sync against local emulators (Python 3.11 stdlib only).

Checks the performance targets (never by tests, only here):
  * one-shot: the four Key Vault GETs run concurrently, start-up does no needless work, >=10x faster than
    the kubectl+shell way (benches/baseline.sh);
  * watch: root change in `cacerts` -> istiod restart patch within 1 s; an unchanged pass makes <=4 Key Vault
    GETs, no Kubernetes writes and no polling reads; RSS <=16 MiB and not growing.

Everything runs on 127.0.0.1: the Key Vault + Entra emulator (examples/keyvault-emulator.rs), the Kubernetes
API test server (examples/kube-test-server.rs), and, where Kubernetes requests are counted, a TLS-terminating
counting proxy in front of the test server (the standalone server has no HTTP request log).

Usage: python3 benches/bench.py [--runs N] [--baseline-runs N] [--watch-seconds S] [--quick] [--skip-build]
Exit status: non-zero only when the harness itself fails; a missed target is reported as MISS in the table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench_report import machine, report
from harness import (
    BENCHES,
    BIN,
    Emulator,
    HarnessError,
    ISTIODS,
    KubeProxy,
    KubeServer,
    LATENCY_MS,
    Procs,
    REPO,
    SAMPLE_CA,
    cpu_seconds,
    free_port,
    kube_breakdown,
    log,
    max_rss_kib,
    timed,
    timed_rss,
    vault_breakdown,
)

# ----------------------------------------------------------------------------------------------------------
# Benches


def build() -> None:
    log("building release artifacts (cargo build --release …)")
    r = subprocess.run(["cargo", "build", "--release", "--bin", "cacerts-sync", "--example", "keyvault-emulator", "--example", "kube-test-server"],
                       cwd=REPO)
    if r.returncode != 0:
        raise HarnessError("cargo build --release failed")


def sync_cmd(vault_url: str) -> list[str]:
    return [str(BIN), "sync", "--vault-url", vault_url, "--disable-challenge-resource-verification"]


def bench_oneshot(procs: Procs, work: Path, runs: int, res: dict) -> None:
    log(f"bench 1: one-shot sync, 1 first pass + {runs} unchanged passes")
    emu: Emulator = res["_emu"]
    kube = KubeServer(procs, work / "kube1")
    env = emu.env() | {"KUBECONFIG": str(kube.kubeconfig)}
    cmd = sync_cmd(emu.info["vault_url"])

    emu.clear_requests()
    rc, first, first_rss, err = timed_rss(cmd, env)
    if rc != 0:
        raise HarnessError(f"first sync pass failed ({rc}): {err[-2000:]}")
    first_counts = vault_breakdown(emu.requests())
    if "restarted" not in err:
        log("warning: first pass did not log a restart")

    walls, counts = [], []
    for _ in range(runs):
        emu.clear_requests()
        rc, wall, err = timed(cmd, env)
        if rc != 0:
            raise HarnessError(f"unchanged sync pass failed ({rc}): {err[-2000:]}")
        if "unchanged" not in err:
            raise HarnessError(f"expected an unchanged pass, got: {err[-1000:]}")
        walls.append(wall)
        counts.append(vault_breakdown(emu.requests()))
    rss = max_rss_kib(cmd, env)
    cpu = cpu_seconds(cmd, env)
    ir = callgrind_ir(cmd, env)

    # Same unchanged pass with workload identity (client assertion instead of a secret): a few runs.
    wi_env = emu.env("workload-identity") | {"KUBECONFIG": str(kube.kubeconfig)}
    wi_walls = []
    for _ in range(max(3, runs // 4)):
        rc, wall, err = timed(cmd, wi_env)
        if rc != 0:
            raise HarnessError(f"workload-identity sync pass failed ({rc}): {err[-1500:]}")
        wi_walls.append(wall)

    # Kubernetes requests of one unchanged pass, through the counting proxy (not timed).
    proxy = KubeProxy(kube.kubeconfig, work / "proxy1")
    try:
        kcounts = []
        for _ in range(3):
            proxy.reset()
            rc, _, err = timed(cmd, emu.env() | {"KUBECONFIG": str(proxy.kubeconfig)})
            if rc != 0:
                raise HarnessError(f"sync through the kube proxy failed ({rc}): {err[-1500:]}")
            time.sleep(0.05)
            kcounts.append(kube_breakdown(proxy.snapshot()))
    finally:
        proxy.close()

    # Concurrency of the four GETs: delay every authorized secret GET by L ms and look at the added wall time.
    latency_ms = LATENCY_MS
    lat_walls, lat_added = latency_rounds(emu, cmd, env, latency_ms, 5)

    res["oneshot"] = {
        "first": first, "first_rss_kib": first_rss, "first_counts": first_counts,
        "walls": walls, "rss_kib": rss, "cpu": cpu, "ir": ir, "counts": counts, "wi_walls": wi_walls, "kube_counts": kcounts,
        "latency_ms": latency_ms, "latency_walls": lat_walls, "latency_added": lat_added,
    }
    kube.stop()


def latency_rounds(emu: Emulator, cmd: list[str], env: dict, latency_ms: int, rounds: int) -> tuple[list[float], list[float]]:
    """Interleaves an undelayed and a delayed run (each authorized secret GET held latency_ms by the emulator),
    so machine noise hits both alike. Returns (delayed walls, per-round added wall)."""
    delayed, added = [], []
    for _ in range(rounds):
        rc, plain, err = timed(cmd, env, stdout=subprocess.PIPE)
        if rc != 0:
            raise HarnessError(f"{cmd[-1]} failed ({rc}): {err[-1500:]}")
        emu.clear_faults()
        emu.add_fault({"status": 0, "latency_ms": latency_ms, "method": "GET", "path_contains": "/secrets/", "count": 4})
        rc, wall, err = timed(cmd, env, stdout=subprocess.PIPE)
        if rc != 0:
            raise HarnessError(f"{cmd[-1]} with injected latency failed ({rc}): {err[-1500:]}")
        delayed.append(wall)
        added.append(wall - plain)
    emu.clear_faults()
    return delayed, added


def bench_baseline(procs: Procs, work: Path, runs: int, res: dict) -> None:
    log(f"bench 2: kubectl+shell baseline, 1 first run + {runs} unchanged runs")
    emu: Emulator = res["_emu"]
    kube = KubeServer(procs, work / "kube2")
    cache = work / "kubectl-cache"
    base_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(work / "home"),
        "KUBECACHEDIR": str(cache),
        "VAULT_URL": emu.info["vault_url"],
    } | emu.env()
    (work / "home").mkdir(exist_ok=True)
    script = ["bash", str(BENCHES / "baseline.sh")]
    env = base_env | {"KUBECONFIG": str(kube.kubeconfig)}

    rc, first, first_rss, err = timed_rss(script, env)
    if rc != 0:
        raise HarnessError(f"baseline first run failed ({rc}): {err[-2000:]}")
    check = subprocess.run(["kubectl", "get", "deployment", "-n", "istio-system", "-o",
                            "jsonpath={.items[*].metadata.annotations.baseline\\.cacerts-sync\\.io/root-sha256}"],
                           env=env, capture_output=True, text=True)
    if len(check.stdout.split()) != len(ISTIODS):
        raise HarnessError(f"baseline did not annotate the istiod deployments: {check.stdout!r} {check.stderr!r}")

    walls = []
    for _ in range(runs):
        rc, wall, err = timed(script, env, stdout=subprocess.PIPE)
        if rc != 0:
            raise HarnessError(f"baseline run failed ({rc}): {err[-2000:]}")
        walls.append(wall)
    rss = max_rss_kib(script, env)
    cpu = cpu_seconds(script, env, runs=3)

    proxy = KubeProxy(kube.kubeconfig, work / "proxy2")
    try:
        proxy.reset()
        emu.clear_requests()
        rc, _, err = timed(script, base_env | {"KUBECONFIG": str(proxy.kubeconfig)}, stdout=subprocess.PIPE)
        if rc != 0:
            raise HarnessError(f"baseline through the kube proxy failed ({rc}): {err[-1500:]}")
        time.sleep(0.05)
        kcount = kube_breakdown(proxy.snapshot())
        vcount = vault_breakdown(emu.requests())
    finally:
        proxy.close()

    lat_walls, lat_added = latency_rounds(emu, script, env, LATENCY_MS, 3)

    res["baseline"] = {"first": first, "first_rss_kib": first_rss, "walls": walls, "rss_kib": rss, "cpu": cpu,
                       "kube_count": kcount, "vault_count": vcount, "latency_walls": lat_walls,
                       "latency_added": lat_added}
    kube.stop()


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except OSError:
        return 0, ""


def passes_total(metrics_text: str) -> dict:
    out = {}
    for m in re.finditer(r'^cacerts_sync_passes_total\{result="([^"]+)"\}\s+(\d+)', metrics_text, re.M):
        out[m.group(1)] = int(m.group(2))
    return out


def vm_rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise HarnessError(f"no {field} for pid {pid}")


def parse_ts(s: str) -> float:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def watch_available() -> bool:
    r = subprocess.run([str(BIN), "watch", "--help"], capture_output=True, text=True)
    return r.returncode == 0 and "--interval" in r.stdout and "--admin-addr" in r.stdout


def make_root_b(work: Path) -> str:
    key, crt = work / "rootb.key", work / "rootb.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "3650",
                    "-subj", "/CN=Bench Root B", "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-keyout", str(key), "-out", str(crt)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return crt.read_text()


class JsonLog:
    """Reads new JSON log lines from the watch process's stderr file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = ""

    def new(self) -> list[dict]:
        with open(self.path, "r", errors="replace") as f:
            f.seek(self.offset)
            data = f.read()
            self.offset = f.tell()
        data = self.partial + data
        lines = data.split("\n")
        self.partial = lines.pop()
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
        return out


def start_watch(procs: Procs, emu: Emulator, env: dict, interval: str, logfile: Path) -> tuple[subprocess.Popen, str, Path, float]:
    """Starts `cacerts-sync watch` with JSON logs into logfile; waits (bounded) for /readyz."""
    port = free_port()
    admin = f"http://127.0.0.1:{port}"
    cmd = [str(BIN), "--log-format", "json", "watch", "--vault-url", emu.info["vault_url"], "--disable-challenge-resource-verification",
           "--interval", interval, "--jitter", "0s", "--admin-addr", f"127.0.0.1:{port}"]
    with open(logfile, "wb") as lf:
        p = procs.add(subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=lf, stdin=subprocess.DEVNULL))
    t_start = time.monotonic()
    deadline = t_start + 30
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise HarnessError(f"watch exited with {p.returncode}: {logfile.read_text()[-2000:]}")
        if http_get(admin + "/readyz", 1)[0] == 200:
            return p, admin, logfile, time.monotonic() - t_start
        time.sleep(0.05)
    raise HarnessError(f"watch did not become ready within 30 s: {logfile.read_text()[-2000:]}")


def bench_soak(procs: Procs, work: Path, seconds: int, res: dict) -> None:
    """Many passes (--interval 100ms) to tell allocator warm-up from a leak: RSS growth in the second half."""
    log(f"bench 3b: watch soak, --interval 100ms for {seconds} s")
    emu: Emulator = res["_emu"]
    kube = KubeServer(procs, work / "kube4")
    env = emu.env() | {"KUBECONFIG": str(kube.kubeconfig)}
    try:
        p, admin, _, _ = start_watch(procs, emu, env, "100ms", work / "soak.log")
        emu.clear_requests()
        m0 = sum(passes_total(http_get(admin + "/metrics")[1]).values())
        samples = []  # (seconds, passes, rss KiB)
        t0 = time.monotonic()
        for i in range(seconds + 1):
            samples.append((time.monotonic() - t0, sum(passes_total(http_get(admin + "/metrics")[1]).values()) - m0, vm_rss_kib(p.pid)))
            time.sleep(max(0.0, t0 + i + 1 - time.monotonic()))
        gets = vault_breakdown(emu.requests())
        hwm = vm_rss_kib(p.pid, "VmHWM")
        procs.stop(p)
    finally:
        kube.stop()
    res["soak"] = {"samples": samples, "vault": gets, "hwm_kib": hwm}


def bench_watch(procs: Procs, work: Path, seconds: int, trials: int, res: dict) -> None:
    log(f"bench 3: watch mode, {seconds} s steady state + {trials} root changes")
    emu: Emulator = res["_emu"]
    for name in ["root-cert", "ca-cert", "ca-key", "cert-chain"]:
        emu.put_secret(name, (SAMPLE_CA / f"{name}.pem").read_text())
    kube = KubeServer(procs, work / "kube3")
    proxy = KubeProxy(kube.kubeconfig, work / "proxy3")
    env = emu.env() | {"KUBECONFIG": str(proxy.kubeconfig)}
    try:
        p, admin, logfile, ready_after = start_watch(procs, emu, env, "1s", work / "watch.log")
        jl = JsonLog(logfile)
        rss_ready = vm_rss_kib(p.pid)

        # Warm up a few passes, then measure a window of unchanged passes.
        time.sleep(3)
        emu.clear_requests()
        proxy.reset()
        m0 = passes_total(http_get(admin + "/metrics")[1])
        jl.new()
        samples: list[tuple[float, int]] = []
        t0 = time.monotonic()
        for i in range(seconds):
            samples.append((time.monotonic() - t0, vm_rss_kib(p.pid)))
            target = t0 + i + 1
            time.sleep(max(0.0, target - time.monotonic()))
        samples.append((time.monotonic() - t0, vm_rss_kib(p.pid)))
        m1 = passes_total(http_get(admin + "/metrics")[1])
        vreq = emu.requests()
        krec = proxy.snapshot()
        lines = jl.new()
        pass_lines = [l for l in lines if str(l.get("message", "")).startswith("pass finished")]
        passes = sum(m1.values()) - sum(m0.values())
        unchanged = m1.get("unchanged", 0) - m0.get("unchanged", 0)
        durations = [l.get("duration_ms") for l in pass_lines if isinstance(l.get("duration_ms"), (int, float))]
        steady = {
            "ready_after": ready_after, "rss_ready_kib": rss_ready, "samples": samples, "passes": passes,
            "unchanged": unchanged, "metrics_before": m0, "metrics_after": m1,
            "vault": vault_breakdown(vreq), "kube": kube_breakdown(krec), "pass_duration_ms": durations,
            "read_cluster_true": sum(1 for l in pass_lines if l.get("read_cluster") is True),
        }

        # Root change -> restart latency.
        root_a = (SAMPLE_CA / "root-cert.pem").read_text()
        root_b = make_root_b(work)
        bundles = [root_a.rstrip("\n") + "\n" + root_b, root_a]
        trial_rows = []
        for t in range(trials):
            value = bundles[t % 2]
            jl.new()
            t_put = time.time()
            emu.put_secret("root-cert", value)
            seen_update, restarts = None, {}
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and len(restarts) < len(ISTIODS):
                for l in jl.new():
                    msg = str(l.get("message", ""))
                    if msg == "cacerts updated" and seen_update is None:
                        seen_update = parse_ts(l["timestamp"])
                    mm = re.match(r"deployment\.apps/(\S+) restarted", msg)
                    if mm:
                        restarts[mm.group(1)] = parse_ts(l["timestamp"])
                    if l.get("level") in ("ERROR",) or msg.startswith("pass failed"):
                        log(f"watch: {msg} {l.get('error', '')}")
                time.sleep(0.02)
            if seen_update is None or len(restarts) < len(ISTIODS):
                raise HarnessError(f"root change {t + 1}: no cacerts update/restart seen within 20 s (update={seen_update}, restarts={restarts})")
            trial_rows.append({
                "change": "A -> A+B" if t % 2 == 0 else "A+B -> A",
                "put_to_update_ms": (seen_update - t_put) * 1000,
                "update_to_restart_ms": {k: (v - seen_update) * 1000 for k, v in sorted(restarts.items())},
            })
            time.sleep(1.5)
        rss_end = vm_rss_kib(p.pid)
        steady["rss_after_changes_kib"] = rss_end
        steady["hwm_kib"] = vm_rss_kib(p.pid, "VmHWM")
        res["watch"] = {"steady": steady, "trials": trial_rows}
        procs.stop(p)
        with open(logfile) as f:
            res["watch"]["log_lines"] = sum(1 for _ in f)
    finally:
        proxy.close()
        kube.stop()


def callgrind_ir(cmd: list[str], env: dict) -> int | None:
    if not shutil.which("valgrind"):
        return None
    r = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"] + cmd, env=env, cwd=REPO,
                       capture_output=True, text=True, timeout=600)
    m = re.search(r"Collected\s*:\s*(\d+)", r.stderr) or re.search(r"I\s+refs:\s*([\d,]+)", r.stderr)
    return int(m.group(1).replace(",", "")) if m else None


def bench_micro(work: Path, runs: int, res: dict) -> None:
    log(f"bench 4: micro (start-up, inspect, dir->dir sync), {runs} runs each + callgrind")
    target = work / "dir-target"
    env = {}
    cases = [
        ("/bin/true (process spawn floor)", ["/bin/true"]),
        ("cacerts-sync --version", [str(BIN), "--version"]),
        ("cacerts-sync inspect --source dir:examples/sample-ca", [str(BIN), "inspect", "--source", "dir:examples/sample-ca"]),
        ("cacerts-sync sync --source dir:… --target dir:… (unchanged)", [str(BIN), "sync", "--source", "dir:examples/sample-ca", "--target", f"dir:{target}"]),
    ]
    subprocess.run(cases[3][1], env=env, cwd=REPO, capture_output=True)  # first write, so the timed ones are unchanged
    rows = []
    for name, cmd in cases:
        walls = []
        for _ in range(runs):
            rc, wall, err = timed(cmd, env)
            if rc != 0:
                raise HarnessError(f"{name} failed ({rc}): {err[-1000:]}")
            walls.append(wall)
        ir = None if cmd[0] == "/bin/true" else callgrind_ir(cmd, env)
        rows.append({"name": name, "walls": walls, "rss_kib": max_rss_kib(cmd, env), "ir": ir, "cpu": cpu_seconds(cmd, env)})
    res["micro"] = rows


def main() -> int:
    global BIN
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20, help="unchanged one-shot passes (default 20)")
    ap.add_argument("--baseline-runs", type=int, default=10, help="unchanged baseline runs (default 10)")
    ap.add_argument("--watch-seconds", type=int, default=60, help="steady-state window of watch mode (default 60)")
    ap.add_argument("--trials", type=int, default=4, help="root changes in watch mode (default 4, alternating A+B / A)")
    ap.add_argument("--soak-seconds", type=int, default=120, help="watch soak at --interval 100ms (default 120)")
    ap.add_argument("--micro-runs", type=int, default=30)
    ap.add_argument("--quick", action="store_true", help="few runs, short watch window (a smoke test of the harness)")
    ap.add_argument("--skip-build", action="store_true")
    ap.add_argument("--binary", help="cacerts-sync binary to measure instead of target/release/cacerts-sync (e.g. a variant build)")
    ap.add_argument("--only", default="micro,oneshot,baseline,watch", help="comma-separated subset of micro,oneshot,baseline,watch")
    ap.add_argument("--no-results", action="store_true", help="do not write benches/RESULTS.md")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.baseline_runs, args.watch_seconds, args.trials, args.micro_runs, args.soak_seconds = 4, 3, 8, 2, 5, 10
    command = "python3 benches/bench.py " + " ".join(sys.argv[1:])
    for tool in ["kubectl", "jq", "curl", "openssl"]:
        if not shutil.which(tool):
            if tool == "jq":
                subprocess.run(["apt-get", "install", "-y", "jq"], check=False)
            if not shutil.which(tool):
                raise HarnessError(f"{tool} is needed")
    if not args.skip_build:
        build()
    if args.binary:
        BIN = Path(args.binary).resolve()
    only = set(args.only.split(","))
    procs = Procs()
    res: dict = {}
    started = dt.datetime.now(dt.timezone.utc)
    work = Path(tempfile.mkdtemp(prefix="cacerts-bench-"))
    try:
        if "micro" in only:
            bench_micro(work, args.micro_runs, res)
        res["_emu"] = Emulator(procs, work / "emu")
        if "oneshot" in only:
            bench_oneshot(procs, work, args.runs, res)
        if "baseline" in only:
            bench_baseline(procs, work, args.baseline_runs, res)
        if "watch" not in only:
            pass
        elif watch_available():
            bench_watch(procs, work, args.watch_seconds, args.trials, res)
            bench_soak(procs, work, args.soak_seconds, res)
        else:
            res["watch_skipped"] = "`cacerts-sync watch --help` does not offer --interval/--admin-addr yet"
    finally:
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)
    text = report(res, args, command)
    print(text)
    if not args.no_results:
        header = (f"# cacerts-sync benchmark results\n\n- date: {started.strftime('%Y-%m-%d %H:%M UTC')}\n- machine: {machine()}\n"
                  f"- command: `{command.strip()}`\n- binary: `{BIN.relative_to(REPO) if BIN.is_relative_to(REPO) else BIN}` (release profile of Cargo.toml)\n\n"
                  "All servers are local emulators on 127.0.0.1 (see benches/README.md), so the times are CPU and process costs, "
                  "not Azure or apiserver latency.\n\n")
        # Only this script's part: the file also holds other benches' sections (fleet, validation, soak).
        results = BENCHES / "RESULTS.md"
        old = results.read_text() if results.exists() else ""
        begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
        ours = f"{begin}\n{header}{text.rstrip()}\n{end}"
        if begin in old and end in old:
            new = old[: old.index(begin)] + ours + old[old.index(end) + len(end) :]
        else:
            new = ours + "\n" + old
        results.write_text(new)
        log(f"wrote {BENCHES / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except HarnessError as e:
        log(f"harness failure: {e}")
        sys.exit(1)

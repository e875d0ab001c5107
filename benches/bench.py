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
import asyncio
import base64
import datetime as dt
import json
import os
import re
import select
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCHES = REPO / "benches"
BIN = REPO / "target/release/cacerts-sync"
EMULATOR = REPO / "target/release/examples/keyvault-emulator"
KUBE_SERVER = REPO / "target/release/examples/kube-test-server"
SAMPLE_CA = REPO / "examples/sample-ca"
ISTIODS = ["istiod", "istiod-canary"]
MIB = 1024 * 1024
# Delay the emulator adds to each authorized secret GET in the concurrency check.
LATENCY_MS = 200
# An unchanged one-shot Key Vault pass may cost this many times the instructions of the same pass from a directory:
# the extra is six TLS 1.3 handshakes (4 vault connections, Entra, Kubernetes), HTTP and JSON. Anything far above
# that is start-up work the pass does not need (see README.md).
NETWORK_IR_FACTOR = 5


class HarnessError(Exception):
    """The harness itself failed (not a missed target)."""


# ----------------------------------------------------------------------------------------------------------
# Small helpers


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pct(values: list[float], p: float) -> float:
    """Percentile by linear interpolation (p in 0..100)."""
    s = sorted(values)
    if not s:
        return float("nan")
    k = (len(s) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summary(values: list[float]) -> dict:
    return {"n": len(values), "min": min(values), "median": statistics.median(values), "p90": pct(values, 90), "max": max(values)}


def table(headers: list[str], rows: list[list]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), sep] + [line(r) for r in cells[1:]])


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_json_line(proc: subprocess.Popen, what: str, timeout: float = 60.0) -> dict:
    """Reads the one JSON line a runner prints once it is ready (bounded wait)."""
    deadline = time.monotonic() + timeout
    buf = b""
    fd = proc.stdout.fileno()
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise HarnessError(f"{what} exited early with {proc.returncode}")
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            chunk = os.read(fd, 65536)
            if not chunk:
                continue
            buf += chunk
            if b"\n" in buf:
                return json.loads(buf.split(b"\n", 1)[0])
    raise HarnessError(f"{what} did not print its JSON line within {timeout:.0f} s")


class Procs:
    """Child processes to stop on exit (each by its own pid)."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def add(self, p: subprocess.Popen) -> subprocess.Popen:
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen, timeout: float = 5.0) -> None:
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
            except ProcessLookupError:
                pass
        if p in self.procs:
            self.procs.remove(p)

    def stop_all(self) -> None:
        for p in list(reversed(self.procs)):
            try:
                self.stop(p)
            except Exception as e:  # keep cleaning up the others
                log(f"failed to stop pid {p.pid}: {e}")


def timed(cmd: list[str], env: dict, cwd: Path = REPO, stdout=subprocess.DEVNULL) -> tuple[int, float, str]:
    """Runs cmd to completion; returns (exit code, wall seconds, stderr text)."""
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, cwd=cwd, stdout=stdout, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    return p.returncode, wall, p.stderr.decode(errors="replace")


def timed_rss(cmd: list[str], env: dict, cwd: Path = REPO) -> tuple[int, float, int, str]:
    """Like timed(), under GNU time: also returns the peak RSS (KiB). Wall time includes time's own fork (<1 ms)."""
    with tempfile.NamedTemporaryFile(prefix="rss-") as out:
        rc, wall, err = timed(["/usr/bin/time", "-f", "%M", "-o", out.name] + cmd, env, cwd)
        text = Path(out.name).read_text().split()
    return rc, wall, int(text[-1]) if text else 0, err


def cpu_seconds(cmd: list[str], env: dict, runs: int = 5, cwd: Path = REPO) -> float:
    """Median user+sys CPU time of the command (os.wait4 rusage; unlike ru_maxrss it is not skewed by the fork)."""
    values = []
    for _ in range(runs):
        p = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode != 0:
            raise HarnessError(f"{cmd[0]} failed ({p.returncode}) while measuring CPU time")
        values.append(usage.ru_utime + usage.ru_stime)
    return statistics.median(values)


def max_rss_kib(cmd: list[str], env: dict, runs: int = 3, cwd: Path = REPO) -> int:
    """Peak RSS (KiB) over a few runs, via GNU time (%M = ru_maxrss of the command and the processes it waited for).

    Not measured with os.wait4 from here: a child forked (or vforked) from this Python process inherits the
    parent's RSS high-water mark across exec, so every command would look at least as big as the harness."""
    peak = 0
    with tempfile.NamedTemporaryFile(prefix="rss-") as out:
        for _ in range(runs):
            r = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", out.name] + cmd, env=env, cwd=cwd,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
            if r.returncode != 0:
                raise HarnessError(f"{cmd[0]} failed under /usr/bin/time ({r.returncode})")
            peak = max(peak, int(Path(out.name).read_text().split()[-1]))
    return peak


# ----------------------------------------------------------------------------------------------------------
# The emulators


class Emulator:
    """The Key Vault + Entra emulator, driven through its HTTP control surface."""

    def __init__(self, procs: Procs, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.proc = procs.add(subprocess.Popen([str(EMULATOR), "--state-dir", str(state_dir), "--seed-dir", str(SAMPLE_CA)],
                                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL))
        self.info = read_json_line(self.proc, "keyvault-emulator")
        self.ctx = ssl.create_default_context(cafile=self.info["ca_cert_file"])
        self.base = self.info["vault_url"].rstrip("/")

    def _call(self, method: str, path: str, body: bytes | None = None) -> object:
        req = urllib.request.Request(self.base + path, data=body, method=method)
        with urllib.request.urlopen(req, context=self.ctx, timeout=10) as r:
            return json.loads(r.read() or b"null")

    def put_secret(self, name: str, value: str) -> str:
        return self._call("PUT", f"/_emulator/secrets/{name}", value.encode())["version"]

    def requests(self) -> list[dict]:
        return self._call("GET", "/_emulator/requests")

    def clear_requests(self) -> None:
        self._call("DELETE", "/_emulator/requests")

    def count(self, method: str, prefix: str) -> int:
        return self._call("GET", f"/_emulator/requests/count?method={method}&path_prefix={prefix}")["count"]

    def add_fault(self, spec: dict) -> None:
        self._call("POST", "/_emulator/faults", json.dumps(spec).encode())

    def clear_faults(self) -> None:
        self._call("DELETE", "/_emulator/faults")

    def env(self, credential: str = "client-secret") -> dict:
        """Only what a user sets (no PATH, HOME, …)."""
        e = {
            "SSL_CERT_FILE": self.info["ca_cert_file"],
            "AZURE_AUTHORITY_HOST": self.info["authority_host"],
            "AZURE_TENANT_ID": self.info["tenant_id"],
            "AZURE_CLIENT_ID": self.info["client_id"],
            "NO_PROXY": "127.0.0.1,localhost",
        }
        if credential == "client-secret":
            e["AZURE_CLIENT_SECRET"] = self.info["client_secret"]
        elif credential == "workload-identity":
            e["AZURE_FEDERATED_TOKEN_FILE"] = self.info["federated_token_file"]
        else:
            raise ValueError(credential)
        return e


def vault_breakdown(reqs: list[dict]) -> dict:
    """Counts emulator requests: vault GETs with a token, 401 challenges, token requests."""
    out = {"vault_get_authorized": 0, "vault_401": 0, "vault_other": 0, "sts": 0, "mi": 0}
    for r in reqs:
        svc = r.get("service")
        if svc == "vault":
            if r.get("status") == 401:
                out["vault_401"] += 1
            elif r.get("method") == "GET" and r.get("authorized"):
                out["vault_get_authorized"] += 1
            else:
                out["vault_other"] += 1
        elif svc == "sts":
            out["sts"] += 1
        else:
            out["mi"] += 1
    return out


class KubeServer:
    def __init__(self, procs: Procs, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.kubeconfig = state_dir / "kubeconfig"
        cmd = [str(KUBE_SERVER), "--kubeconfig-out", str(self.kubeconfig)]
        for name in ISTIODS:
            cmd += ["--seed-istiod", name]
        self.proc = procs.add(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL))
        self.info = read_json_line(self.proc, "kube-test-server")
        self.procs = procs

    def stop(self) -> None:
        self.procs.stop(self.proc)


# ----------------------------------------------------------------------------------------------------------
# Counting proxy for the Kubernetes API (TLS terminated with a bench-only CA)


def kubeconfig_fields(path: Path) -> tuple[str, bytes, str]:
    """(server, CA PEM, token) from the test server's kubeconfig (simple YAML, read line by line)."""
    text = path.read_text()
    server = re.search(r"server:\s*(\S+)", text).group(1)
    ca = base64.b64decode(re.search(r"certificate-authority-data:\s*(\S+)", text).group(1))
    token = re.search(r"token:\s*(\S+)", text).group(1)
    return server.strip("'\""), ca, token.strip("'\"")


class KubeProxy:
    """Forwards TLS connections to the Kubernetes test server and records each request line.

    Runs an asyncio loop in a thread. A request is parsed from the client->server byte stream (request line,
    headers, Content-Length or chunked body); responses, including watch streams, are copied untouched."""

    def __init__(self, upstream_kubeconfig: Path, work: Path) -> None:
        server, ca_pem, token = kubeconfig_fields(upstream_kubeconfig)
        m = re.match(r"https://([^:/]+):(\d+)", server)
        self.up_host, self.up_port = m.group(1), int(m.group(2))
        work.mkdir(parents=True, exist_ok=True)
        (work / "upstream-ca.pem").write_bytes(ca_pem)
        self.up_ctx = ssl.create_default_context(cafile=str(work / "upstream-ca.pem"))
        ca_crt, leaf_crt, leaf_key = self._make_cert(work)
        self.srv_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.srv_ctx.load_cert_chain(leaf_crt, leaf_key)
        self.port = free_port()
        self.kubeconfig = work / "kubeconfig"
        ca_b64 = base64.b64encode(Path(ca_crt).read_bytes()).decode()
        self.kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: bench\n"
            f"clusters:\n- name: bench\n  cluster:\n    server: https://127.0.0.1:{self.port}\n    certificate-authority-data: {ca_b64}\n"
            f"users:\n- name: bench\n  user:\n    token: {token}\n"
            "contexts:\n- name: bench\n  context:\n    cluster: bench\n    user: bench\n    namespace: istio-system\n")
        self.records: list[tuple[float, str, str]] = []
        self.lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self.ready.wait(10):
            raise HarnessError("kube proxy did not start")

    @staticmethod
    def _make_cert(work: Path) -> tuple[str, str, str]:
        ca_key, ca_crt = work / "proxy-ca.key", work / "proxy-ca.crt"
        key, csr, crt = work / "proxy.key", work / "proxy.csr", work / "proxy.crt"
        q = dict(check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                        "-subj", "/CN=bench proxy CA", "-keyout", str(ca_key), "-out", str(ca_crt),
                        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"], **q)
        subprocess.run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(csr)], **q)
        ext = work / "proxy.ext"
        ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
                       "keyUsage=critical,digitalSignature\n")
        subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key), "-CAcreateserial",
                        "-days", "2", "-extfile", str(ext), "-out", str(crt)], **q)
        return str(ca_crt), str(crt), str(key)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port, ssl=self.srv_ctx))
        self.ready.set()
        self.loop.run_forever()

    async def _handle(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        try:
            ur, uw = await asyncio.open_connection(self.up_host, self.up_port, ssl=self.up_ctx, server_hostname=self.up_host)
        except Exception:
            cw.close()
            return

        async def pump_down() -> None:
            try:
                while data := await ur.read(65536):
                    cw.write(data)
                    await cw.drain()
            except Exception:
                pass
            finally:
                cw.close()

        async def pump_up() -> None:
            try:
                while True:
                    line = await cr.readline()
                    if not line:
                        break
                    uw.write(line)
                    parts = line.decode("latin-1").split()
                    headers = {}
                    while True:
                        h = await cr.readline()
                        uw.write(h)
                        if h in (b"\r\n", b"\n", b""):
                            break
                        k, _, v = h.decode("latin-1").partition(":")
                        headers[k.strip().lower()] = v.strip()
                    if len(parts) >= 2:
                        with self.lock:
                            self.records.append((time.time(), parts[0], parts[1]))
                    if "content-length" in headers:
                        n = int(headers["content-length"])
                        if n:
                            uw.write(await cr.readexactly(n))
                    elif "chunked" in headers.get("transfer-encoding", ""):
                        while True:
                            size_line = await cr.readline()
                            uw.write(size_line)
                            size = int(size_line.split(b";")[0].strip() or b"0", 16)
                            uw.write(await cr.readexactly(size + 2))
                            if size == 0:
                                break
                    await uw.drain()
            except Exception:
                pass
            finally:
                uw.close()

        await asyncio.gather(pump_up(), pump_down())

    def reset(self) -> None:
        with self.lock:
            self.records.clear()

    def snapshot(self) -> list[tuple[float, str, str]]:
        with self.lock:
            return list(self.records)

    def close(self) -> None:
        def stop() -> None:
            self.server.close()
            self.loop.stop()
        self.loop.call_soon_threadsafe(stop)
        self.thread.join(5)


def kube_breakdown(records: list[tuple[float, str, str]]) -> dict:
    """writes = non-GET; watches = GET with watch=; polling reads = other GETs (discovery counted apart)."""
    out = {"total": len(records), "writes": 0, "polling_reads": 0, "watches": 0, "discovery": 0, "write_paths": [], "read_paths": []}
    for _, method, path in records:
        if method != "GET":
            out["writes"] += 1
            out["write_paths"].append(f"{method} {path.split('?')[0]}")
        elif re.search(r"[?&]watch=(1|true)", path):
            out["watches"] += 1
        elif re.match(r"^/(api|apis|version|openapi)(/[^/]+(/[^/]+)?)?/?(\?|$)", path) and "/namespaces/" not in path:
            out["discovery"] += 1
        else:
            out["polling_reads"] += 1
            out["read_paths"].append(path.split("?")[0])
    return out


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


def slope(xs: list[float], ys: list[float]) -> float:
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0


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


# ----------------------------------------------------------------------------------------------------------
# Report


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


def report(res: dict, args: argparse.Namespace, command: str) -> str:
    out = []
    o = res.get("oneshot")
    b = res.get("baseline")
    targets = []
    if o:
        s = summary(o["walls"])
        rows = [["cacerts-sync sync (unchanged, service principal)", s["n"], ms(s["min"]), ms(s["median"]), ms(s["p90"]), "1.0x"]]
        wi = summary(o["wi_walls"])
        rows.append(["cacerts-sync sync (unchanged, workload identity)", wi["n"], ms(wi["min"]), ms(wi["median"]), ms(wi["p90"]),
                     f"{wi['median'] / s['median']:.2f}x"])
        if b:
            bs = summary(b["walls"])
            rows.append(["kubectl + shell (benches/baseline.sh, unchanged)", bs["n"], ms(bs["min"]), ms(bs["median"]), ms(bs["p90"]),
                         f"{bs['median'] / s['median']:.1f}x"])
        out.append("## One-shot pass: cacerts-sync vs kubectl + shell\n")
        out.append(table(["tool", "runs", "min", "median", "p90", "ratio vs cacerts-sync"], rows))
        out.append(f"\nCPU time (user+sys, all processes, median): cacerts-sync {ms(o['cpu'])}"
                   + (f", baseline.sh {ms(b['cpu'])} ({b['cpu'] / o['cpu']:.1f}x)" if b else "") + ".")
        first_rows = [["cacerts-sync sync (creates cacerts, restarts istiod)", ms(o["first"]), f"{o['first_rss_kib'] / 1024:.1f} MiB"]]
        if b:
            first_rows.append(["baseline.sh (creates cacerts, restarts istiod)", ms(b["first"]), f"{b['first_rss_kib'] / 1024:.1f} MiB (largest process)"])
        out.append("\nFirst pass (one run each) and peak RSS:\n")
        out.append(table(["run", "wall", "max RSS"], first_rows))
        out.append(f"\nOne-shot unchanged pass peak RSS (GNU time %M, max of 3 runs): {o['rss_kib'] / 1024:.1f} MiB"
                   + (f"; baseline.sh largest process (kubectl): {b['rss_kib'] / 1024:.1f} MiB" if b else ""))

        c = o["counts"]
        agg = lambda k: sorted(set(x[k] for x in c))
        out.append("\nRequests per unchanged one-shot pass (emulator log; every run is a fresh process, so no cached token):\n")
        req_rows = [["cacerts-sync (first pass)", o["first_counts"]["vault_get_authorized"], o["first_counts"]["vault_401"],
                     o["first_counts"]["sts"], "-"]]
        kc = o["kube_counts"][0]
        req_rows.append(["cacerts-sync (unchanged)", "/".join(map(str, agg("vault_get_authorized"))), "/".join(map(str, agg("vault_401"))),
                         "/".join(map(str, agg("sts"))),
                         f"{kc['total']} ({kc['writes']} writes, {kc['polling_reads']} reads, {kc['discovery']} discovery)"])
        if b:
            bk, bv = b["kube_count"], b["vault_count"]
            req_rows.append(["baseline.sh (unchanged)", bv["vault_get_authorized"], bv["vault_401"], bv["sts"],
                             f"{bk['total']} ({bk['writes']} writes, {bk['polling_reads']} reads, {bk['discovery']} discovery)"])
        out.append(table(["run", "Key Vault GETs (authorized)", "401 challenges", "token requests", "Kubernetes requests"], req_rows))
        if kc["read_paths"] or kc["write_paths"]:
            out.append(f"\ncacerts-sync one-shot Kubernetes requests: reads {kc['read_paths']}, writes {kc['write_paths']}")

        lw = summary(o["latency_walls"])
        added = statistics.median(o["latency_added"])
        L = o["latency_ms"] / 1000
        conc = added < 2 * L
        lat_rows = [["cacerts-sync", len(o["latency_added"]), ms(lw["median"]), ms(added), f"{4 * L / added:.1f}" if added > 0 else "inf"]]
        if b:
            blw = statistics.median(b["latency_walls"])
            badd = statistics.median(b["latency_added"])
            lat_rows.append(["baseline.sh", len(b["latency_added"]), ms(blw), ms(badd), f"{4 * L / badd:.1f}" if badd > 0 else "inf"])
        out.append(f"\nConcurrency of the four GETs: every authorized secret GET delayed by {o['latency_ms']} ms (emulator fault); "
                   f"serial GETs would add {4 * o['latency_ms']} ms, concurrent ones {o['latency_ms']} ms:\n")
        out.append(table(["tool", "rounds", "median wall (delayed)", "median added (vs undelayed run of the same round)",
                          "effective parallelism (4 x delay / added)"], lat_rows))
        targets.append(["one-shot: the four Key Vault GETs run concurrently", f"added {ms(added)} for 4 x {o['latency_ms']} ms", verdict(conc)])
        if b:
            ratio = statistics.median(b["walls"]) / s["median"]
            ratio_min = min(b["walls"]) / s["min"]
            targets.append(["one-shot: >=10x faster than kubectl + shell (median)", f"{ratio:.1f}x (min vs min: {ratio_min:.1f}x)", verdict(ratio >= 10)])

    m = res.get("micro")
    if m:
        out.append("\n## Start-up and per-pass work\n")
        rows = []
        entries = list(m)
        if o:
            entries.append({"name": "cacerts-sync sync --vault-url … (unchanged; emulators, 6 TLS handshakes)", "walls": o["walls"],
                            "rss_kib": o["rss_kib"], "ir": o["ir"], "cpu": o["cpu"]})
        for r in entries:
            s = summary(r["walls"])
            rows.append([r["name"], s["n"], ms(s["min"]), ms(s["median"]), ms(s["p90"]), ms(r["cpu"]), f"{r['rss_kib'] / 1024:.1f} MiB",
                         f"{r['ir'] / 1e6:.1f} M" if r["ir"] else "-"])
        out.append(table(["command", "runs", "min", "median", "p90", "CPU (user+sys, median)", "max RSS", "instructions (callgrind)"], rows))
        ver = statistics.median(m[1]["walls"])
        if o and o["ir"] and m[3]["ir"]:
            extra = o["ir"] / m[3]["ir"]
            out.append(f"\n`--version` median {ms(ver)}. The unchanged Key Vault pass executes {extra:.1f}x the instructions of the "
                       "same pass from a directory (same parsing and validation; the difference is the HTTP/TLS clients and start-up).")
            targets.append(["one-shot: start-up does no needless work (Key Vault pass <= " + f"{NETWORK_IR_FACTOR}x the instructions of the dir pass)",
                            f"{o['ir'] / 1e6:.0f} M vs {m[3]['ir'] / 1e6:.0f} M instr ({extra:.1f}x); --version {ms(ver)}",
                            verdict(extra <= NETWORK_IR_FACTOR)])
        else:
            targets.append(["one-shot: start-up does no needless work", f"--version {ms(ver)}; no callgrind counts", "info"])

    w = res.get("watch")
    if w:
        st = w["steady"]
        rss = [kib for _, kib in st["samples"]]
        xs = [t for t, _ in st["samples"]]
        sl = slope(xs, rss)  # KiB per second
        passes = max(st["passes"], 1)
        gets_per_pass = st["vault"]["vault_get_authorized"] / passes
        other_vault = st["vault"]["vault_401"] + st["vault"]["vault_other"] + st["vault"]["sts"]
        out.append("\n## Watch mode (--interval 1s --jitter 0s)\n")
        rows = [
            ["ready (/readyz 200) after start", ms(st["ready_after"])],
            ["passes in the window (metrics delta)", f"{st['passes']} ({st['unchanged']} unchanged) in {xs[-1]:.0f} s"],
            ["cacerts_sync_passes_total at the end", json.dumps(st["metrics_after"])],
            ["Key Vault GETs (authorized) per pass", f"{gets_per_pass:.2f} ({st['vault']['vault_get_authorized']} total)"],
            ["Key Vault 401s + token requests in the window", str(other_vault)],
            ["Kubernetes writes in the window", f"{st['kube']['writes']} {st['kube']['write_paths'][:5]}"],
            ["Kubernetes polling reads in the window", f"{st['kube']['polling_reads']} {sorted(set(st['kube']['read_paths']))[:5]}"],
            ["Kubernetes watch requests (re-)opened in the window", str(st["kube"]["watches"])],
            ["passes logging read_cluster=true", str(st["read_cluster_true"])],
            ["pass duration (log duration_ms) min/median/max",
             "/".join(f"{v:.0f}" for v in (min(st["pass_duration_ms"]), statistics.median(st["pass_duration_ms"]), max(st["pass_duration_ms"]))) + " ms"
             if st["pass_duration_ms"] else "-"],
            ["VmRSS at ready", f"{st['rss_ready_kib'] / 1024:.2f} MiB"],
            ["VmRSS window start / min / max / end", " / ".join(f"{v / 1024:.2f}" for v in (rss[0], min(rss), max(rss), rss[-1])) + " MiB"],
            ["VmRSS slope (least squares)", f"{sl:+.3f} KiB/s ({sl * 60:+.1f} KiB/min)"],
            ["VmRSS after the root changes", f"{st['rss_after_changes_kib'] / 1024:.2f} MiB"],
            ["VmHWM (peak RSS of the whole run)", f"{st['hwm_kib'] / 1024:.2f} MiB"],
        ]
        out.append(table(["measure", "value"], rows))
        trial_rows = []
        worst = 0.0
        for i, t in enumerate(w["trials"], 1):
            for name, d in t["update_to_restart_ms"].items():
                trial_rows.append([i, t["change"], f"{t['put_to_update_ms']:.0f} ms", name, f"{d:.1f} ms"])
                worst = max(worst, d)
        out.append("\nRoot change -> istiod restart (log timestamps of `cacerts updated` and `deployment.apps/<name> restarted`; "
                   "PUT -> update includes waiting for the next 1 s pass):\n")
        out.append(table(["trial", "change", "PUT -> cacerts updated", "deployment", "cacerts updated -> restart patched"], trial_rows))
        targets.append(["watch: root change -> restart patch within 1 s of landing in cacerts", f"worst {worst:.1f} ms", verdict(worst <= 1000)])
        targets.append(["watch: unchanged pass makes <=4 Key Vault GETs", f"{gets_per_pass:.2f} per pass (+{other_vault} 401/token)",
                        verdict(gets_per_pass <= 4 and st["passes"] > 0)])
        targets.append(["watch: unchanged pass makes no Kubernetes writes", str(st["kube"]["writes"]), verdict(st["kube"]["writes"] == 0)])
        targets.append(["watch: unchanged pass makes no polling reads", str(st["kube"]["polling_reads"]), verdict(st["kube"]["polling_reads"] == 0)])
        all_rss = rss + [st["rss_after_changes_kib"], st["hwm_kib"]]
        targets.append(["watch: RSS <= 16 MiB", f"max {max(all_rss) / 1024:.2f} MiB", verdict(max(all_rss) <= 16 * 1024)])
        sk = res.get("soak")
        if sk:
            smp = sk["samples"]
            mid = smp[len(smp) // 2]
            end = smp[-1]
            half_passes = max(end[1] - mid[1], 1)
            per_pass = (end[2] - mid[2]) / half_passes
            out.append(f"\nSoak (--interval 100ms, {end[0]:.0f} s, {end[1]} passes): VmRSS first / middle / end / max = "
                       f"{smp[0][2] / 1024:.2f} / {mid[2] / 1024:.2f} / {end[2] / 1024:.2f} / {max(x[2] for x in smp) / 1024:.2f} MiB, "
                       f"VmHWM {sk['hwm_kib'] / 1024:.2f} MiB; growth in the second half {end[2] - mid[2]:+d} KiB over {half_passes} passes "
                       f"({per_pass * 1024:+.1f} bytes/pass); Key Vault GETs per pass {sk['vault']['vault_get_authorized'] / max(end[1], 1):.2f}.\n")
            out.append(table(["t (s)", "passes", "VmRSS (KiB)"], [[f"{t:.0f}", n, k] for t, n, k in smp[:: max(1, len(smp) // 12)]]))
            targets.append(["watch: RSS does not grow (soak, 2nd half: <= 100 bytes/pass)", f"{per_pass * 1024:+.1f} bytes/pass over {half_passes} passes",
                            verdict(per_pass * 1024 <= 100)])
            all_rss += [max(x[2] for x in smp), sk["hwm_kib"]]
            targets[-2] = ["watch: RSS <= 16 MiB", f"max {max(all_rss) / 1024:.2f} MiB", verdict(max(all_rss) <= 16 * 1024)]
        else:
            targets.append(["watch: RSS does not grow (60 s window slope, no soak run)", f"{sl:+.3f} KiB/s", verdict(sl <= 0.5)])
    elif res.get("watch_skipped"):
        out.append(f"\n## Watch mode\n\nskipped: {res['watch_skipped']}")

    head = ["## Targets\n", table(["target", "measured", "result"], targets), ""]
    return "\n".join(head + out) + "\n"


def machine() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", load average at the end %.2f %.2f %.2f" % os.getloadavg()
    return f"nproc {os.cpu_count()}, {os.uname().machine}, {cpu}, kernel {os.uname().release}{load}"


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

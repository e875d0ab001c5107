"""The harness of benches/bench.py: local servers (Key Vault + Entra emulator, Kubernetes API test server, a
counting proxy in front of it), process bookkeeping, timing and small statistics. Python 3.11 stdlib only."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import select
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

def slope(xs: list[float], ys: list[float]) -> float:
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0

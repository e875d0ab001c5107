#!/usr/bin/env python3
"""Validation speed (issue 10): one validation of a 3-root bundle with an RSA-4096 root, and the randomized
differential run per 1,000 cases (generation, Go oracle, cacerts-sync each). Appends nothing: prints a
Markdown section for benches/RESULTS.md.

    python3 benches/validation.py [--profile dev|release] [--count 1000] [--repeat 200]

Needs what tests/run.sh installs: python3 with `cryptography`, openssl, and the Go oracle
(target/oracle/istiod-verify or $CACERTS_SYNC_ORACLE).
"""

import argparse
import json
import os
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(args, **kw):
    return subprocess.run(args, check=True, capture_output=True, text=True, cwd=ROOT, **kw).stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="dev", choices=["dev", "release"])
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=200)
    a = ap.parse_args()
    flag = ["--release"] if a.profile == "release" else []
    run(["cargo", "build", "--example", "validate-bench", *flag])
    exe = os.path.join(ROOT, "target", "release" if a.profile == "release" else "debug", "examples", "validate-bench")
    oracle = os.environ.get("CACERTS_SYNC_ORACLE", os.path.join(ROOT, "target/oracle/istiod-verify"))
    gen = os.path.join(ROOT, "tests/oracle/gen_cases.py")
    with tempfile.TemporaryDirectory() as tmp:
        corpus = run(["python3", gen, "corpus", os.path.join(tmp, "corpus")]).split()
        case = next(d for d in corpus if d.endswith("rsa4096-root-three-roots"))
        one = json.loads(run([exe, "repeat", str(a.repeat), case]))

        t = time.monotonic()
        dirs = run(["python3", gen, "random", os.path.join(tmp, "random"), "10", str(a.count)]).split()
        gen_ms = (time.monotonic() - t) * 1e3
        t = time.monotonic()
        subprocess.run([oracle], input="\n".join(dirs) + "\n", check=True, capture_output=True, text=True)
        go_ms = (time.monotonic() - t) * 1e3
        tool = json.loads(run([exe, "batch", *dirs]))
    per = lambda ms: ms * 1000 / a.count
    print(f"## Validation (issue 10)\n")
    print(f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, nproc {os.cpu_count()}, load {os.getloadavg()[0]:.2f}")
    print(f"- command: `python3 benches/validation.py --profile {a.profile} --count {a.count} --repeat {a.repeat}`")
    print(f"- build: `{a.profile}` profile of `examples/validate-bench.rs`\n")
    print("| measurement | result |")
    print("|---|---|")
    print(f"| one validation, 3-root bundle with an RSA-4096 root (`rsa4096-root-three-roots`, verdict {one['verdict']}) | {one['us_per_validation']} us |")
    print(f"| randomized differential run, per 1,000 cases: cacerts-sync validation | {tool['ms_per_1000']} ms |")
    print(f"| randomized differential run, per 1,000 cases: Go oracle (one process) | {per(go_ms):.0f} ms |")
    print(f"| randomized differential run, per 1,000 cases: generating the material (Python) | {per(gen_ms):.0f} ms |")


if __name__ == "__main__":
    main()

"""The report of benches/bench.py: the results table (markdown) and the machine line."""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

from harness import NETWORK_IR_FACTOR, ms, slope, summary, table

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



"""The Grafana dashboard (helm/cacerts-sync/dashboards/cacerts-sync.json): every panel query is valid PromQL for
the real promtool (checked as recording rules), panel ids are unique, every query goes through the datasource
variable, the panels the issue asks for exist, and the chart ships the same file as a sidecar ConfigMap.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

import render

DASHBOARD_FILE = render.CHART / "dashboards" / "cacerts-sync.json"
DASHBOARD = json.loads(DASHBOARD_FILE.read_text())
WATCH = {"mode": "watch", "vaultUrl": "https://mesh.vault.azure.net"}

# What Grafana substitutes before a query reaches Prometheus: a range for its interval macros, a regex that
# matches everything for the multi-value variables (their allValue).
MACROS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1d", "$namespace": ".*", "$job": ".*"}


def all_panels(panels: list[dict[str, Any]] | None = None) -> Iterator[dict[str, Any]]:
    for panel in DASHBOARD["panels"] if panels is None else panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def queries() -> list[tuple[str, str]]:
    """(record name, PromQL with Grafana's macros substituted) for every panel target."""
    out = []
    for panel in all_panels():
        for target in panel.get("targets", []):
            expr = target["expr"]
            for macro, value in MACROS.items():
                expr = expr.replace(macro, value)
            out.append((f"dashboard:panel_{panel['id']}_{target['refId']}", expr))
    return out


def promtool_check(rules: list[tuple[str, str]], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    assert exe, "promtool is required (apt-get install --no-install-recommends prometheus; tests/run.sh does)"
    path = tmp_path / "dashboard-queries.yaml"
    group = {"name": "dashboard", "rules": [{"record": name, "expr": expr} for name, expr in rules]}
    path.write_text(yaml.safe_dump({"groups": [group]}, sort_keys=False))
    return subprocess.run([exe, "check", "rules", str(path)], capture_output=True, text=True, check=False)


def test_every_panel_query_is_valid_promql(tmp_path: Path) -> None:
    found = queries()
    assert len(found) >= 12
    result = promtool_check(found, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(found)} rules found" in result.stdout
    assert not any("$" in expr for _, expr in found), "a Grafana variable is left unsubstituted"


def test_the_syntax_check_catches_a_broken_query(tmp_path: Path) -> None:
    result = promtool_check([("dashboard:broken", "sum(rate(cacerts_sync_passes_total[5m])")], tmp_path)
    assert result.returncode != 0


def test_panel_ids_are_unique() -> None:
    ids = [p["id"] for p in all_panels()]
    assert len(ids) == len(set(ids)), ids


def test_every_query_uses_the_datasource_variable() -> None:
    variables = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for panel in all_panels():
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
    for name in ("namespace", "job"):
        assert variables[name]["datasource"]["uid"] == "${datasource}"
        assert variables[name]["allValue"] == ".*"


def panel(title: str) -> dict[str, Any]:
    return next(p for p in all_panels() if p["title"] == title)


def test_the_panels_operators_need_are_there() -> None:
    days = panel("Days left per certificate")
    assert days["type"] == "bargauge"
    assert days["targets"][0]["expr"].startswith("sort("), "sorted, soonest first"
    assert "cacerts_sync_certificate_expiry_timestamp_seconds" in days["targets"][0]["expr"]
    assert "result" in panel("Passes by result")["targets"][0]["expr"]
    assert "cacerts_sync_istiod_restarts_total" in panel("istiod restarts")["targets"][0]["expr"]
    assert "cacerts_sync_rotation_blocked" in panel("Rotation gate")["targets"][0]["expr"]
    assert "cacerts_sync_rotation_unblock_timestamp_seconds" in panel("Blocked change safe at")["targets"][0]["expr"]
    assert "cacerts_sync_keyvault_requests_total" in panel("Key Vault requests by status")["targets"][0]["expr"]
    assert 'status!~"2.."' in panel("Key Vault errors")["targets"][0]["expr"]
    assert "cacerts_sync_keyvault_request_duration_seconds_bucket" in panel("Key Vault latency")["targets"][0]["expr"]
    assert "cacerts_sync_last_success_timestamp_seconds" in panel("Time since the last good pass")["targets"][0]["expr"]


def test_panels_do_not_overlap() -> None:
    cells: set[tuple[int, int]] = set()
    for p in all_panels():
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, f"{p['title']} overlaps another panel"
        cells |= mine


def test_the_chart_ships_the_file_as_a_sidecar_configmap_when_enabled() -> None:
    kinds = [o["kind"] for o in render.render_objects(WATCH)]
    assert "ConfigMap" not in kinds
    values = {**WATCH, "watch": {"grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "Istio"}}}}
    cm = next(o for o in render.render_objects(values) if o["kind"] == "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Istio"}
    assert json.loads(cm["data"]["cacerts-sync.json"]) == DASHBOARD
    # cron mode has no /metrics: no dashboard.
    assert "ConfigMap" not in [o["kind"] for o in render.render_objects({**values, "mode": "cron"})]

"""The PrometheusRule, rendered by real Helm and checked by the real promtool (Debian package `prometheus`):
`promtool check rules` on the rendered groups, `promtool test rules` with input series for every alert, firing
and not firing (tests/chart/alerts/*.test.yaml).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

import render

ALERTS = Path(__file__).resolve().parent / "alerts"
WATCH = {"mode": "watch", "vaultUrl": "https://mesh.vault.azure.net", "watch": {"prometheusRule": {"enabled": True}}}
CRON = {"mode": "cron", "vaultUrl": "https://mesh.vault.azure.net", "cron": {"prometheusRule": {"enabled": True}}}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    assert exe, "promtool is required (apt-get install --no-install-recommends prometheus; tests/run.sh does)"
    return subprocess.run([exe, *args], capture_output=True, text=True, check=False)


def prometheus_rule(values: dict[str, Any]) -> dict[str, Any]:
    rules = [o for o in render.render_objects(values) if o["kind"] == "PrometheusRule"]
    assert len(rules) == 1, [o["kind"] for o in render.render_objects(values)]
    return rules[0]


def write_rules(values: dict[str, Any], directory: Path) -> Path:
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": prometheus_rule(values)["spec"]["groups"]}, sort_keys=False))
    return path


def alert_names(values: dict[str, Any]) -> list[str]:
    return [r["alert"] for g in prometheus_rule(values)["spec"]["groups"] for r in g["rules"]]


@pytest.mark.parametrize("values", [WATCH, CRON], ids=["watch", "cron"])
def test_promtool_accepts_the_rendered_rules(values: dict[str, Any], tmp_path: Path) -> None:
    result = promtool("check", "rules", str(write_rules(values, tmp_path)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("values,tests", [(WATCH, "watch.test.yaml"), (CRON, "cron.test.yaml")], ids=["watch", "cron"])
def test_every_alert_fires_and_stays_quiet_as_its_unit_tests_say(values: dict[str, Any], tests: str, tmp_path: Path) -> None:
    write_rules(values, tmp_path)
    shutil.copy(ALERTS / tests, tmp_path / tests)
    result = promtool("test", "rules", str(tmp_path / tests))
    assert result.returncode == 0, result.stdout + result.stderr
    # Every alert of the group has a test in which it fires.
    spec = yaml.safe_load((ALERTS / tests).read_text())
    firing = {t["alertname"] for case in spec["tests"] for t in case["alert_rule_test"] if t["exp_alerts"]}
    assert firing == set(alert_names(values))


def test_unit_tests_fail_when_an_alert_is_broken(tmp_path: Path) -> None:
    # The unit tests can fail: a threshold moved by values makes the expected alert disappear.
    values = yaml.safe_load(yaml.safe_dump(WATCH))
    values["watch"]["prometheusRule"]["expiry"] = {"warningDays": 10}
    write_rules(values, tmp_path)
    shutil.copy(ALERTS / "watch.test.yaml", tmp_path / "watch.test.yaml")
    result = promtool("test", "rules", str(tmp_path / "watch.test.yaml"))
    assert result.returncode != 0
    assert "CacertsSyncCertificateExpiringSoon" in result.stdout + result.stderr


def test_the_rules_are_opt_in_and_follow_the_mode() -> None:
    kinds = lambda v: [o["kind"] for o in render.render_objects(v)]
    assert "PrometheusRule" not in kinds({"mode": "watch", "vaultUrl": "https://mesh.vault.azure.net"})
    assert "PrometheusRule" not in kinds({**WATCH, "mode": "cron"})
    assert alert_names(CRON) == ["CacertsSyncCronJobFailed", "CacertsSyncCronJobNoRecentSuccess", "CacertsSyncCronJobNeverSucceeded"]


def test_thresholds_severities_and_labels_come_from_values() -> None:
    values = yaml.safe_load(yaml.safe_dump(WATCH))
    values["watch"]["interval"] = "5m"
    values["watch"]["prometheusRule"].update(
        labels={"release": "kube-prometheus-stack"},
        alertLabels={"team": "mesh"},
        noSuccessIntervals=4,
        expiry={"warningDays": 45, "criticalDays": 10},
        severities={"istiodServingOtherRoots": "page"},
        selector='job="cacerts", cluster="weu"',
    )
    rule = prometheus_rule(values)
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    rules = {r["alert"]: r for r in rule["spec"]["groups"][0]["rules"]}
    assert "> 1200" in rules["CacertsSyncNoSuccessfulPass"]["expr"]  # 4 × 5m
    assert "< 3888000 >= 864000" in rules["CacertsSyncCertificateExpiringSoon"]["expr"]
    assert rules["CacertsSyncIstiodServingOtherRoots"]["labels"] == {"severity": "page", "team": "mesh"}
    assert rules["CacertsSyncDown"]["expr"] == 'up{job="cacerts", cluster="weu"} == 0'


@pytest.mark.parametrize("interval,seconds", [("90s", 270), ("1h 30m", 16200), ("1m30s", 270), ("2min", 360)])
def test_the_pass_interval_is_read_like_humantime(interval: str, seconds: int) -> None:
    values = yaml.safe_load(yaml.safe_dump(WATCH))
    values["watch"]["interval"] = interval
    rules = {r["alert"]: r for r in prometheus_rule(values)["spec"]["groups"][0]["rules"]}
    assert rules["CacertsSyncNoSuccessfulPass"]["expr"].endswith(f"> {seconds}")


def test_a_schedule_needs_an_explicit_pass_interval() -> None:
    values = yaml.safe_load(yaml.safe_dump(WATCH))
    values["watch"]["schedule"] = "*/5 * * * *"
    with pytest.raises(Exception, match="watch.prometheusRule.passInterval"):
        prometheus_rule(values)
    values["watch"]["prometheusRule"]["passInterval"] = "5m"
    assert prometheus_rule(values)

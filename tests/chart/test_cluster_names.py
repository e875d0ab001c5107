"""Per-cluster secret names in the chart (`clusterName` and `{cluster}` in the four name values), with real Helm.

A name template with `{cluster}` and no `clusterName` is refused twice: by values.schema.json (if/then), and by
the template's own `fail` for installs that skip schema validation.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest

import render

VAULT = "https://contoso-mesh-ca.vault.azure.net"
PER_CLUSTER = {
    "vaultUrl": VAULT,
    "clusterName": "eastus",
    "caCertName": "ca-cert-{cluster}",
    "caKeyName": "ca-key-{cluster}",
    "certChainName": "cert-chain-{cluster}",
}


def container_args(values: dict[str, Any]) -> list[str]:
    for obj in render.render_objects(values):
        if obj["kind"] == "CronJob":
            return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
        if obj["kind"] == "Deployment":
            return obj["spec"]["template"]["spec"]["containers"][0]["args"]
    raise AssertionError("no workload rendered")


@pytest.mark.parametrize("mode", ["cron", "watch"])
def test_cluster_name_and_name_templates_reach_the_command_line(mode: str) -> None:
    args = container_args({**PER_CLUSTER, "mode": mode})
    assert "--cluster-name=eastus" in args
    # The tool substitutes the placeholder itself, so the chart passes the templates unchanged.
    assert "--ca-cert-name=ca-cert-{cluster}" in args
    assert "--ca-key-name=ca-key-{cluster}" in args
    assert "--cert-chain-name=cert-chain-{cluster}" in args
    assert "--root-cert-name=root-cert" in args, "the root bundle stays shared by default"


def test_no_cluster_name_flag_without_a_cluster_name() -> None:
    assert not [a for a in container_args({"vaultUrl": VAULT}) if a.startswith("--cluster-name")]


def test_check_root_gets_no_cluster_name() -> None:
    args = container_args({**PER_CLUSTER, "checkRootOnly": True})
    assert not [a for a in args if a.startswith(("--cluster-name", "--ca-cert-name"))], args


@pytest.mark.parametrize("key", ["rootCertName", "caCertName", "caKeyName", "certChainName"])
@pytest.mark.parametrize("cluster", [None, ""])
def test_schema_refuses_a_placeholder_without_a_cluster_name(key: str, cluster: str | None) -> None:
    values: dict[str, Any] = {"vaultUrl": VAULT, key: "x-{cluster}"}
    if cluster is not None:
        values["clusterName"] = cluster
    with pytest.raises(helm.HelmValuesError, match="clusterName"):
        render.render_objects(values)


@pytest.mark.parametrize(
    "values",
    [
        {"vaultUrl": VAULT, "clusterName": "a", "caCertName": "ca-cert-{region}"},
        {"vaultUrl": VAULT, "clusterName": "a", "caCertName": "ca-cert-{cluster"},
        {"vaultUrl": VAULT, "clusterName": "east us"},
        {"vaultUrl": VAULT, "clusterName": "east_us", "caCertName": "ca-cert-{cluster}"},
    ],
    ids=["unknown-placeholder", "unclosed-placeholder", "space-in-cluster", "underscore-in-cluster"],
)
def test_schema_refuses_names_the_tool_would_refuse(values: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmValuesError):
        render.render_objects(values)


def test_a_cluster_name_without_placeholders_is_accepted() -> None:
    assert "--cluster-name=eastus" in container_args({"vaultUrl": VAULT, "clusterName": "eastus"})


def test_template_fails_with_a_clear_message_when_the_schema_is_skipped(tmp_path: Path) -> None:
    # `helm install --skip-schema-validation` bypasses values.schema.json; the template's own check still holds.
    chart = tmp_path / "cacerts-sync"
    shutil.copytree(render.CHART, chart)
    (chart / "values.schema.json").unlink()
    with helm.Chart.load(chart) as loaded:
        with pytest.raises(helm.HelmRenderError, match=re.escape('caKeyName "ca-key-{cluster}" uses {cluster}: set clusterName')):
            loaded.render({"vaultUrl": VAULT, "caKeyName": "ca-key-{cluster}"}, name="r", namespace="istio-system", is_install=True)
        rendered = loaded.render({"vaultUrl": VAULT, "caKeyName": "ca-key-{cluster}", "clusterName": "b"}, name="r", namespace="istio-system", is_install=True)
        assert any("--cluster-name=b" in text for text in rendered.values())

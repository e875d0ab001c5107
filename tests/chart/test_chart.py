"""Chart tests with real Helm (helm-python-sdk → Helm's Go SDK): lint, schema, and the rendered objects.

RBAC and pod security are in test_rbac.py. Run: python3 -m pytest tests/chart -q
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

import render
from chart_objects import (
    BASE,
    CLIENT_ID,
    VALUES_FILES,
    VALUES_IDS,
    VAULT,
    args,
    container,
    env,
    kinds,
    merged,
    objects,
    one,
    pod_labels,
    pod_spec,
)


# ---------------------------------------------------------------------------------------------- lint


def test_helm_sdk_is_the_real_go_helm_v4() -> None:
    assert helm.helm_sdk_version().startswith("v4.")


def test_chart_is_lint_clean_in_strict_mode_with_default_values() -> None:
    report = render.lint({})
    assert report["total_charts_linted"] == 1
    assert render.lint_findings(report) == []


@pytest.mark.parametrize("values_file", VALUES_FILES, ids=VALUES_IDS)
def test_chart_is_lint_clean_in_strict_mode_with_each_values_file(values_file: Path) -> None:
    assert render.lint_findings(render.lint(render.load_values(values_file))) == []


def test_strict_lint_reports_a_misspelled_value() -> None:
    findings = render.lint_findings(render.lint({"valtUrl": VAULT}))
    assert any("valtUrl" in f for f in findings), findings


# ---------------------------------------------------------------------------------------------- schema


def test_schema_rejects_a_misspelled_top_level_value() -> None:
    with pytest.raises(helm.HelmValuesError, match="valtUrl"):
        objects({"valtUrl": VAULT})


def test_schema_rejects_a_misspelled_nested_value() -> None:
    with pytest.raises(helm.HelmValuesError, match="replica"):
        objects({**BASE, "mode": "watch", "watch": {"replica": 2}})


def test_schema_rejects_a_value_of_the_wrong_type() -> None:
    with pytest.raises(helm.HelmValuesError, match="replicas"):
        objects({**BASE, "mode": "watch", "watch": {"replicas": "3"}})


@pytest.mark.parametrize(
    "bad",
    [
        {"mode": "daemon"},
        {"auth": "password"},
        {"logFormat": "xml"},
        {"vaultUrl": "contoso.vault.azure.net"},
        {"timeout": "two minutes!"},
        {"cron": {"jitter": "2 minutes!"}},
        {"azure": {"workloadIdentity": {"clientId": "not-a-guid"}}},
        {"watch": {"leaderElection": "sometimes"}},
        {"securityContext": {"readOnlyRootFilesystem": "yes"}},
    ],
    ids=["mode", "auth", "log-format", "vault-url-scheme", "duration", "cron-jitter", "client-id", "leader-election", "bool"],
)
def test_schema_rejects_invalid_values(bad: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmValuesError):
        objects(merged(BASE, bad))


def test_schema_requires_additional_properties_false_on_every_chart_owned_object() -> None:
    schema = yaml.safe_load((render.CHART / "values.schema.json").read_text())
    # Free-form Kubernetes structures the chart passes through verbatim; the Rust manifest test checks them
    # against k8s-openapi after rendering.
    passthrough = {"global", "valueFrom", "nodeAffinity", "podAffinity", "podAntiAffinity"}
    open_objects: list[str] = []

    def walk(node: dict[str, Any], path: str) -> None:
        if node.get("type") == "object" and "properties" in node and node.get("additionalProperties") is not False:
            open_objects.append(path)
        for key, sub in node.get("properties", {}).items():
            if key not in passthrough:
                walk(sub, f"{path}.{key}")
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{path}[]")

    walk(schema, "$")
    assert open_objects == []


def test_every_value_in_values_yaml_is_documented() -> None:
    lines = (render.CHART / "values.yaml").read_text().splitlines()
    undocumented: list[str] = []
    # (indent, documented) of the enclosing keys: the contents of a documented map value (the default
    # securityContext, resources, ...) are covered by that value's description.
    stack: list[tuple[int, bool]] = []
    for n, line in enumerate(lines):
        m = re.match(r"^(\s*)([A-Za-z][A-Za-z0-9]*):(.*)$", line)
        if not m:
            continue
        indent, key, rest = m.groups()
        while stack and stack[-1][0] >= len(indent):
            stack.pop()
        k = n - 1
        block: list[str] = []
        while k >= 0 and lines[k].strip().startswith("#"):
            block.append(lines[k].strip())
            k -= 1
        documented = any(c.startswith("# --") for c in block)
        is_parent = rest.strip() == "" and n + 1 < len(lines) and lines[n + 1].startswith(indent + "  ")
        if not documented and not is_parent and not any(d for _, d in stack):
            undocumented.append(key)
        stack.append((len(indent), documented))
    assert undocumented == []


# ---------------------------------------------------------------------------------------------- kinds


@pytest.mark.parametrize("values_file", VALUES_FILES, ids=VALUES_IDS)
def test_every_object_carries_the_recommended_labels(values_file: Path) -> None:
    objs = objects(render.load_values(values_file))
    assert objs
    for o in objs:
        labels = o["metadata"]["labels"]
        for key in (
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/version",
            "app.kubernetes.io/managed-by",
            "app.kubernetes.io/component",
            "helm.sh/chart",
        ):
            assert labels.get(key), f"{o['kind']} lacks {key}"


def test_cron_mode_is_the_default_and_renders_a_cronjob_with_its_rbac() -> None:
    assert kinds(objects(BASE)) == ["CronJob", "Role", "RoleBinding", "ServiceAccount"]


def test_watch_mode_renders_a_deployment_and_a_metrics_service() -> None:
    assert kinds(objects({**BASE, "mode": "watch"})) == ["Deployment", "Role", "RoleBinding", "Service", "ServiceAccount"]


def test_watch_mode_with_monitoring_adds_a_service_monitor_and_a_pdb() -> None:
    objs = objects(render.load_values(render.VALUES_DIR / "watch-ha.yaml"))
    assert kinds(objs) == [
        "ConfigMap",
        "Deployment",
        "PodDisruptionBudget",
        "PrometheusRule",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    ]
    sm = one(objs, "ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "1m"}]
    assert sm["spec"]["selector"]["matchLabels"] == one(objs, "Deployment")["spec"]["selector"]["matchLabels"]
    assert one(objs, "PodDisruptionBudget")["spec"]["minAvailable"] == 2


def test_monitoring_objects_are_never_rendered_in_cron_mode() -> None:
    watch_only = {"serviceMonitor": {"enabled": True}, "podDisruptionBudget": {"enabled": True}, "prometheusRule": {"enabled": True}, "grafanaDashboard": {"enabled": True}}
    objs = objects(merged(BASE, {"watch": watch_only}))
    assert kinds(objs) == ["CronJob", "Role", "RoleBinding", "ServiceAccount"]


def test_rbac_and_service_account_can_be_left_to_the_user() -> None:
    objs = objects({**BASE, "rbac": {"create": False}, "serviceAccount": {"create": False, "name": "mesh-ca-syncer"}})
    assert kinds(objs) == ["CronJob"]
    assert pod_spec(objs)["serviceAccountName"] == "mesh-ca-syncer"


# ---------------------------------------------------------------------------------------------- cron


def test_cronjob_runs_sync_every_ten_minutes_without_overlap() -> None:
    objs = objects(BASE)
    cj = one(objs, "CronJob")["spec"]
    assert cj["schedule"] == "*/10 * * * *"
    assert cj["concurrencyPolicy"] == "Forbid"
    assert cj["successfulJobsHistoryLimit"] == 3
    assert cj["failedJobsHistoryLimit"] == 3
    job = cj["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 2
    # The deadline ends a stuck pass before the next tick would be skipped by Forbid.
    assert 0 < job["activeDeadlineSeconds"] < 600
    assert pod_spec(objs)["restartPolicy"] == "Never"
    assert container(objs)["args"][:3] == ["--log-format=json", "sync", f"--vault-url={VAULT}"]


def test_check_root_only_runs_check_root_with_target_and_restart_flags_only() -> None:
    objs = objects(render.load_values(render.VALUES_DIR / "cron-check-root.yaml"))
    assert container(objs)["args"] == [
        "--log-format=json",
        "check-root",
        "--timeout=1m",
        "--namespace=istio-system",
        "--secret=cacerts",
        "--istiod-selector=app=istiod,istio.io/rev",
        "--wait",
        "--wait-timeout=3m",
    ]
    cj = one(objs, "CronJob")["spec"]
    assert cj["schedule"] == "*/5 * * * *"
    assert cj["timeZone"] == "Europe/Amsterdam"
    assert one(objs, "CronJob")["metadata"]["labels"]["app.kubernetes.io/component"] == "check-root"


def test_every_cron_value_maps_to_its_flag() -> None:
    objs = objects(render.load_values(render.VALUES_DIR / "cron-csi-dir.yaml"))
    assert container(objs)["args"] == [
        "--log-format=text",
        "sync",
        "--source=dir:/mnt/ca",
        "--root-cert-name=mesh-root",
        "--ca-cert-name=mesh-ca",
        "--ca-key-name=mesh-ca-key",
        "--cert-chain-name=mesh-chain",
        "--auth=managed-identity",
        "--managed-identity-client-id=aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "--disable-challenge-resource-verification",
        "--consistency-timeout=90s",
        "--expiry-warning=45d",
        "--timeout=3m",
        "--namespace=istio-system",
        "--secret=plugged-ca",
        "--no-adopt",
        "--dry-run",
        "--istiod-deployment=istiod-asm-1-22",
        "--istiod-deployment=istiod-asm-1-23",
        "--restart-on-first-run",
        "--jitter=90s",
    ]
    assert env(objs)["RUST_LOG"]["value"] == "info,cacerts_sync=debug"
    assert env(objs)["SSL_CERT_FILE"]["value"] == "/etc/ssl/custom/ca.pem"
    assert container(objs)["image"].endswith("@sha256:" + "0123456789abcdef" * 4)
    mounts = {m["name"]: m for m in container(objs)["volumeMounts"]}
    assert mounts["ca"]["mountPath"] == "/mnt/ca"
    assert one(objs, "CronJob")["spec"]["suspend"] is True


# Each tool value, changed from its default, must change exactly one flag (and nothing else on the command line).
ONE_FLAG = [
    ({"vaultUrl": "https://other.vault.azure.net"}, "watch", "--vault-url=https://other.vault.azure.net"),
    ({"rootCertName": "r"}, "cron", "--root-cert-name=r"),
    ({"caCertName": "c"}, "cron", "--ca-cert-name=c"),
    ({"caKeyName": "k"}, "cron", "--ca-key-name=k"),
    ({"certChainName": "ch"}, "cron", "--cert-chain-name=ch"),
    ({"auth": "azure-cli"}, "cron", "--auth=azure-cli"),
    ({"managedIdentityClientId": "mi"}, "cron", "--managed-identity-client-id=mi"),
    ({"disableChallengeResourceVerification": True}, "cron", "--disable-challenge-resource-verification"),
    ({"timeout": "5m"}, "cron", "--timeout=5m"),
    ({"consistencyTimeout": "2m"}, "cron", "--consistency-timeout=2m"),
    ({"expiryWarning": "60d"}, "cron", "--expiry-warning=60d"),
    ({"trustPropagation": "48h"}, "watch", "--trust-propagation=48h"),
    ({"allowUnsafeRotation": True}, "cron", "--allow-unsafe-rotation"),
    ({"targetNamespace": "aks-istio-system"}, "cron", "--namespace=aks-istio-system"),
    ({"secretName": "ca2"}, "cron", "--secret=ca2"),
    ({"adopt": False}, "watch", "--no-adopt"),
    ({"dryRun": True}, "cron", "--dry-run"),
    ({"istiodSelector": "app=istiod,istio.io/rev=asm-1-23"}, "cron", "--istiod-selector=app=istiod,istio.io/rev=asm-1-23"),
    ({"istiodDeployments": ["istiod"]}, "cron", "--istiod-deployment=istiod"),
    ({"restartOnFirstRun": True}, "watch", "--restart-on-first-run"),
    ({"restart": False}, "cron", "--no-restart"),
    ({"wait": True}, "cron", "--wait"),
    ({"waitTimeout": "1m"}, "cron", "--wait-timeout=1m"),
    ({"logFormat": "text"}, "cron", "--log-format=text"),
    ({"watch": {"interval": "30s"}}, "watch", "--interval=30s"),
    ({"watch": {"schedule": "*/3 * * * *"}}, "watch", "--schedule=*/3 * * * *"),
    ({"cron": {"jitter": "30s"}}, "cron", "--jitter=30s"),
    ({"watch": {"jitter": "1s"}}, "watch", "--jitter=1s"),
    ({"watch": {"adminPort": 9000}}, "watch", "--admin-addr=0.0.0.0:9000"),
    # The Lease name always goes with --leader-election, so the flag and the Role's resourceNames come from
    # one value; it is the only value that brings a second flag along.
    ({"watch": {"leaderElection": True}}, "watch", "--leader-election --lease-name=cacerts-sync"),
    ({"watch": {"leaderElection": True, "leaseName": "l"}}, "watch", "--lease-name=l"),
    ({"watch": {"leaderElection": True, "leaseDuration": "30s"}}, "watch", "--lease-duration=30s"),
]


@pytest.mark.parametrize("change,mode,flag", ONE_FLAG, ids=[f for _, _, f in ONE_FLAG])
def test_each_tool_value_maps_to_exactly_one_flag(change: dict[str, Any], mode: str, flag: str) -> None:
    base = {**BASE, "mode": mode}
    if "leaseName" in change.get("watch", {}) or "leaseDuration" in change.get("watch", {}):
        base = merged(base, {"watch": {"leaderElection": True}})
    before, after = args(base), args(merged(base, change))
    added = [a for a in after if a not in before]
    removed = [a for a in before if a not in after]
    assert added == flag.split(" --", 1)[0:1] + ["--" + f for f in flag.split(" --")[1:]]
    name = flag.split("=", 1)[0]
    assert all(r.split("=", 1)[0] == name for r in removed), removed


def test_log_level_is_passed_as_rust_log() -> None:
    assert env(objects({**BASE, "logLevel": "debug"}))["RUST_LOG"] == {"name": "RUST_LOG", "value": "debug"}


# ---------------------------------------------------------------------------------------------- watch


def test_single_watch_replica_runs_without_leader_election() -> None:
    objs = objects(render.load_values(render.VALUES_DIR / "watch-single.yaml"))
    a = container(objs)["args"]
    assert a[1] == "watch"
    assert "--leader-election" not in a
    assert not any(x.startswith("--lease-") for x in a)
    assert "--no-restart" in a and "--interval=5m" in a and "--jitter=30s" in a
    assert one(objs, "Deployment")["spec"]["replicas"] == 1


def test_more_than_one_replica_turns_leader_election_on() -> None:
    a = args({**BASE, "mode": "watch", "watch": {"replicas": 2}})
    assert "--leader-election" in a
    assert "--lease-name=cacerts-sync" in a


def test_leader_election_can_be_forced_on_for_one_replica() -> None:
    assert "--leader-election" in args({**BASE, "mode": "watch", "watch": {"leaderElection": True}})


def test_watch_pods_expose_probes_on_the_admin_port_and_know_their_identity() -> None:
    objs = objects(render.load_values(render.VALUES_DIR / "watch-ha.yaml"))
    c = container(objs)
    assert c["ports"] == [{"name": "admin", "containerPort": 9090, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert "--admin-addr=0.0.0.0:9090" in c["args"]
    e = env(objs)
    assert e["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert e["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    svc = one(objs, "Service")["spec"]
    assert svc["ports"] == [{"name": "metrics", "port": 9090, "targetPort": "admin", "protocol": "TCP"}]
    assert svc["selector"] == one(objs, "Deployment")["spec"]["selector"]["matchLabels"]
    assert one(objs, "Deployment")["spec"]["replicas"] == 3


def test_cron_pods_have_no_ports_probes_or_lease_identity() -> None:
    c = container(objects(BASE))
    assert "ports" not in c and "livenessProbe" not in c and "readinessProbe" not in c
    assert set(env(objects(BASE))) == {"RUST_LOG"}


def grace(values: dict[str, Any]) -> int:
    return pod_spec(objects({**BASE, "mode": "watch", **values}))["terminationGracePeriodSeconds"]


@pytest.mark.parametrize(
    "values,seconds",
    [
        ({}, 120 + 15),
        ({"wait": True}, 120 + 300 + 15),
        ({"timeout": "90s", "wait": True, "waitTimeout": "10m"}, 90 + 600 + 15),
        ({"timeout": "1h30m"}, 5400 + 15),
        ({"timeout": "2min", "wait": True, "waitTimeout": "1m 30s"}, 120 + 90 + 15),
        # waitTimeout without wait: no waiting happens, so it adds nothing.
        ({"waitTimeout": "10m"}, 120 + 15),
        # No restart: nothing to wait for.
        ({"wait": True, "restart": False}, 120 + 15),
    ],
    ids=["defaults", "wait", "wait-10m", "compound", "spelled-units", "timeout-without-wait", "no-restart"],
)
def test_watch_grace_period_covers_the_pass_timeout_plus_the_wait_timeout(values: dict[str, Any], seconds: int) -> None:
    assert grace(values) == seconds


def test_a_grace_period_set_by_hand_is_kept_when_it_covers_a_pass() -> None:
    assert grace({"wait": True, "watch": {"terminationGracePeriodSeconds": 600}}) == 600
    assert grace({"watch": {"terminationGracePeriodSeconds": 125}}) == 125


@pytest.mark.parametrize(
    "values,message",
    [
        ({"wait": True, "watch": {"terminationGracePeriodSeconds": 60}}, "watch.terminationGracePeriodSeconds=60 is shorter than a pass: timeout (120s) + waitTimeout (300s, when wait is on) + 5s to release the Lease = 425s"),
        ({"watch": {"terminationGracePeriodSeconds": 124}}, "= 125s"),
        ({"timeout": "2 fortnights"}, 'unknown unit "fortnights"'),
        ({"wait": True, "waitTimeout": "5 moons"}, 'waitTimeout="5 moons": unknown unit "moons"'),
    ],
    ids=["wait-beyond-grace", "one-second-short", "unknown-unit", "unknown-unit-in-wait-timeout"],
)
def test_a_grace_period_shorter_than_a_pass_or_an_unreadable_duration_fails_the_render(
    values: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm.HelmRenderError, match=re.escape(message)):
        objects({**BASE, "mode": "watch", **values})


def deadline(values: dict[str, Any]) -> int:
    return one(objects({**BASE, **values}), "CronJob")["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"]


def test_cron_sync_waits_a_jitter_of_2m_by_default_and_only_sync_gets_it() -> None:
    assert "--jitter=2m" in args(BASE)
    assert not any(a.startswith("--jitter") for a in args({**BASE, "cron": {"jitter": ""}}))
    # check-root reads no vault, and does not accept the flag.
    assert not any(a.startswith("--jitter") for a in args({"checkRootOnly": True}))
    # Watch mode has its own value (watch.jitter); cron.jitter does not leak into it.
    assert not any(a.startswith("--jitter") for a in args({**BASE, "mode": "watch"}))


@pytest.mark.parametrize(
    "values",
    [
        {},
        # The defaults with wait on fill the deadline exactly: 120 + 120 + 300 = 540.
        {"wait": True},
        {"cron": {"jitter": "5m", "activeDeadlineSeconds": 420}},
        # No restart (or a dry run): nothing to wait for.
        {"wait": True, "waitTimeout": "10m", "restart": False},
        {"wait": True, "waitTimeout": "10m", "dryRun": True},
        {"cron": {"jitter": "0s", "activeDeadlineSeconds": 120}},
    ],
    ids=["defaults", "wait-fills-it", "long-jitter-raised-deadline", "wait-without-restart", "wait-in-dry-run", "no-jitter"],
)
def test_the_job_deadline_covers_jitter_timeout_and_wait(values: dict[str, Any]) -> None:
    assert deadline(values) == merged({"cron": {"activeDeadlineSeconds": 540}}, values)["cron"]["activeDeadlineSeconds"]


@pytest.mark.parametrize(
    "values,message",
    [
        ({"wait": True, "timeout": "3m"}, "cron.activeDeadlineSeconds=540 is shorter than a run: cron.jitter (120s) + timeout (180s) + waitTimeout (300s, when wait is on) = 600s"),
        ({"cron": {"jitter": "10m"}}, "cron.jitter (600s) + timeout (120s) + waitTimeout (0s, when wait is on) = 720s"),
        ({"cron": {"activeDeadlineSeconds": 239}}, "= 240s"),
        ({"cron": {"jitter": "2 fortnights"}}, 'cron.jitter="2 fortnights": unknown unit "fortnights"'),
    ],
    ids=["wait-beyond-deadline", "jitter-beyond-deadline", "one-second-short", "unknown-unit"],
)
def test_a_job_deadline_shorter_than_a_run_fails_the_render(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmRenderError, match=re.escape(message)):
        objects(merged(BASE, values))


def test_check_root_deadline_covers_timeout_and_wait_without_jitter() -> None:
    check_root = render.load_values(render.VALUES_DIR / "cron-check-root.yaml")
    # 60 s + 180 s of wait fit its 280 s; the default cron.jitter (2m) does not count: check-root takes none.
    objs = objects(check_root)
    assert one(objs, "CronJob")["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"] == 280
    assert objects(merged(check_root, {"cron": {"activeDeadlineSeconds": 240}}))
    message = "cron.activeDeadlineSeconds=280 is shorter than a run: cron.jitter (0s) + timeout (180s) + waitTimeout (600s, when wait is on) = 780s"
    with pytest.raises(helm.HelmRenderError, match=re.escape(message)):
        objects(merged(check_root, {"timeout": "3m", "waitTimeout": "10m"}))
    with pytest.raises(helm.HelmRenderError, match=re.escape("= 241s")):
        objects(merged(check_root, {"timeout": "61s", "cron": {"activeDeadlineSeconds": 240}}))


def test_cron_mode_sets_no_grace_period() -> None:
    assert "terminationGracePeriodSeconds" not in pod_spec(objects({**BASE, "wait": True}))


# ---------------------------------------------------------------------------------------------- workload identity


def test_workload_identity_annotates_the_service_account_and_labels_the_pods() -> None:
    objs = objects(render.load_values(render.VALUES_DIR / "cron-aks-workload-identity.yaml"))
    sa = one(objs, "ServiceAccount")
    assert sa["metadata"]["annotations"] == {
        "azure.workload.identity/client-id": CLIENT_ID,
        "azure.workload.identity/tenant-id": "66666666-7777-8888-9999-000000000000",
    }
    assert pod_labels(objs)["azure.workload.identity/use"] == "true"
    assert "--auth=workload-identity" in container(objs)["args"]
    assert "--namespace=aks-istio-system" in container(objs)["args"]


def test_workload_identity_pod_label_is_set_in_watch_mode_too() -> None:
    objs = objects(render.load_values(render.VALUES_DIR / "watch-single.yaml"))
    assert pod_labels(objs)["azure.workload.identity/use"] == "true"
    assert one(objs, "ServiceAccount")["metadata"]["annotations"]["azure.workload.identity/client-id"] == CLIENT_ID


def test_without_workload_identity_nothing_azure_is_wired() -> None:
    objs = objects(BASE)
    assert "azure.workload.identity/use" not in pod_labels(objs)
    assert "annotations" not in one(objs, "ServiceAccount")["metadata"]


# ---------------------------------------------------------------------------------------------- render-time checks


@pytest.mark.parametrize(
    "values,message",
    [
        ({}, "set vaultUrl"),
        ({"vaultUrl": VAULT, "sourceDir": "/mnt/ca"}, "not both"),
        ({**BASE, "mode": "watch", "checkRootOnly": True}, "checkRootOnly is a cron-mode option"),
        ({**BASE, "mode": "watch", "dryRun": True}, "dryRun applies to `sync` only"),
        ({**BASE, "mode": "watch", "watch": {"replicas": 2, "leaderElection": False}}, "needs leader election"),
        ({**BASE, "istiodSelector": "app=istiod", "istiodDeployments": ["istiod"]}, "istiodSelector or istiodDeployments"),
        ({**BASE, "mode": "watch", "watch": {"interval": "1m", "schedule": "* * * * *"}}, "interval or watch.schedule"),
        ({**BASE, "serviceAccount": {"create": False}}, "needs serviceAccount.name"),
    ],
    ids=["no-source", "two-sources", "check-root-in-watch", "dry-run-in-watch", "ha-without-lease", "selector-and-names", "interval-and-schedule", "no-sa-name"],
)
def test_contradictory_values_fail_with_a_message_that_says_what_to_change(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmRenderError, match=re.escape(message)):
        objects(values)


# ---------------------------------------------------------------------------------------------- notes


def test_notes_explain_how_to_check_a_cron_install() -> None:
    text = render.notes(BASE)
    assert "kubectl -n istio-system create job --from=cronjob/cacerts-sync cacerts-sync-manual-$(date +%s)" in text
    assert "kubectl -n istio-system get secret cacerts -o jsonpath='{.metadata.annotations}'" in text
    assert "kubectl -n istio-system logs job/" in text
    assert "port-forward" not in text


def test_notes_explain_metrics_in_watch_mode() -> None:
    text = render.notes({**BASE, "mode": "watch"})
    assert "kubectl -n istio-system port-forward deployment/cacerts-sync 8080:8080" in text
    assert "/metrics" in text
    assert "rollout status deployment/cacerts-sync" in text

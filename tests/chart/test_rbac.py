"""The chart's RBAC (least privilege, by name wherever Kubernetes allows it) and pod security, rendered with real Helm.

Run: python3 -m pytest tests/chart -q
"""

from __future__ import annotations

from pathlib import Path

import pytest

import render
from chart_objects import (
    BASE,
    VALUES_FILES,
    VALUES_IDS,
    args,
    container,
    granted,
    objects,
    one,
    pod_spec,
    rules,
    verbs_for,
)


# ---------------------------------------------------------------------------------------------- rbac


def test_istio_ca_root_cert_is_readable_by_name_and_watched_only_in_watch_mode() -> None:
    assert verbs_for(objects(BASE), "", "configmaps") == [(("get",), ("istio-ca-root-cert",))]
    assert verbs_for(objects({"checkRootOnly": True}), "", "configmaps") == [(("get",), ("istio-ca-root-cert",))]
    assert verbs_for(objects({**BASE, "mode": "watch"}), "", "configmaps") == [
        (("get", "list", "watch"), ("istio-ca-root-cert",))
    ]
    assert granted(objects({**BASE, "restart": False}), "", "configmaps") == set()


def test_secret_access_is_limited_by_name_except_create() -> None:
    objs = objects({**BASE, "secretName": "plugged-ca"})
    assert sorted(verbs_for(objs, "", "secrets")) == [
        (("create",), ()),
        (("get", "patch"), ("plugged-ca",)),
    ]


def test_watch_mode_also_lists_and_watches_only_the_named_secret() -> None:
    objs = objects({**BASE, "mode": "watch"})
    assert sorted(verbs_for(objs, "", "secrets")) == [
        (("create",), ()),
        (("get", "patch", "list", "watch"), ("cacerts",)),
    ]


def test_check_root_may_only_read_the_secret() -> None:
    objs = objects({"checkRootOnly": True})
    assert verbs_for(objs, "", "secrets") == [(("get",), ("cacerts",))]
    assert granted(objs, "apps", "deployments") == {"get", "list", "patch"}


def test_istiod_deployments_are_read_listed_and_patched_and_watched_only_in_watch_mode() -> None:
    assert granted(objects(BASE), "apps", "deployments") == {"get", "list", "patch"}
    assert granted(objects({**BASE, "wait": True}), "apps", "deployments") == {"get", "list", "patch"}
    assert granted(objects({**BASE, "mode": "watch"}), "apps", "deployments") == {"get", "list", "patch", "watch"}


def test_named_istiod_deployments_are_read_and_patched_by_name_only() -> None:
    # Patching a pod template runs pods with that Deployment's ServiceAccount: only the named ones may be patched.
    names = ["istiod-asm-1-22", "istiod-asm-1-23"]
    assert verbs_for(objects({**BASE, "istiodDeployments": names}), "apps", "deployments") == [
        (("get", "patch"), tuple(names)),
    ]
    assert verbs_for(objects({**BASE, "wait": True, "istiodDeployments": names}), "apps", "deployments") == [
        (("get", "patch"), tuple(names)),
    ]
    # Watch mode watches each with fieldSelector=metadata.name=<name>: list and watch by name too.
    assert verbs_for(objects({**BASE, "mode": "watch", "istiodDeployments": names}), "apps", "deployments") == [
        (("get", "patch", "list", "watch"), tuple(names)),
    ]
    assert verbs_for(objects({"checkRootOnly": True, "istiodDeployments": ["istiod"]}), "apps", "deployments") == [
        (("get", "patch"), ("istiod",)),
    ]


def test_secrets_are_never_granted_update_since_only_patch_is_used() -> None:
    for values in (BASE, {**BASE, "mode": "watch"}, {"checkRootOnly": True}):
        assert "update" not in granted(objects(values), "", "secrets")


def test_no_restart_drops_deployment_access() -> None:
    assert granted(objects({**BASE, "restart": False}), "apps", "deployments") == set()


def test_events_are_granted_only_in_the_events_api_the_tool_uses() -> None:
    objs = objects(BASE)
    assert granted(objs, "", "events") == set()
    assert granted(objs, "events.k8s.io", "events") == {"create", "patch"}


def test_leases_are_granted_only_in_watch_mode_with_leader_election() -> None:
    assert granted(objects(BASE), "coordination.k8s.io", "leases") == set()
    assert granted(objects({**BASE, "mode": "watch"}), "coordination.k8s.io", "leases") == set()
    objs = objects(render.load_values(render.VALUES_DIR / "watch-ha.yaml"))
    assert sorted(verbs_for(objs, "coordination.k8s.io", "leases")) == [
        (("create",), ()),
        (("get", "patch"), ("cacerts-sync-leader",)),
    ]


@pytest.mark.parametrize("values_file", VALUES_FILES, ids=VALUES_IDS)
def test_rbac_has_no_wildcards_and_no_cluster_scope(values_file: Path) -> None:
    objs = objects(render.load_values(values_file))
    assert not any(o["kind"] in ("ClusterRole", "ClusterRoleBinding") for o in objs)
    for rule in rules(objs):
        for field in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert "*" not in rule.get(field, [])
        assert set(rule["verbs"]) <= {"get", "list", "watch", "create", "update", "patch"}
        assert set(rule["resources"]) <= {"secrets", "deployments", "configmaps", "events", "leases"}
        if "configmaps" in rule["resources"]:
            assert rule["resourceNames"] == ["istio-ca-root-cert"], "configmaps only by name"


def test_role_lives_in_the_istio_namespace_and_binds_the_release_service_account() -> None:
    objs = objects({**BASE, "targetNamespace": "aks-istio-system"}, namespace="mesh-tools")
    assert one(objs, "Role")["metadata"]["namespace"] == "aks-istio-system"
    rb = one(objs, "RoleBinding")
    assert rb["metadata"]["namespace"] == "aks-istio-system"
    assert rb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": one(objs, "Role")["metadata"]["name"]}
    sa = one(objs, "ServiceAccount")
    assert sa["metadata"]["namespace"] == "mesh-tools"
    assert rb["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": "mesh-tools"}]
    assert one(objs, "CronJob")["metadata"]["namespace"] == "mesh-tools"
    assert "--namespace=aks-istio-system" in container(objs)["args"]


# ---------------------------------------------------------------------------------------------- security


@pytest.mark.parametrize("values_file", VALUES_FILES, ids=VALUES_IDS)
def test_pods_run_non_root_read_only_without_capabilities(values_file: Path) -> None:
    objs = objects(render.load_values(values_file))
    spec = pod_spec(objs)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 65532
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is True
    sc = container(objs)["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == 65532
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    res = container(objs)["resources"]
    assert res["requests"] == {"cpu": "10m", "memory": "16Mi"}
    assert res["limits"] == {"memory": "32Mi"}



"""The GitOps examples in examples/gitops: they parse as the CRD shapes they claim, and the chart renders (with
real Helm, values.schema.json included) with exactly the values they pass, for each cluster.

Field sets come from the CRDs' openAPIV3Schema, at these versions:
  - ApplicationSet argoproj.io/v1alpha1: argoproj/argo-cd manifests/crds/applicationset-crd.yaml
    (commit 004a9db14ad365051db897113691a6be37d134f9);
  - HelmRelease helm.toolkit.fluxcd.io/v2: fluxcd/helm-controller config/crd/bases/helm.toolkit.fluxcd.io_helmreleases.yaml
    (commit 00785fbfa3cbcb33d3f0ca3c5a0827a79816a26e);
  - Kustomization kustomize.toolkit.fluxcd.io/v1 and HelmRepository source.toolkit.fluxcd.io/v1 (Flux v2 GA APIs).
Only the parts of the schemas the examples use are listed; an unknown key anywhere under them is an error. A
`None` value means free-form (x-kubernetes-preserve-unknown-fields, or a map of strings).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

import render

EXAMPLES = render.ROOT / "examples" / "gitops"
CLUSTERS = ["eastus", "westeu"]

# ---------------------------------------------------------------------------------------------- CRD shapes

METADATA = {"name": str, "namespace": str, "labels": None, "annotations": None}
LABEL_SELECTOR = {"matchLabels": None, "matchExpressions": list}

ARGO_HELM = {
    "apiVersions": list, "fileParameters": list, "ignoreMissingValueFiles": bool, "kubeVersion": str, "namespace": str,
    "parameters": list, "passCredentials": bool, "releaseName": str, "skipCrds": bool, "skipSchemaValidation": bool,
    "skipTests": bool, "valueFiles": list, "values": str, "valuesObject": None, "version": str,
}
ARGO_SOURCE = {
    "chart": str, "directory": dict, "helm": ARGO_HELM, "kustomize": dict, "name": str, "path": str, "plugin": dict,
    "ref": str, "repoURL": str, "targetRevision": str,
}
ARGO_SYNC_POLICY = {
    "automated": {"allowEmpty": bool, "enabled": bool, "prune": bool, "selfHeal": bool},
    "managedNamespaceMetadata": dict, "retry": dict, "syncOptions": list,
}
ARGO_APP_SPEC = {
    "destination": {"name": str, "namespace": str, "server": str}, "ignoreDifferences": list, "info": list,
    "project": str, "revisionHistoryLimit": int, "source": ARGO_SOURCE, "sources": list, "syncPolicy": ARGO_SYNC_POLICY,
}
ARGO_TEMPLATE = {"metadata": {**METADATA, "finalizers": list}, "spec": ARGO_APP_SPEC}
APPLICATION_SET = {
    "apiVersion": str, "kind": str, "metadata": METADATA,
    "spec": {
        "applyNestedSelectors": bool,
        "generators": [{
            "clusterDecisionResource": dict, "clusters": {"flatList": bool, "selector": LABEL_SELECTOR, "template": dict, "values": None},
            "git": dict, "list": dict, "matrix": dict, "merge": dict, "plugin": dict, "pullRequest": dict, "scmProvider": dict,
            "selector": dict,
        }],
        "goTemplate": bool, "goTemplateOptions": list, "ignoreApplicationDifferences": list, "preservedFields": dict,
        "strategy": dict, "syncPolicy": dict, "template": ARGO_TEMPLATE, "templatePatch": str,
    },
}
APPLICATION_SET_REQUIRED = [("spec",), ("spec", "generators"), ("spec", "template"), ("spec", "template", "metadata"),
                            ("spec", "template", "spec"), ("spec", "template", "spec", "project"),
                            ("spec", "template", "spec", "destination")]

REMEDIATION = {"remediation": {"ignoreTestFailures": bool, "remediateLastFailure": bool, "retries": int, "strategy": str}}
HELM_RELEASE = {
    "apiVersion": str, "kind": str, "metadata": METADATA,
    "spec": {
        "chart": {
            "metadata": dict,
            "spec": {
                "chart": str, "ignoreMissingValuesFiles": bool, "interval": str, "reconcileStrategy": str,
                "sourceRef": {"apiVersion": str, "kind": str, "name": str, "namespace": str},
                "valuesFile": str, "valuesFiles": list, "verify": dict, "version": str,
            },
        },
        "chartRef": dict, "commonMetadata": dict, "dependsOn": list, "driftDetection": dict,
        "install": {**REMEDIATION, "createNamespace": bool, "crds": str, "disableHooks": bool, "disableWait": bool, "timeout": str},
        "interval": str, "kubeConfig": dict, "maxHistory": int, "persistentClient": bool, "postRenderers": list,
        "releaseName": str, "rollback": dict, "serviceAccountName": str, "storageNamespace": str, "suspend": bool,
        "targetNamespace": str, "test": dict, "timeout": str, "uninstall": dict,
        "upgrade": {**REMEDIATION, "cleanupOnFail": bool, "crds": str, "disableHooks": bool, "disableWait": bool, "force": bool, "timeout": str},
        "values": None, "valuesFrom": list,
    },
}
HELM_RELEASE_REQUIRED = [("spec",), ("spec", "interval"), ("spec", "chart", "spec", "chart"), ("spec", "chart", "spec", "sourceRef", "name")]
HELM_REPOSITORY = {
    "apiVersion": str, "kind": str, "metadata": METADATA,
    "spec": {"accessFrom": dict, "certSecretRef": dict, "insecure": bool, "interval": str, "passCredentials": bool,
             "provider": str, "secretRef": dict, "suspend": bool, "timeout": str, "type": str, "url": str},
}
FLUX_KUSTOMIZATION = {
    "apiVersion": str, "kind": str, "metadata": METADATA,
    "spec": {
        "commonMetadata": dict, "components": list, "decryption": dict, "dependsOn": list, "force": bool,
        "healthChecks": list, "images": list, "interval": str, "kubeConfig": dict, "patches": list, "path": str,
        "postBuild": {"substitute": None, "substituteFrom": list}, "prune": bool, "retryInterval": str,
        "serviceAccountName": str, "sourceRef": {"apiVersion": str, "kind": str, "name": str, "namespace": str},
        "suspend": bool, "targetNamespace": str, "timeout": str, "wait": bool,
    },
}


def check_shape(value: Any, shape: Any, path: str = "$") -> list[str]:
    """Every key of `value` must be in `shape` (recursively); types must match. Returns the problems."""
    if shape is None:
        return []
    if isinstance(shape, type):
        ok = isinstance(value, shape) and not (shape is int and isinstance(value, bool))
        return [] if ok else [f"{path}: expected {shape.__name__}, got {type(value).__name__}"]
    if isinstance(shape, list):
        if not isinstance(value, list):
            return [f"{path}: expected a list"]
        return [p for i, item in enumerate(value) for p in check_shape(item, shape[0], f"{path}[{i}]")]
    if not isinstance(value, dict):
        return [f"{path}: expected an object"]
    problems = [f"{path}.{k}: unknown field" for k in value if k not in shape]
    return problems + [p for k, v in value.items() if k in shape for p in check_shape(v, shape[k], f"{path}.{k}")]


def missing(doc: dict[str, Any], required: list[tuple[str, ...]]) -> list[str]:
    out = []
    for path in required:
        cur: Any = doc
        for key in path:
            cur = cur.get(key) if isinstance(cur, dict) else None
        if cur in (None, "", [], {}):
            out.append(".".join(path))
    return out


def load(rel: str) -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / rel).read_text(encoding="utf-8"))


def chart_args(values: dict[str, Any]) -> list[str]:
    for obj in render.render_objects(values):
        if obj["kind"] in ("Deployment", "CronJob"):
            spec = obj["spec"]["template"]["spec"] if obj["kind"] == "Deployment" else obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
            return spec["containers"][0]["args"]
    raise AssertionError("no workload rendered")


def substitute(values: Any, pattern: str, variables: dict[str, str]) -> Any:
    """Fills `pattern`-style placeholders in every string, failing on a placeholder with no value."""
    if isinstance(values, dict):
        return {k: substitute(v, pattern, variables) for k, v in values.items()}
    if isinstance(values, list):
        return [substitute(v, pattern, variables) for v in values]
    if isinstance(values, str):
        return re.sub(pattern, lambda m: variables[m.group(1)], values)
    return values


# ---------------------------------------------------------------------------------------------- the checker itself


def test_the_shape_check_catches_misspelled_and_mistyped_fields() -> None:
    doc = load("argocd/applicationset.yaml")
    bad = copy.deepcopy(doc)
    helm = bad["spec"]["template"]["spec"]["source"]["helm"]
    helm["valueObject"] = helm.pop("valuesObject")
    bad["spec"]["generators"][0]["clusters"]["selectors"] = {}
    bad["spec"]["template"]["spec"]["syncPolicy"]["automated"]["prune"] = "yes"
    problems = check_shape(bad, APPLICATION_SET)
    assert "$.spec.template.spec.source.helm.valueObject: unknown field" in problems
    assert "$.spec.generators[0].clusters.selectors: unknown field" in problems
    assert "$.spec.template.spec.syncPolicy.automated.prune: expected bool, got str" in problems


# ---------------------------------------------------------------------------------------------- Argo CD


def test_argocd_example_is_an_applicationset_with_a_cluster_generator() -> None:
    doc = load("argocd/applicationset.yaml")
    assert (doc["apiVersion"], doc["kind"]) == ("argoproj.io/v1alpha1", "ApplicationSet")
    assert check_shape(doc, APPLICATION_SET) == []
    assert missing(doc, APPLICATION_SET_REQUIRED) == []
    assert "clusters" in doc["spec"]["generators"][0]
    source = doc["spec"]["template"]["spec"]["source"]
    assert source["chart"] == "cacerts-sync"
    assert source["targetRevision"] == yaml.safe_load((render.CHART / "Chart.yaml").read_text())["version"]


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_argocd_values_render_per_cluster_with_real_helm(cluster: str) -> None:
    doc = load("argocd/applicationset.yaml")
    helm = doc["spec"]["template"]["spec"]["source"]["helm"]
    # The cluster generator's parameters, as Argo CD's Go templating fills them ({{.name}}, {{.server}}).
    values = substitute(helm["valuesObject"], r"\{\{\s*\.(\w+)\s*\}\}", {"name": cluster, "server": "https://k8s"})
    args = chart_args(values)
    assert f"--cluster-name={cluster}" in args
    assert "--ca-cert-name=ca-cert-{cluster}" in args and "--root-cert-name=root-cert" in args
    assert "watch" in args


def test_argocd_values_without_the_cluster_name_are_refused_by_the_schema() -> None:
    import helm_python

    helm = load("argocd/applicationset.yaml")["spec"]["template"]["spec"]["source"]["helm"]
    values = {k: v for k, v in helm["valuesObject"].items() if k != "clusterName"}
    with pytest.raises(helm_python.HelmValuesError, match="clusterName"):
        render.render_objects(values)


# ---------------------------------------------------------------------------------------------- Flux


def test_flux_examples_are_a_helmrelease_its_source_and_per_cluster_kustomizations() -> None:
    release = load("flux/base/helmrelease.yaml")
    assert (release["apiVersion"], release["kind"]) == ("helm.toolkit.fluxcd.io/v2", "HelmRelease")
    assert check_shape(release, HELM_RELEASE) == []
    assert missing(release, HELM_RELEASE_REQUIRED) == []
    assert release["spec"]["chart"]["spec"]["version"] == yaml.safe_load((render.CHART / "Chart.yaml").read_text())["version"]
    repo = load("flux/base/helmrepository.yaml")
    assert (repo["apiVersion"], repo["kind"]) == ("source.toolkit.fluxcd.io/v1", "HelmRepository")
    assert check_shape(repo, HELM_REPOSITORY) == []
    ref = release["spec"]["chart"]["spec"]["sourceRef"]
    assert (ref["kind"], ref["name"]) == (repo["kind"], repo["metadata"]["name"])
    base = yaml.safe_load((EXAMPLES / "flux/base/kustomization.yaml").read_text())
    assert sorted(base["resources"]) == ["helmrelease.yaml", "helmrepository.yaml"]
    for cluster in CLUSTERS:
        k = load(f"flux/clusters/{cluster}.yaml")
        assert (k["apiVersion"], k["kind"]) == ("kustomize.toolkit.fluxcd.io/v1", "Kustomization")
        assert check_shape(k, FLUX_KUSTOMIZATION) == []
        assert (render.ROOT / k["spec"]["path"]).resolve() == (EXAMPLES / "flux/base").resolve()


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_flux_values_render_per_cluster_with_real_helm(cluster: str) -> None:
    release = load("flux/base/helmrelease.yaml")
    variables = load(f"flux/clusters/{cluster}.yaml")["spec"]["postBuild"]["substitute"]
    assert variables["cluster_name"] == cluster
    # Flux's post-build substitution (envsubst syntax ${var}); every variable must have a value.
    values = substitute(release["spec"]["values"], r"\$\{(\w+)\}", variables)
    args = chart_args(values)
    assert f"--cluster-name={cluster}" in args
    assert "--ca-key-name=ca-key-{cluster}" in args
    objs = render.render_objects(values)
    sa = next(o for o in objs if o["kind"] == "ServiceAccount")
    assert sa["metadata"]["annotations"]["azure.workload.identity/client-id"] == variables["workload_identity_client_id"]

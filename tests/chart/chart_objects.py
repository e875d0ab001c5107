"""What the chart tests share: the rendered objects of a values set and ways to look into them (real Helm,
through `render`)."""

from __future__ import annotations

import copy
from typing import Any

import render

VAULT = "https://contoso-mesh-ca.vault.azure.net"
BASE: dict[str, Any] = {"vaultUrl": VAULT}
CLIENT_ID = "11111111-2222-3333-4444-555555555555"


def objects(values: dict[str, Any] | None = None, **kw: Any) -> list[dict[str, Any]]:
    return render.render_objects(values if values is not None else BASE, **kw)


def kinds(objs: list[dict[str, Any]]) -> list[str]:
    return sorted(o["kind"] for o in objs)


def one(objs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objs if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {kinds(objs)}"
    return found[0]


def pod_spec(objs: list[dict[str, Any]]) -> dict[str, Any]:
    for o in objs:
        if o["kind"] == "CronJob":
            return o["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        if o["kind"] == "Deployment":
            return o["spec"]["template"]["spec"]
    raise AssertionError(f"no workload in {kinds(objs)}")


def pod_labels(objs: list[dict[str, Any]]) -> dict[str, str]:
    for o in objs:
        if o["kind"] == "CronJob":
            return o["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
        if o["kind"] == "Deployment":
            return o["spec"]["template"]["metadata"]["labels"]
    raise AssertionError(f"no workload in {kinds(objs)}")


def container(objs: list[dict[str, Any]]) -> dict[str, Any]:
    (c,) = pod_spec(objs)["containers"]
    return c


def args(values: dict[str, Any]) -> list[str]:
    return container(objects(values))["args"]


def env(objs: list[dict[str, Any]]) -> dict[str, Any]:
    return {e["name"]: e for e in container(objs)["env"]}


def rules(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return one(objs, "Role")["rules"]


def verbs_for(objs: list[dict[str, Any]], group: str, resource: str) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """(verbs, resourceNames) of every rule that grants on group/resource."""
    return [
        (tuple(r["verbs"]), tuple(r.get("resourceNames", ())))
        for r in rules(objs)
        if group in r["apiGroups"] and resource in r["resources"]
    ]


def granted(objs: list[dict[str, Any]], group: str, resource: str) -> set[str]:
    return {v for verbs, _ in verbs_for(objs, group, resource) for v in verbs}


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    render._deep_merge(out, copy.deepcopy(override))
    return out


VALUES_FILES = render.values_files()
VALUES_IDS = [f.stem for f in VALUES_FILES]

#!/usr/bin/env python3
"""Render and lint the cacerts-sync chart with real Helm (helm-python-sdk, Helm's Go SDK via ctypes).

Used by the pytest chart tests (import it) and by `tests/manifests.rs` (run it):

    python3 tests/chart/render.py -f tests/chart/values/watch-ha.yaml      # one values file -> YAML stream
    python3 tests/chart/render.py --all                                      # every tests/chart/values/*.yaml
    python3 tests/chart/render.py --lint -f tests/chart/values/cron.yaml    # strict lint, exit 1 on findings

The output is a YAML stream like `helm template`: one document per object, each preceded by a
`# Source:` comment naming the values file and the template.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "cacerts-sync"
VALUES_DIR = Path(__file__).resolve().parent / "values"

RELEASE = "cacerts-sync"
NAMESPACE = "istio-system"


def values_files() -> list[Path]:
    """Every test values file, sorted so output order is stable."""
    return sorted(VALUES_DIR.glob("*.yaml"))


def load_values(*files: Path | str) -> dict[str, Any]:
    """Read values files and merge them like repeated `helm -f`: later maps merge into earlier ones."""
    merged: dict[str, Any] = {}
    for f in files:
        with open(f, encoding="utf-8") as fh:
            _deep_merge(merged, yaml.safe_load(fh) or {})
    return merged


def _deep_merge(into: dict[str, Any], other: dict[str, Any]) -> None:
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value


def render_templates(
    values: dict[str, Any] | None = None, *, name: str = RELEASE, namespace: str = NAMESPACE
) -> dict[str, str]:
    """Template path -> rendered text, as `helm template` would produce (schema checked first).

    Raises helm_python.HelmValuesError when the values break values.schema.json, and
    helm_python.HelmRenderError when a template fails (including the chart's own `fail` checks).
    """
    with helm.Chart.load(CHART) as chart:
        # Helm's render validates the values against values.schema.json first (as `helm install` does),
        # so a typo surfaces here as HelmValuesError.
        return chart.render(values or {}, name=name, namespace=namespace, is_install=True)


def render_objects(
    values: dict[str, Any] | None = None, *, name: str = RELEASE, namespace: str = NAMESPACE
) -> list[dict[str, Any]]:
    """The rendered Kubernetes objects (NOTES.txt and empty documents left out)."""
    return [obj for _, obj in render_documents(values, name=name, namespace=namespace)]


def render_documents(
    values: dict[str, Any] | None = None, *, name: str = RELEASE, namespace: str = NAMESPACE
) -> list[tuple[str, dict[str, Any]]]:
    """(template path, object) pairs in template order."""
    out: list[tuple[str, dict[str, Any]]] = []
    for path, text in sorted(render_templates(values, name=name, namespace=namespace).items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                out.append((path, doc))
    return out


def notes(values: dict[str, Any] | None = None) -> str:
    """The rendered NOTES.txt."""
    rendered = render_templates(values)
    return next(text for path, text in rendered.items() if path.endswith("NOTES.txt"))


def lint(values: dict[str, Any] | None = None, *, strict: bool = True) -> dict[str, Any]:
    """`helm lint --strict` of the chart with these values; returns Helm's report."""
    return helm.lint(CHART, values, strict=strict, namespace=NAMESPACE)


def lint_findings(report: dict[str, Any]) -> list[str]:
    """Warnings and errors of a lint report (info-level hints such as "icon is recommended" are not findings)."""
    found = [f"{m['path']}: {m['error']}" for m in report.get("messages", []) if m.get("severity", 0) >= 2]
    return found + list(report.get("errors", []))


def _stream(runs: list[tuple[str, dict[str, Any]]]) -> str:
    """A `helm template`-like YAML stream for each (label, values) run."""
    chunks: list[str] = []
    for label, values in runs:
        for path, obj in render_documents(values):
            chunks.append(f"---\n# Source: {label} :: {path}\n" + yaml.safe_dump(obj, sort_keys=False))
    return "".join(chunks)


def _label(files: list[Path]) -> str:
    return " + ".join(str(f.resolve().relative_to(ROOT)) if f.resolve().is_relative_to(ROOT) else str(f) for f in files) or "defaults"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-f", "--values", action="append", default=[], type=Path, help="values file (repeatable: merged in order)")
    parser.add_argument("--all", action="store_true", help="render once per tests/chart/values/*.yaml")
    parser.add_argument("--lint", action="store_true", help="strict lint instead of rendering")
    args = parser.parse_args(argv)

    if args.lint:
        findings = lint_findings(lint(load_values(*args.values)))
        for finding in findings:
            print(finding, file=sys.stderr)
        return 1 if findings else 0
    if args.all:
        runs = [(_label([f]), load_values(f)) for f in values_files()]
    else:
        runs = [(_label(args.values), load_values(*args.values))]
    sys.stdout.write(_stream(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Static checks of the Dockerfile (no container engine runs in CI): multi-stage, static binary, non-root, small.

The binary it copies is built with the same command in CI; README.md ("Static build") shows it.
"""

from __future__ import annotations

import re
from pathlib import Path

import render

DOCKERFILE = (render.ROOT / "Dockerfile").read_text()
DOCKERIGNORE = (render.ROOT / ".dockerignore").read_text().split()


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in instructions():
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def test_image_is_multi_stage_with_a_rust_builder() -> None:
    s = stages()
    assert len(s) == 2
    assert re.match(r"rust:\$\{RUST_VERSION\}-bookworm AS builder", s[0][0][1])
    assert 'ARG RUST_VERSION=1.95' in DOCKERFILE


def test_builder_makes_a_static_release_binary_and_checks_it() -> None:
    run = " ".join(args for ins, args in stages()[0] if ins == "RUN")
    assert "cargo build --release --locked --bin cacerts-sync" in run
    assert 'RUSTFLAGS="-C target-feature=+crt-static"' in run
    assert '--target "$target"' in run
    assert "ldd /out/cacerts-sync" in run and "statically linked" in run


def test_final_stage_is_distroless_static_running_as_numeric_non_root() -> None:
    final = stages()[-1]
    assert final[0][1] == "gcr.io/distroless/static-debian12:nonroot"
    users = [args for ins, args in final if ins == "USER"]
    assert users == ["65532:65532"]
    assert ("COPY", "--from=builder /out/cacerts-sync /usr/local/bin/cacerts-sync") in final
    # Exec form: there is no shell in the image.
    entry = [args for ins, args in final if ins == "ENTRYPOINT"]
    assert entry == ['["/usr/local/bin/cacerts-sync"]']
    assert not any(ins == "RUN" for ins, _ in final)


def test_chart_runs_the_image_as_the_user_it_declares() -> None:
    values = render.load_values(render.CHART / "values.yaml")
    assert values["podSecurityContext"]["runAsUser"] == 65532
    assert values["securityContext"]["runAsUser"] == 65532


def test_build_context_leaves_out_build_output_and_non_rust_files() -> None:
    for entry in ("target", "**/target", ".git", "helm", "jobs", "tests/chart"):
        assert entry in DOCKERIGNORE
    # The workspace member must stay in the context, or cargo cannot load the workspace.
    assert not any(Path(e).parts[:2] == ("tests", "testkit") for e in DOCKERIGNORE)
    assert "tests" not in DOCKERIGNORE and "src" not in DOCKERIGNORE

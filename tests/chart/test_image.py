"""Static checks of the Dockerfile: one final stage FROM scratch, whichever stage makes the binary.

tests/image.sh builds and runs the image for real with buildah (`--build-arg BINARY_FROM=prebuilt`); these checks
keep the structure that makes that build the one `docker build .` users get.
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


def stage(name: str) -> list[tuple[str, str]]:
    return next(s for s in stages() if s[0][1].endswith(f" AS {name}"))


def global_args() -> dict[str, str]:
    """ARGs before the first FROM (the only ones a FROM line can use)."""
    out = {}
    for ins, args in instructions():
        if ins == "FROM":
            break
        if ins == "ARG":
            key, _, value = args.partition("=")
            out[key] = value
    return out


def test_the_binary_comes_from_the_builder_by_default_and_from_prebuilt_offline() -> None:
    assert global_args() == {"RUST_VERSION": "1.95", "BINARY_FROM": "builder"}
    assert stage("binary")[0] == ("FROM", "${BINARY_FROM} AS binary")
    assert stage("builder")[0] == ("FROM", "rust:${RUST_VERSION}-bookworm AS builder")
    prebuilt = stage("prebuilt")
    assert prebuilt[0] == ("FROM", "scratch AS prebuilt")
    assert ("COPY", "target/image/cacerts-sync target/image/ca-certificates.crt /out/") in prebuilt


def test_builder_makes_a_static_release_binary_checks_it_and_provides_the_same_files() -> None:
    run = " ".join(args for ins, args in stage("builder") if ins == "RUN")
    assert "cargo build --release --locked --bin cacerts-sync" in run
    assert 'RUSTFLAGS="-C target-feature=+crt-static"' in run
    assert '--target "$target"' in run
    assert "ldd /out/cacerts-sync" in run and "statically linked" in run
    assert "/out/cacerts-sync" in run and "/etc/ssl/certs/ca-certificates.crt /out/ca-certificates.crt" in run


def test_final_stage_is_scratch_with_ca_bundle_passwd_and_a_numeric_non_root_user() -> None:
    final = stages()[-1]
    assert final[0] == ("FROM", "scratch")
    assert [args for ins, args in final if ins == "USER"] == ["65532:65532"]
    copies = [args for ins, args in final if ins == "COPY"]
    assert copies == [
        "image/passwd image/group /etc/",
        "--from=binary /out/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt",
        "--from=binary /out/cacerts-sync /usr/local/bin/cacerts-sync",
    ]
    # Exec form: there is no shell in the image.
    assert [args for ins, args in final if ins == "ENTRYPOINT"] == ['["/usr/local/bin/cacerts-sync"]']
    assert not any(ins == "RUN" for ins, _ in final)


def test_final_stage_carries_the_oci_labels() -> None:
    labels = " ".join(args for ins, args in stages()[-1] if ins == "LABEL")
    for key in ("title", "description", "source", "licenses", "version", "revision"):
        assert f"org.opencontainers.image.{key}=" in labels


def test_passwd_and_group_name_the_user_the_image_runs_as() -> None:
    passwd = (render.ROOT / "image" / "passwd").read_text().splitlines()
    group = (render.ROOT / "image" / "group").read_text().splitlines()
    assert "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin" in passwd
    assert "nonroot:x:65532:" in group


def test_chart_runs_the_image_as_the_user_it_declares() -> None:
    values = render.load_values(render.CHART / "values.yaml")
    assert values["podSecurityContext"]["runAsUser"] == 65532
    assert values["securityContext"]["runAsUser"] == 65532


def test_build_context_leaves_out_build_output_but_the_prebuilt_files() -> None:
    for entry in ("target", "**/target", ".git", "helm", "jobs", "tests/chart"):
        assert entry in DOCKERIGNORE
    # Exceptions come last: the last matching pattern wins.
    assert DOCKERIGNORE[-2:] == ["!target/image/cacerts-sync", "!target/image/ca-certificates.crt"]
    # The workspace member must stay in the context, or cargo cannot load the workspace.
    assert not any(Path(e).parts[:2] == ("tests", "testkit") for e in DOCKERIGNORE)
    assert "tests" not in DOCKERIGNORE and "src" not in DOCKERIGNORE and "image" not in DOCKERIGNORE

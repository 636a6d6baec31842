"""`make images` (infra/images.py): base images pinned by digest or refused, the build and
push commands for the stack's ECR repositories, Dockerfiles without a default base."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from infra import images

REPO = Path(__file__).resolve().parent.parent
ECR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/labelstack-dev"
SAM2_BASE = "nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04@sha256:" + "c" * 64
BOOT_BASE = "python:3.11.14-slim-bookworm@sha256:" + "d" * 64


@pytest.fixture
def outputs(tmp_path: Path) -> Path:
    f = tmp_path / "outputs.json"
    f.write_text(json.dumps({"sam2BackendRepositoryUrl": f"{ECR}/sam2-backend",
                             "bootstrapRepositoryUrl": f"{ECR}/bootstrap"}))
    return f


def run(*args: str):
    return CliRunner().invoke(images.app, list(args))


@pytest.mark.parametrize("ref", ["nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04",
                                 "python:latest", "python@sha256:abc", ""])
def test_a_base_image_without_digest_is_refused(outputs: Path, ref: str) -> None:
    r = run("--stack", "dev", "--outputs-file", str(outputs), "--sam2-base", ref,
            "--bootstrap-base", BOOT_BASE, "--dry-run")
    assert r.exit_code == 2, r.output
    assert "SAM2_BASE_IMAGE" in r.output and "pinned by digest" in r.output
    assert "buildx build" not in r.output  # refused before anything runs


def test_dry_run_builds_both_images_for_the_stack_repositories(outputs: Path) -> None:
    r = run("--stack", "dev", "--outputs-file", str(outputs), "--sam2-base", SAM2_BASE,
            "--bootstrap-base", BOOT_BASE, "--dry-run")
    assert r.exit_code == 0, r.output
    assert f"-t {ECR}/sam2-backend:dry-run" in r.output
    assert f"-t {ECR}/bootstrap:dry-run" in r.output
    assert f"--build-arg BASE_IMAGE={SAM2_BASE}" in r.output
    assert f"--build-arg BASE_IMAGE={BOOT_BASE}" in r.output
    assert "aws ecr get-login-password --region eu-west-1" in r.output
    assert "TORCH_INDEX_URL" not in r.output


def test_cpu_variant_uses_cpu_wheels(outputs: Path) -> None:
    r = run("--stack", "dev", "--outputs-file", str(outputs), "--sam2-base", SAM2_BASE,
            "--bootstrap-base", BOOT_BASE, "--dry-run", "--cpu")
    assert f"TORCH_INDEX_URL={images.CPU_TORCH_INDEX}" in r.output
    assert "SAM2_DEVICE=cpu" in r.output


def test_missing_repositories_say_run_pulumi_up_first(tmp_path: Path) -> None:
    f = tmp_path / "outputs.json"
    f.write_text("{}")
    r = run("--stack", "dev", "--outputs-file", str(f), "--sam2-base", SAM2_BASE,
            "--bootstrap-base", BOOT_BASE, "--dry-run")
    assert r.exit_code == 2 and "pulumi up" in r.output


def test_pushed_digest_read_from_buildx_metadata(tmp_path: Path) -> None:
    meta = tmp_path / "m.json"
    meta.write_text(json.dumps({"containerimage.digest": "sha256:" + "e" * 64}))
    assert images.pushed_digest(meta) == "sha256:" + "e" * 64
    meta.write_text("{}")
    with pytest.raises(RuntimeError, match="no image digest"):
        images.pushed_digest(meta)


@pytest.mark.parametrize("dockerfile", ["backend/Dockerfile", "bootstrap/Dockerfile"])
def test_dockerfiles_take_the_base_by_argument_with_no_default(dockerfile: str) -> None:
    text = (REPO / dockerfile).read_text()
    froms = re.findall(r"^FROM (.+)$", text, re.M)
    assert froms == ["${BASE_IMAGE}"]
    assert re.search(r"^ARG BASE_IMAGE$", text, re.M)  # no "=default"

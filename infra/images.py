"""Build and push the project's two images (SAM2 backend, bootstrap Job) to the stack's ECR
repositories, and print the ``pulumi config set`` lines for their digests.

``make images STACK=dev SAM2_BASE_IMAGE=...@sha256:... BOOTSTRAP_BASE_IMAGE=...@sha256:...``
runs ``python -m infra.images``. Base images must be pinned by digest: a reference without
``@sha256:<64 hex>`` is refused before anything runs. Needs Docker with buildx, the AWS CLI
and the Pulumi CLI on the machine that runs it (not inside the VPC: only ECR is reached).
See docs/images.md.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

ROOT = Path(__file__).resolve().parent.parent
_DIGEST_REF = re.compile(r"^[a-z0-9][a-z0-9._/:-]*@sha256:[0-9a-f]{64}$")
_IMAGE_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
#: CPU torch wheels for the backend's CPU variant (labelstack:gpuEnabled=false).
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"


class ImageError(ValueError):
    """Bad input: names the field, the value and the fix."""


def check_base(field: str, ref: str) -> str:
    """``ref`` when it is pinned by digest; else :class:`ImageError` naming ``field``."""
    if not _DIGEST_REF.fullmatch(ref or ""):
        raise ImageError(
            f"{field}: got {ref!r}; base images must be pinned by digest "
            "(name:tag@sha256:<64 hex>). Fix: look the digest up with `docker buildx "
            "imagetools inspect <name:tag>` (or your registry mirror) and pass it")
    return ref


@dataclass(frozen=True)
class Image:
    """One image to build: its ECR repository, Dockerfile and build arguments."""

    key: str  # sam2-backend | bootstrap
    config_key: str  # labelstack:<...>ImageDigest
    repository: str
    dockerfile: str
    build_args: dict[str, str]


def plan_images(outputs: dict, sam2_base: str, bootstrap_base: str, cpu: bool = False
                ) -> list[Image]:
    """The two images for a stack whose outputs are ``outputs`` (``pulumi stack output
    --json``)."""
    sam2_base = check_base("SAM2_BASE_IMAGE", sam2_base)
    bootstrap_base = check_base("BOOTSTRAP_BASE_IMAGE", bootstrap_base)
    repos = {}
    for key, output in (("sam2-backend", "sam2BackendRepositoryUrl"),
                        ("bootstrap", "bootstrapRepositoryUrl")):
        if not outputs.get(output):
            raise ImageError(f"stack output {output}: missing; run `pulumi up` once first (it "
                             "creates the ECR repositories), then `make images`")
        repos[key] = outputs[output]
    sam2_args = {"BASE_IMAGE": sam2_base}
    if cpu:
        sam2_args.update(TORCH_INDEX_URL=CPU_TORCH_INDEX, SAM2_DEVICE="cpu")
    return [Image("sam2-backend", "labelstack:sam2ImageDigest", repos["sam2-backend"],
                  "backend/Dockerfile", sam2_args),
            Image("bootstrap", "labelstack:bootstrapImageDigest", repos["bootstrap"],
                  "bootstrap/Dockerfile", {"BASE_IMAGE": bootstrap_base})]


def build_command(image: Image, tag: str, metadata_file: Path) -> list[str]:
    """``docker buildx build --push`` for ``image`` (linux/amd64, the node groups' arch)."""
    cmd = ["docker", "buildx", "build", "--platform", "linux/amd64", "--push",
           "--provenance=false", "-f", image.dockerfile, "-t", f"{image.repository}:{tag}",
           "--metadata-file", str(metadata_file)]
    for name, value in sorted(image.build_args.items()):
        cmd += ["--build-arg", f"{name}={value}"]
    return [*cmd, "."]


def login_command(repository: str) -> str:
    """Shell line logging Docker in to the repository's registry."""
    registry = repository.split("/", 1)[0]
    region = registry.split(".")[3]
    return (f"aws ecr get-login-password --region {region} | docker login --username AWS "
            f"--password-stdin {registry}")


def pushed_digest(metadata_file: Path) -> str:
    """The pushed image's digest from buildx's metadata file."""
    digest = json.loads(metadata_file.read_text()).get("containerimage.digest", "")
    if not _IMAGE_DIGEST.fullmatch(digest):
        raise RuntimeError(f"{metadata_file}: no image digest ({digest!r}); did the push fail?")
    return digest


def git_tag() -> str:
    """The commit being built (ECR tags are immutable: one tag per commit); refuses a dirty
    tree, whose image would not match any commit."""
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "backend", "bootstrap"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout
    if dirty.strip():
        raise ImageError("backend/ or bootstrap/ has uncommitted changes; commit them first "
                         "(the image tag is the commit)")
    return subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout.strip()


app = typer.Typer(add_completion=False)


@app.command()
def main(stack: Annotated[str, typer.Option(help="Pulumi stack whose ECR repositories get "
                                            "the images.")],
         sam2_base: Annotated[str, typer.Option(help="SAM2 backend base image, "
                                                "name:tag@sha256:<digest>.")] = "",
         bootstrap_base: Annotated[str, typer.Option(help="Bootstrap base image, "
                                                     "name:tag@sha256:<digest>.")] = "",
         cpu: Annotated[bool, typer.Option(help="Build the backend's CPU variant.")] = False,
         dry_run: Annotated[bool, typer.Option(help="Print the commands, run nothing.")]
         = False,
         outputs_file: Annotated[Path | None, typer.Option(
             help="`pulumi stack output --json` saved to a file (default: ask Pulumi).")]
         = None) -> None:
    """Build and push both images; print the config lines for their digests.

    Exit codes: 0 ok; 2 bad input (names the value and the fix); 3 docker, aws or pulumi
    failed.
    """
    try:
        if outputs_file is not None:
            outputs = json.loads(outputs_file.read_text())
        else:
            outputs = json.loads(subprocess.run(
                ["pulumi", "stack", "output", "--json", "--stack", stack], cwd=ROOT,
                capture_output=True, text=True, check=True).stdout)
        images = plan_images(outputs, sam2_base, bootstrap_base, cpu)
        tag = "dry-run" if dry_run else git_tag()
    except ImageError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except (OSError, subprocess.CalledProcessError, json.JSONDecodeError) as exc:
        typer.echo(f"error: reading the stack outputs of {stack} failed: {exc}", err=True)
        raise typer.Exit(3) from None
    lines = []
    for image in images:
        meta = ROOT / ".images" / f"{image.key}.json"
        login, build = login_command(image.repository), build_command(image, tag, meta)
        typer.echo(f"$ {login}\n$ {shlex.join(build)}")
        if dry_run:
            continue
        try:
            meta.parent.mkdir(exist_ok=True)
            subprocess.run(login, shell=True, check=True, cwd=ROOT)  # a pipe of fixed text
            subprocess.run(build, check=True, cwd=ROOT)
            digest = pushed_digest(meta)
        except (subprocess.CalledProcessError, RuntimeError, OSError) as exc:
            typer.echo(f"error: building {image.key} failed: {exc}", err=True)
            raise typer.Exit(3) from None
        lines.append(f"pulumi config set --stack {stack} {image.config_key} {digest}")
    if lines:
        typer.echo("\nPushed. Record the digests, then `pulumi up`:\n" + "\n".join(lines))


if __name__ == "__main__":
    app()

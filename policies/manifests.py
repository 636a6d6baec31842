"""Run the pack's Kubernetes workload rules on rendered manifests (e.g. ``helm template``
output), where a Helm release is one opaque resource to the analyzer:
``python -m policies.manifests rendered.yaml [...]`` exits 1 on a mandatory violation."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from infra.offline import Plan, PlannedResource
from policies.offline import Violation, evaluate


def type_token(doc: Mapping[str, Any]) -> str:
    """``apps/v1`` + ``Deployment`` -> ``kubernetes:apps/v1:Deployment`` (core group for v1)."""
    api = str(doc.get("apiVersion", ""))
    return f"kubernetes:{api if '/' in api else 'core/' + api}:{doc.get('kind')}"


def evaluate_manifests(docs: Iterable[Mapping[str, Any] | None],
                       config: Mapping[str, Any] | None = None) -> list[Violation]:
    """Violations of every rule on the Kubernetes objects in ``docs``."""
    resources = []
    for doc in docs:
        if not doc or "kind" not in doc:
            continue
        meta = doc.get("metadata") or {}
        name = "/".join(p for p in (meta.get("namespace"), meta.get("name")) if p)
        resources.append(PlannedResource(type_token(doc), name or str(doc["kind"]), dict(doc)))
    return evaluate(Plan("manifests", {}, resources, {}, []), config)


app = typer.Typer(add_completion=False)


@app.command()
def main(files: Annotated[list[Path], typer.Argument(help="YAML files, multi-document.")]
         ) -> None:
    """Print each violation; exit 1 when one is mandatory."""
    docs = [d for f in files for d in yaml.safe_load_all(f.read_text())]
    found = evaluate_manifests(docs)
    for v in found:
        typer.echo(f"{v.enforcement:9} {v.rule:32} {v.resource}: {v.message}")
    raise typer.Exit(1 if any(v.mandatory for v in found) else 0)


if __name__ == "__main__":
    app()

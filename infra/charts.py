"""Pins of the upstream Helm charts the Kubernetes layer installs, and an offline renderer.

A deploy pulls each chart from its Helm repository at the pinned version (``pulumi up`` with
``kubernetes.helm.v4.Chart``). Tests and ``make plan`` cannot reach those repositories: they
render unmodified copies kept next to the repository (``../shared/charts/<folder>``, or the
folder named by ``LABELSTACK_CHARTS_DIR``) with ``helm-python-sdk``, and fail loudly when a
copy's version differs from the pin, so what is tested is what is deployed.

Light at import time (stdlib + PyYAML); ``helm_python`` is imported inside the functions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
#: Environment variable naming another folder of upstream chart copies.
CHARTS_DIR_ENV = "LABELSTACK_CHARTS_DIR"


@dataclass(frozen=True)
class ChartPin:
    """One upstream chart: name, version, the Helm repository a deploy pulls it from, and the
    folder of its offline copy under the shared charts directory."""

    chart: str
    version: str
    repo: str
    folder: str

    def __str__(self) -> str:
        return f"{self.chart} {self.version} ({self.repo})"


LABEL_STUDIO = ChartPin("label-studio", "2.0.5", "https://charts.heartex.com/", "label-studio")
AWS_LOAD_BALANCER_CONTROLLER = ChartPin(
    "aws-load-balancer-controller", "3.5.0", "https://aws.github.io/eks-charts",
    "aws-load-balancer-controller")
EXTERNAL_SECRETS = ChartPin(
    "external-secrets", "2.9.0", "https://charts.external-secrets.io", "external-secrets")
CLUSTER_AUTOSCALER = ChartPin(
    "cluster-autoscaler", "9.59.0", "https://kubernetes.github.io/autoscaler",
    "cluster-autoscaler")
NVIDIA_DEVICE_PLUGIN = ChartPin(
    "nvidia-device-plugin", "0.20.0", "https://nvidia.github.io/k8s-device-plugin",
    "nvidia-device-plugin")

#: Every chart the program installs, by chart name.
PINS: dict[str, ChartPin] = {p.chart: p for p in (
    LABEL_STUDIO, AWS_LOAD_BALANCER_CONTROLLER, EXTERNAL_SECRETS, CLUSTER_AUTOSCALER,
    NVIDIA_DEVICE_PLUGIN)}


#: Kinds that live outside namespaces (Helm leaves their metadata.namespace unset).
CLUSTER_SCOPED_KINDS = frozenset({
    "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
    "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration", "IngressClass",
    "PriorityClass", "StorageClass", "PersistentVolume", "APIService", "RuntimeClass",
    "ClusterSecretStore", "ClusterExternalSecret", "IngressClassParams"})


class ChartError(RuntimeError):
    """An upstream chart copy is missing, differs from its pin, or rejects the values."""


def charts_dir() -> Path:
    """Where the offline chart copies live: ``$LABELSTACK_CHARTS_DIR`` or ``../shared/charts``."""
    override = os.environ.get(CHARTS_DIR_ENV)
    return Path(override) if override else ROOT.parent / "shared" / "charts"


def upstream_chart_dir(pin: ChartPin) -> Path:
    """The folder holding ``pin``'s chart; raises :class:`ChartError` when it is missing or its
    ``Chart.yaml`` names another chart or version than the pin."""
    folder = charts_dir() / pin.folder
    chart_yaml = folder / "Chart.yaml"
    if not chart_yaml.is_file():
        raise ChartError(
            f"chart {pin}: no {chart_yaml}. Fix: put an unmodified copy of {pin.chart} "
            f"{pin.version} from {pin.repo} there, or set {CHARTS_DIR_ENV} to its parent folder")
    meta = yaml.safe_load(chart_yaml.read_text()) or {}
    found = (str(meta.get("name")), str(meta.get("version")))
    if found != (pin.chart, pin.version):
        raise ChartError(
            f"chart {pin}: {chart_yaml} holds {found[0]} {found[1]}, the program pins "
            f"{pin.chart} {pin.version}. Fix: update the pin in infra/charts.py (and re-check "
            f"the values) or replace the copy with {pin.chart} {pin.version}")
    return folder


def validate_values(chart_dir: Path | str, values: dict[str, Any]) -> None:
    """Check ``values`` against the chart's ``values.schema.json`` (a chart without one
    passes); raises :class:`ChartError` naming the chart and the schema's complaint."""
    import helm_python

    chart = helm_python.Chart.load(str(chart_dir))
    try:
        chart.validate_schema(values)
    except helm_python.HelmError as exc:
        raise ChartError(f"values for chart {chart.name} {chart.version} do not pass its "
                         f"values.schema.json: {exc}") from exc


def render(chart_dir: Path | str, values: dict[str, Any], *, name: str, namespace: str,
           include_crds: bool = False) -> list[dict[str, Any]]:
    """Render a chart offline as Helm would install it: schema-validated values, then every
    template's objects (plus ``crds/`` when ``include_crds``) as dicts, in a stable order
    (by template path, then position), namespaced objects placed in ``namespace`` as an
    install places them. ``lookup`` sees no cluster. Raises
    :class:`ChartError` for values the schema rejects or templates that fail."""
    import helm_python

    chart = helm_python.Chart.load(str(chart_dir))
    label = f"{chart.name} {chart.version}"
    try:
        chart.validate_schema(values)
    except helm_python.HelmError as exc:
        raise ChartError(f"values for chart {label} do not pass its values.schema.json: "
                         f"{exc}") from exc
    try:
        manifests = chart.render(values, name=name, namespace=namespace)
    except helm_python.HelmError as exc:
        raise ChartError(f"chart {label} failed to render (release {name!r}, namespace "
                         f"{namespace!r}): {exc}") from exc
    sources = sorted((path, text) for path, text in manifests.items()
                     if path.endswith((".yaml", ".yml")))
    if include_crds:
        sources = sorted((c["filename"], c["data"]) for c in chart.crds) + sources
    objects: list[dict[str, Any]] = []
    for _path, text in sources:
        objects.extend(doc for doc in yaml.safe_load_all(text) if isinstance(doc, dict) and doc)
    for obj in objects:
        meta = obj.setdefault("metadata", {})
        if obj.get("kind") not in CLUSTER_SCOPED_KINDS and not meta.get("namespace"):
            meta["namespace"] = namespace
    return objects

"""The SAM2 ML backend from this repository's chart (``helm/sam2-backend``), its basic-auth
Secret and the NetworkPolicy that lets it call Label Studio for task images.

Values come from :func:`sam2_values` (plain values in, a dict out): the program calls it
inside ``Output.apply`` and the tests render the chart with it, so both see the same objects.
GPU stacks layer ``values-gpu.yaml``, CPU stacks ``values-cpu.yaml`` under the stack's values.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pulumi
import yaml

from infra.k8s.label_studio_values import CONTAINER_PORT as LABEL_STUDIO_PORT
from infra.k8s.label_studio_values import RELEASE as LABEL_STUDIO_RELEASE
from infra.k8s.netpol import LABEL_STUDIO_POD_LABELS, SAM2_POD_LABELS, SAM2_PORT

if TYPE_CHECKING:
    from infra.k8s.base import KubernetesBase

ROOT = Path(__file__).resolve().parent.parent.parent
CHART_DIR = ROOT / "helm" / "sam2-backend"
#: Release and object names: the bootstrap spec's default URL and the IRSA trust use them.
RELEASE = "sam2-backend"
#: Secret with the basic-auth credentials Label Studio sends (and the bootstrap registers).
AUTH_SECRET = "sam2-backend-auth"
AUTH_USER = "label-studio"
#: Label Studio's in-cluster Service (the official chart names it ``<release>-ls-app``).
LABEL_STUDIO_SERVICE_PORT = 80
#: How long ``pulumi up`` waits for the backend to become ready.
READY_TIMEOUT_SECONDS = 1800
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def service_url(namespace: str) -> str:
    """The backend's in-cluster URL, as registered in Label Studio."""
    return f"http://{RELEASE}.{namespace}.svc.cluster.local:{SAM2_PORT}"


def label_studio_service_url(namespace: str) -> str:
    """Label Studio's in-cluster URL (its chart's app Service)."""
    return (f"http://{LABEL_STUDIO_RELEASE}-ls-app.{namespace}.svc.cluster.local:"
            f"{LABEL_STUDIO_SERVICE_PORT}")


@dataclass(frozen=True)
class Sam2Site:
    """What one stack's SAM2 backend needs (all plain values)."""

    namespace: str
    image_repository: str
    #: ``sha256:<64 hex>`` from ``make images``.
    image_digest: str
    role_arn: str
    region: str
    #: ``s3://<models bucket>/<key>`` and its sha256.
    weights_uri: str
    weights_sha256: str
    model: str = "large"
    gpu: bool = True
    s3_cidrs: Sequence[str] = ()
    endpoint_cidrs: Sequence[str] = ()
    #: Secret + key of the Label Studio API key the backend downloads task images with.
    api_key_secret: str = ""
    api_key_key: str = "api-key"
    #: Extra chart values (e.g. ``limits``), merged last.
    overrides: Mapping[str, Any] = field(default_factory=dict)


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's merge: maps merge recursively, everything else is replaced."""
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def overlay(gpu: bool) -> dict[str, Any]:
    """``values-gpu.yaml`` or ``values-cpu.yaml`` of the chart."""
    return yaml.safe_load((CHART_DIR / f"values-{'gpu' if gpu else 'cpu'}.yaml").read_text())


def sam2_values(site: Sam2Site) -> dict[str, Any]:
    """The values the program passes to ``helm/sam2-backend`` for ``site`` (chart defaults
    fill the rest)."""
    if not _DIGEST.fullmatch(site.image_digest):
        raise ValueError(f"labelstack:sam2ImageDigest: got {site.image_digest!r}; must be "
                         "sha256:<64 hex> (`make images` prints it)")
    stack = {
        "fullnameOverride": RELEASE,
        # Pulumi waits for the Deployment: allow a GPU node to join and the weights to load
        "deploymentAnnotations": {"pulumi.com/timeoutSeconds": str(READY_TIMEOUT_SECONDS)},
        "image": {"repository": site.image_repository, "digest": site.image_digest},
        "model": {"config": site.model},
        "weights": {"uri": site.weights_uri, "sha256": site.weights_sha256},
        "auth": {"existingSecret": AUTH_SECRET, "userKey": "username",
                 "passwordKey": "password"},
        "serviceAccount": {"create": True, "name": RELEASE, "roleArn": site.role_arn},
        "labelStudio": {"url": label_studio_service_url(site.namespace),
                        "apiKey": {"existingSecret": site.api_key_secret,
                                   "key": site.api_key_key}},
        "s3": {"region": site.region},
        "service": {"port": SAM2_PORT},
        "networkPolicy": {"enabled": True,
                          "labelStudioPodSelector": dict(LABEL_STUDIO_POD_LABELS),
                          "labelStudioPort": LABEL_STUDIO_PORT,
                          "s3Cidrs": list(site.s3_cidrs),
                          "awsEndpointCidrs": list(site.endpoint_cidrs)},
    }
    return _merge(_merge(overlay(site.gpu), stack), site.overrides)


def label_studio_from_sam2_policy(namespace: str) -> dict[str, Any]:
    """Label Studio accepts the backend's image downloads (its own policies admit only the
    load balancer)."""
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "label-studio-from-sam2", "namespace": namespace,
                         "labels": {"app.kubernetes.io/part-of": "labelstack"}},
            "spec": {"podSelector": {"matchLabels": dict(LABEL_STUDIO_POD_LABELS)},
                     "policyTypes": ["Ingress"],
                     "ingress": [{"from": [{"podSelector": {"matchLabels":
                                                            dict(SAM2_POD_LABELS)}}],
                                  "ports": [{"protocol": "TCP", "port": LABEL_STUDIO_PORT}]}]}}


@dataclass
class Sam2BackendArgs:
    """Inputs of :class:`Sam2Backend`."""

    #: Provider, namespace and default-deny policies (:class:`infra.k8s.base.KubernetesBase`).
    base: KubernetesBase
    namespace: str
    image_repository: pulumi.Input[str]
    image_digest: str
    #: The SAM2 IRSA role (read the models bucket only).
    role_arn: pulumi.Input[str]
    region: pulumi.Input[str]
    models_bucket: pulumi.Input[str]
    weights_key: str
    weights_sha256: str
    model: str
    gpu: bool
    s3_cidrs: pulumi.Input[Sequence[str]]
    endpoint_cidrs: Sequence[str]
    #: Secret + key holding the Label Studio API key (for task image downloads).
    api_key_secret: str
    api_key_key: str
    #: What the chart waits for (the GPU plumbing, Label Studio's chart).
    wait_for: Sequence[pulumi.Resource] = ()


class Sam2Backend(pulumi.ComponentResource):
    """Basic-auth Secret, the chart, and Label Studio's ingress from the backend."""

    url: pulumi.Output[str]
    auth_secret_name: str = AUTH_SECRET

    def __init__(self, name: str, args: Sam2BackendArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("labelstack:k8s:Sam2Backend", name, None, opts)
        import pulumi_kubernetes as k8s
        import pulumi_random as random

        base = args.base
        password = random.RandomPassword(f"{name}-auth-password", length=40, special=False,
                                         opts=pulumi.ResourceOptions(parent=self))
        self.auth_secret = k8s.core.v1.Secret(
            f"{name}-auth", metadata={"name": AUTH_SECRET, "namespace": args.namespace,
                                      "labels": {"app.kubernetes.io/part-of": "labelstack"}},
            type="kubernetes.io/basic-auth",
            string_data={"username": AUTH_USER, "password": password.result},
            opts=base.child_opts(parent=self))
        policy = label_studio_from_sam2_policy(args.namespace)
        netpol = k8s.networking.v1.NetworkPolicy(
            f"{name}-netpol-{policy['metadata']['name']}", metadata=policy["metadata"],
            spec=policy["spec"], opts=base.child_opts(parent=self))
        values = pulumi.Output.all(
            args.image_repository, args.role_arn, args.region, args.models_bucket,
            args.s3_cidrs).apply(lambda a: sam2_values(Sam2Site(
                namespace=args.namespace, image_repository=a[0],
                image_digest=args.image_digest, role_arn=a[1], region=a[2],
                weights_uri=f"s3://{a[3]}/{args.weights_key}",
                weights_sha256=args.weights_sha256, model=args.model, gpu=args.gpu,
                s3_cidrs=list(a[4] or []), endpoint_cidrs=list(args.endpoint_cidrs),
                api_key_secret=args.api_key_secret, api_key_key=args.api_key_key)))
        self.chart = k8s.helm.v4.Chart(
            RELEASE, chart=str(CHART_DIR), namespace=args.namespace, values=values,
            opts=base.child_opts(parent=self, depends_on=[self.auth_secret, netpol,
                                                          *args.wait_for]))
        self.url_plain = service_url(args.namespace)
        self.url = pulumi.Output.from_input(self.url_plain)
        self.register_outputs({"url": self.url})

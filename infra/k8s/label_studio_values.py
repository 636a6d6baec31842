"""The Helm values of the Label Studio chart, built by one function for ``pulumi up`` and tests.

``helm/label-studio/values.yaml`` holds what every stack shares; :func:`label_studio_values`
merges on top what one stack needs (database, bucket, IRSA role, URL, image digest, sizing by
profile) and Label Studio's settings from :func:`infra.label_studio_settings.hardened_env`.
Inputs are plain values (no Pulumi outputs): the program calls it inside ``Output.apply`` and
the tests call it with a stack's planned values, so both render exactly the same chart.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from infra.label_studio_settings import hardened_env

ROOT = Path(__file__).resolve().parent.parent.parent
VALUES_FILE = ROOT / "helm" / "label-studio" / "values.yaml"
#: Helm release name; with it the chart names the Deployment/Service ``label-studio-ls-app``.
RELEASE = "label-studio"
#: Secret (kept by External Secrets Operator) with the database password under ``password``.
DB_SECRET = "label-studio-db"
#: Secret (generated in the cluster by External Secrets Operator) holding Django's SECRET_KEY.
DJANGO_SECRET = "label-studio-django"
DJANGO_SECRET_KEY = "secret-key"
#: Secret the program generates (infra/k8s/bootstrap_job.py) with Label Studio's first user
#: and that user's legacy API token, read on first start; the bootstrap Job and the SAM2
#: backend authenticate with the token (a personal access token cannot be set ahead of time,
#: hence legacy tokens on: LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN).
ADMIN_SECRET = "labelstack-admin"
ADMIN_ENV_SECRET_KEYS = {"LABEL_STUDIO_USERNAME": "username",
                         "LABEL_STUDIO_PASSWORD": "password",
                         "LABEL_STUDIO_USER_TOKEN": "api-token"}
#: Port of the chart's Service and of the nginx container behind it.
SERVICE_PORT = 80
CONTAINER_PORT = 8085
_DIGEST_REF = re.compile(r"^[\w.-]+@sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class Sizing:
    """Replicas and resources of one profile."""

    replicas: int
    cpu_request: str
    memory_request: str
    cpu_limit: str
    memory_limit: str


#: Sizing by environment profile (the app container; nginx and init keep the file's values).
SIZING: dict[str, Sizing] = {
    "ephemeral": Sizing(1, "250m", "768Mi", "1", "1536Mi"),
    "dev": Sizing(1, "500m", "1Gi", "2", "2Gi"),
    "staging": Sizing(2, "500m", "1Gi", "2", "2Gi"),
    "prod": Sizing(3, "1", "2Gi", "4", "4Gi"),
}


@dataclass(frozen=True)
class LabelStudioSite:
    """What one stack's Label Studio needs to know (all plain values)."""

    profile: str
    #: The URL users open: ``https://<host>`` (exact origin, no trailing slash).
    origin: str
    db_host: str
    db_name: str
    db_user: str
    region: str
    bucket: str
    #: Key prefix (folder) of uploads and exports in the bucket, without trailing slash.
    folder: str
    role_arn: str
    #: ``<repository>`` and ``<version>@sha256:<digest>`` of the Label Studio image.
    image_registry: str
    image_repository: str
    image_tag: str
    #: Ranges taken off Label Studio's SSRF block list (the cluster's Service range).
    ml_backend_cidrs: Sequence[str] = ()
    #: Namespace of the release (for the in-cluster host names).
    namespace: str = "labelstack"
    #: Extra app-only environment (documented overrides); never secrets.
    extra_env: Mapping[str, str] = field(default_factory=dict)


def base_values() -> dict[str, Any]:
    """``helm/label-studio/values.yaml``."""
    return yaml.safe_load(VALUES_FILE.read_text())


def label_studio_env(site: LabelStudioSite) -> dict[str, str]:
    """The environment every Label Studio container gets from the values (not the chart's own
    database/storage variables): the hardened settings for this site's URL."""
    return hardened_env(host_url=site.origin, secure_cookies=site.origin.startswith("https://"),
                        ml_backend_cidrs=list(site.ml_backend_cidrs),
                        allowed_hosts=allowed_hosts(site))


def allowed_hosts(site: LabelStudioSite) -> list[str]:
    """The Host headers Label Studio answers: the URL's host, and its Service's in-cluster
    names (for in-cluster callers)."""
    service = f"{RELEASE}-ls-app"
    return [urlsplit(site.origin).hostname or "", service, f"{service}.{site.namespace}",
            f"{service}.{site.namespace}.svc", f"{service}.{site.namespace}.svc.cluster.local"]


def label_studio_values(site: LabelStudioSite) -> dict[str, Any]:
    """The complete values the program passes to the chart for ``site``."""
    if not _DIGEST_REF.fullmatch(site.image_tag):
        raise ValueError(f"Label Studio image tag {site.image_tag!r} is not pinned by digest; "
                         "use <version>@sha256:<64 hex digits>")
    size = SIZING[site.profile]
    values = copy.deepcopy(base_values())
    glob, app = values["global"], values["app"]
    glob["image"].update(registry=site.image_registry, repository=site.image_repository,
                         tag=site.image_tag)
    pg = glob["pgConfig"]
    pg.update(host=site.db_host, dbName=site.db_name, userName=site.db_user)
    pg["password"] = {"secretName": DB_SECRET, "secretKey": "password"}
    glob["persistence"]["config"]["s3"].update(region=site.region, bucket=site.bucket,
                                               folder=site.folder.strip("/"))
    glob["extraEnvironmentVars"] = {**label_studio_env(site),
                                    "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true"}
    glob["extraEnvironmentSecrets"] = {
        "SECRET_KEY": {"secretName": DJANGO_SECRET, "secretKey": DJANGO_SECRET_KEY},
        **{env: {"secretName": ADMIN_SECRET, "secretKey": key}
           for env, key in ADMIN_ENV_SECRET_KEYS.items()}}
    app["extraEnvironmentVars"] = dict(site.extra_env)
    app["replicas"] = size.replicas
    app["resources"] = {"requests": {"cpu": size.cpu_request, "memory": size.memory_request},
                        "limits": {"cpu": size.cpu_limit, "memory": size.memory_limit}}
    app["serviceAccount"]["annotations"] = {"eks.amazonaws.com/role-arn": site.role_arn}
    # the kubelet's probe would send the pod IP as Host, which ALLOWED_HOSTS refuses
    app["readinessProbe"] = {**app["readinessProbe"], "httpGet": {
        **app["readinessProbe"]["httpGet"],
        "httpHeaders": [{"name": "Host", "value": urlsplit(site.origin).hostname}]}}
    if size.replicas > 1:
        selector = {"matchLabels": {"app.kubernetes.io/name": "ls-app",
                                    "app.kubernetes.io/instance": RELEASE}}
        app["topologySpreadConstraints"] = [
            {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
             "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": selector}]
    return values

"""Secrets Label Studio reads, kept out of Pulumi state: External Secrets Operator.

* The ESO controller (official chart, own namespace) has no AWS identity of its own.
* A namespaced ``SecretStore`` in the workloads' namespace authenticates as a dedicated
  service account (``label-studio-db-reader``) whose IRSA role may read exactly one secret,
  the RDS-managed master secret, and decrypt it only through Secrets Manager.
* ``ExternalSecret`` ``label-studio-db`` copies its ``password`` into the Secret the chart
  reads (``global.pgConfig.password``) and refreshes it every hour, so an RDS rotation
  reaches the cluster within the hour (see docs/kubernetes.md for restarting Label Studio).
* ``SECRET_KEY`` is generated in the cluster by ESO's ``Password`` generator once
  (``refreshPolicy: CreatedOnce``): stable across deploys, never in state or in a render.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra import charts
from infra import iam_documents as iam
from infra.identity import irsa_role
from infra.k8s.base import KubernetesBase
from infra.k8s.label_studio_values import DB_SECRET, DJANGO_SECRET, DJANGO_SECRET_KEY

ESO_NAMESPACE = "external-secrets"
#: Service account the SecretStore authenticates as (the IRSA role trusts only it).
DB_READER_SERVICE_ACCOUNT = "label-studio-db-reader"
SECRET_STORE = "aws-secrets-manager"
DB_REFRESH = "1h"
ESO_API = "external-secrets.io/v1"
GENERATORS_API = "generators.external-secrets.io/v1alpha1"


def eso_values() -> dict[str, Any]:
    """Values of the External Secrets Operator chart: CRDs, no cluster-wide stores, hardened
    pods (the chart's defaults already drop ALL and run non-root with a read-only root)."""
    return {
        "installCRDs": True,
        "processClusterStore": False,
        "processClusterExternalSecret": False,
        "crds": {"createClusterExternalSecret": False, "createClusterSecretStore": False,
                 "createPushSecret": False},
        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"},
                      "limits": {"cpu": "500m", "memory": "256Mi"}},
        # health server on, so both probes exist (the chart has them off by default)
        "livenessProbe": {"enabled": True}, "readinessProbe": {"enabled": True},
        "webhook": {"resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                                  "limits": {"cpu": "250m", "memory": "128Mi"}},
                    "livenessProbe": {"enabled": True}},
        "certController": {"resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                                         "limits": {"cpu": "250m", "memory": "128Mi"}},
                           "livenessProbe": {"enabled": True}},
    }


def db_reader_policy(secret_arn: pulumi.Input[str], key_arn: pulumi.Input[str],
                     ctx: iam.AwsContext) -> dict[str, Any]:
    """Read the one RDS master secret; decrypt its CMK only through Secrets Manager."""
    return iam.document(
        {"Sid": "ReadDatabaseSecret", "Effect": "Allow",
         "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
         "Resource": secret_arn},
        {"Sid": "DecryptThroughSecretsManager", "Effect": "Allow", "Action": "kms:Decrypt",
         "Resource": key_arn,
         "Condition": {"StringEquals": {
             "kms:ViaService": ctx.service("secretsmanager.{region}")}}})


def secret_manifests(namespace: str, region: pulumi.Input[str],
                     secret_arn: pulumi.Input[str]) -> list[dict[str, Any]]:
    """The SecretStore, the SECRET_KEY generator and the two ExternalSecrets, as manifests
    (``region`` and ``secret_arn`` may be outputs)."""
    meta = {"namespace": namespace, "labels": {"app.kubernetes.io/part-of": "labelstack"}}
    store = {"apiVersion": ESO_API, "kind": "SecretStore",
             "metadata": {**meta, "name": SECRET_STORE},
             "spec": {"provider": {"aws": {
                 "service": "SecretsManager", "region": region,
                 "auth": {"jwt": {"serviceAccountRef": {"name": DB_READER_SERVICE_ACCOUNT}}}}}}}
    db = {"apiVersion": ESO_API, "kind": "ExternalSecret",
          "metadata": {**meta, "name": DB_SECRET},
          "spec": {"refreshInterval": DB_REFRESH,
                   "secretStoreRef": {"kind": "SecretStore", "name": SECRET_STORE},
                   "target": {"name": DB_SECRET, "creationPolicy": "Owner",
                              "deletionPolicy": "Retain"},
                   "data": [{"secretKey": "password",
                             "remoteRef": {"key": secret_arn, "property": "password"}}]}}
    generator = {"apiVersion": GENERATORS_API, "kind": "Password",
                 "metadata": {**meta, "name": DJANGO_SECRET},
                 "spec": {"length": 64, "digits": 10, "symbols": 0, "noUpper": False,
                          "allowRepeat": True}}
    django = {"apiVersion": ESO_API, "kind": "ExternalSecret",
              "metadata": {**meta, "name": DJANGO_SECRET},
              "spec": {"refreshPolicy": "CreatedOnce",
                       "target": {"name": DJANGO_SECRET, "creationPolicy": "Owner",
                                  "deletionPolicy": "Retain"},
                       "dataFrom": [{"sourceRef": {"generatorRef": {
                           "apiVersion": GENERATORS_API, "kind": "Password",
                           "name": DJANGO_SECRET}},
                           "rewrite": [{"regexp": {"source": "^password$",
                                                   "target": DJANGO_SECRET_KEY}}]}]}}
    return [store, generator, db, django]


@dataclass
class ExternalSecretsArgs:
    """Inputs of :class:`ExternalSecrets`."""

    base: KubernetesBase
    ctx: iam.AwsContext
    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer_url: pulumi.Input[str]
    namespace: str
    db_secret_arn: pulumi.Input[str]
    #: CMK of the RDS master secret.
    db_secret_key_arn: pulumi.Input[str]


class ExternalSecrets(pulumi.ComponentResource):
    """ESO chart + the store, the database Secret and the generated SECRET_KEY."""

    chart: k8s.helm.v4.Chart
    #: The ExternalSecrets: Label Studio waits for them.
    secrets: list[k8s.apiextensions.CustomResource]

    def __init__(self, name: str, args: ExternalSecretsArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("labelstack:k8s:ExternalSecrets", name, None, opts)
        base = args.base
        eso_ns = k8s.core.v1.Namespace(
            f"{name}-namespace", metadata={"name": ESO_NAMESPACE, "labels": {
                "app.kubernetes.io/part-of": "labelstack",
                "pod-security.kubernetes.io/enforce": "restricted"}},
            opts=base.child_opts(parent=self))
        pin = charts.EXTERNAL_SECRETS
        self.chart = k8s.helm.v4.Chart(
            f"{name}-operator", chart=pin.chart, version=pin.version,
            repository_opts=k8s.helm.v4.RepositoryOptsArgs(repo=pin.repo),
            namespace=ESO_NAMESPACE, values=eso_values(),
            opts=base.child_opts(parent=self, depends_on=[eso_ns]))

        role, role_policy = irsa_role(
            f"{name}-db-reader-role", parent=self, namespace=args.namespace,
            service_account=DB_READER_SERVICE_ACCOUNT,
            oidc_provider_arn=args.oidc_provider_arn, oidc_issuer_url=args.oidc_issuer_url,
            policy=db_reader_policy(args.db_secret_arn, args.db_secret_key_arn, args.ctx),
            description=f"IRSA: {args.namespace}/{DB_READER_SERVICE_ACCOUNT} (reads the RDS "
            "master secret)")
        sa = k8s.core.v1.ServiceAccount(
            f"{name}-db-reader", metadata={"name": DB_READER_SERVICE_ACCOUNT,
                                           "namespace": args.namespace,
                                           "annotations": {"eks.amazonaws.com/role-arn":
                                                           role.arn}},
            automount_service_account_token=False, opts=base.child_opts(parent=self))

        manifests = secret_manifests(args.namespace, args.ctx.region, args.db_secret_arn)
        self.secrets = []
        # the operator's CRDs and admission webhook must be up before any of these
        previous: list[pulumi.Resource] = [base.namespace, self.chart, sa, role_policy]
        for kind_name, doc in zip(("store", "generator", "db", "django"), manifests,
                                  strict=True):
            res = k8s.apiextensions.CustomResource(
                f"{name}-{kind_name}", api_version=doc["apiVersion"], kind=doc["kind"],
                metadata=doc["metadata"], spec=doc["spec"],
                opts=pulumi.ResourceOptions(parent=self, provider=base.provider,
                                            depends_on=base.after(previous)))
            if kind_name in ("db", "django"):
                self.secrets.append(res)
            else:
                previous = [*previous, res]
        self.register_outputs({"db_reader_role_arn": role.arn})

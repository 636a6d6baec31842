"""Label Studio from the official chart, with its NetworkPolicies and its Ingress.

The chart is a ``kubernetes.helm.v4.Chart``: rendered client-side, so every object it holds
is a Pulumi resource the policy pack sees at preview. Its values come from
:func:`infra.k8s.label_studio_values.label_studio_values`, the function the tests render
with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from infra import charts
from infra.k8s.base import KubernetesBase
from infra.k8s.ingress import ingress_annotations, ingress_manifest
from infra.k8s.label_studio_values import RELEASE, LabelStudioSite, label_studio_values
from infra.k8s.netpol import NetworkRanges, label_studio_policies


@dataclass
class LabelStudioArgs:
    """Inputs of :class:`LabelStudio` (outputs where they come from other layers)."""

    base: KubernetesBase
    profile: str
    namespace: str
    origin: str
    db_host: pulumi.Input[str]
    db_name: str
    db_user: str
    region: pulumi.Input[str]
    bucket: pulumi.Input[str]
    folder: str
    role_arn: pulumi.Input[str]
    image_registry: str
    image_repository: str
    image_tag: str
    #: The cluster's Service range (the only range off the SSRF block list).
    ml_backend_cidrs: pulumi.Input[Sequence[str]]
    ranges: NetworkRanges
    #: The region's S3 ranges (gateway endpoint prefix list), known at deploy time.
    s3_cidrs: pulumi.Input[Sequence[str]]
    #: Ingress settings.
    scheme: str
    certificate_arn: str
    access_log_bucket: pulumi.Input[str]
    deletion_protection: bool
    lb_subnet_ids: Sequence[pulumi.Input[str]]
    #: What Label Studio waits for (its Secrets) and what the Ingress waits for (the
    #: load balancer controller, so the ALB is deleted while the controller still runs).
    wait_for: Sequence[pulumi.Resource] = ()
    ingress_wait_for: Sequence[pulumi.Resource] = ()


def site_of(args: LabelStudioArgs, db_host: str, region: str, bucket: str,
            role_arn: str, ml_backend_cidrs: Sequence[str]) -> LabelStudioSite:
    """The plain :class:`LabelStudioSite` once the outputs are known."""
    return LabelStudioSite(
        profile=args.profile, origin=args.origin, db_host=db_host, db_name=args.db_name,
        db_user=args.db_user, region=region, bucket=bucket, folder=args.folder,
        role_arn=role_arn, image_registry=args.image_registry,
        image_repository=args.image_repository, image_tag=args.image_tag,
        ml_backend_cidrs=tuple(ml_backend_cidrs), namespace=args.namespace)


class LabelStudio(pulumi.ComponentResource):
    """NetworkPolicies, the chart and the Ingress."""

    chart: k8s.helm.v4.Chart
    ingress: k8s.networking.v1.Ingress
    url: pulumi.Output[str]

    def __init__(self, name: str, args: LabelStudioArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("labelstack:k8s:LabelStudio", name, None, opts)
        base = args.base
        policies = []
        for index, template in enumerate(label_studio_policies(args.namespace, args.ranges)):
            spec = pulumi.Output.from_input(args.s3_cidrs).apply(
                lambda s3, i=index: label_studio_policies(args.namespace, NetworkRanges(
                    args.ranges.load_balancer_cidrs, args.ranges.database_cidrs,
                    args.ranges.endpoint_cidrs, list(s3 or [])))[i]["spec"])
            policies.append(k8s.networking.v1.NetworkPolicy(
                f"{name}-netpol-{template['metadata']['name']}",
                metadata=template["metadata"], spec=spec, opts=base.child_opts(parent=self)))

        values = pulumi.Output.all(args.db_host, args.region, args.bucket, args.role_arn,
                                   args.ml_backend_cidrs).apply(
            lambda a: label_studio_values(site_of(args, *a)))
        pin = charts.LABEL_STUDIO
        self.chart = k8s.helm.v4.Chart(
            RELEASE, chart=pin.chart, version=pin.version,
            repository_opts=k8s.helm.v4.RepositoryOptsArgs(repo=pin.repo),
            namespace=args.namespace, values=values,
            opts=base.child_opts(parent=self, depends_on=[*policies, *args.wait_for]))

        host = args.origin.removeprefix("https://")
        annotations = pulumi.Output.all(args.access_log_bucket, *args.lb_subnet_ids).apply(
            lambda a: ingress_annotations(
                scheme=args.scheme, certificate_arn=args.certificate_arn,
                access_log_bucket=a[0], deletion_protection=args.deletion_protection,
                subnet_ids=list(a[1:])))
        doc = ingress_manifest(args.namespace, host, {})
        # Wait on the charts and, explicitly, on every object they hold (the controller's
        # Deployment above all): deletes run in reverse, so the controller still runs while
        # it removes the ALB and its security groups.
        depends_on = base.after([base.namespace, self.chart, *args.ingress_wait_for])
        self.ingress = k8s.networking.v1.Ingress(
            f"{name}-ingress",
            metadata={**doc["metadata"], "annotations": annotations}, spec=doc["spec"],
            opts=pulumi.ResourceOptions(
                parent=self, provider=base.provider, depends_on=depends_on,
                custom_timeouts=pulumi.CustomTimeouts(create="20m", delete="20m")))
        self.url = pulumi.Output.from_input(args.origin)
        self.register_outputs({"url": self.url})

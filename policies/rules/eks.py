"""EKS: private API endpoint, envelope-encrypted secrets, control-plane audit logs."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from policies.model import ADVISORY, CRITICAL, HIGH, LOW, MEDIUM, Rule
from policies.rules._util import as_list, get, world

CLUSTER = ("aws:eks/cluster:Cluster",)
NODE_GROUP = ("aws:eks/nodeGroup:NodeGroup",)
REQUIRED_LOGS = ("api", "audit", "authenticator")


def _public(props: Mapping[str, Any]) -> bool:
    # the EKS API default for endpointPublicAccess is true
    return get(props, "vpcConfig", "endpointPublicAccess") is not False


def check_open_endpoint(props: Mapping[str, Any]) -> Iterator[str]:
    if not _public(props):
        return
    cidrs = as_list(get(props, "vpcConfig", "publicAccessCidrs"))
    if not cidrs:
        yield "the API endpoint is public with no publicAccessCidrs (open to 0.0.0.0/0)"
    elif world(cidrs):
        yield f"the API endpoint is public to {', '.join(world(cidrs))}"


def check_public_endpoint(props: Mapping[str, Any]) -> Iterator[str]:
    if _public(props):
        cidrs = as_list(get(props, "vpcConfig", "publicAccessCidrs")) or ["0.0.0.0/0"]
        yield (f"the API endpoint is reachable from the internet ({', '.join(map(str, cidrs))}); "
               "relaxation clusterPublicAccessCidrs")


def check_private_endpoint(props: Mapping[str, Any]) -> Iterator[str]:
    if get(props, "vpcConfig", "endpointPrivateAccess") is not True:
        yield "endpointPrivateAccess is not true (nodes reach the API over the internet)"


def check_secrets_encryption(props: Mapping[str, Any]) -> Iterator[str]:
    enc = props.get("encryptionConfig")
    configs = as_list(enc)
    if not any("secrets" in as_list(c.get("resources")) and get(c, "provider", "keyArn")
               for c in configs):
        yield "encryptionConfig does not envelope-encrypt secrets with a KMS key"


def check_logging(props: Mapping[str, Any]) -> Iterator[str]:
    missing = [t for t in REQUIRED_LOGS if t not in as_list(props.get("enabledClusterLogTypes"))]
    if missing:
        yield f"enabledClusterLogTypes misses {', '.join(missing)}"


def check_auth_mode(props: Mapping[str, Any]) -> Iterator[str]:
    mode = get(props, "accessConfig", "authenticationMode") or "CONFIG_MAP"
    if mode != "API":
        yield f"authenticationMode is {mode}; use API (access entries, no aws-auth ConfigMap)"


def check_version(props: Mapping[str, Any]) -> Iterator[str]:
    if not props.get("version"):
        yield "version is not pinned (EKS picks the default, upgrades are unplanned)"


def check_remote_access(props: Mapping[str, Any]) -> Iterator[str]:
    if props.get("remoteAccess"):
        yield "remoteAccess opens SSH to the nodes"


def check_bootstrap_admin(props: Mapping[str, Any]) -> Iterator[str]:
    if get(props, "accessConfig", "bootstrapClusterCreatorAdminPermissions") is not False:
        yield ("bootstrapClusterCreatorAdminPermissions is not false (the deploying identity "
               "stays cluster-admin, outside access entries)")


_S = "eks"
RULES = [
    Rule("eks-endpoint-not-open", "The EKS API endpoint is never open to the whole internet.",
         _S, CRITICAL, "164.312(a)(1)", "checkov CKV_AWS_38", "Set "
         "vpcConfig.endpointPublicAccess false, or list your own publicAccessCidrs.",
         check_open_endpoint, types=CLUSTER),
    Rule("eks-endpoint-public-relaxation", "Flags a public EKS API endpoint (the "
         "clusterPublicAccessCidrs relaxation, non-prod only).", _S, LOW, "164.312(a)(1)",
         "AWS Config eks-endpoint-no-public-access / checkov CKV_AWS_39",
         "Leave clusterPublicAccessCidrs empty and reach the API from inside the VPC.",
         check_public_endpoint, types=CLUSTER, enforcement=ADVISORY),
    Rule("eks-private-endpoint", "The EKS private endpoint is on.", _S, MEDIUM,
         "164.312(e)(1)", "AWS Config eks-endpoint-no-public-access (private endpoint)",
         "Set vpcConfig.endpointPrivateAccess true.", check_private_endpoint, types=CLUSTER),
    Rule("eks-secrets-encrypted", "Kubernetes secrets are envelope-encrypted with a KMS key.",
         _S, HIGH, "164.312(a)(2)(iv)", "AWS Config eks-secrets-encrypted / checkov CKV_AWS_58",
         "Set encryptionConfig {resources: [secrets], provider.keyArn: <cluster key>}.",
         check_secrets_encryption, types=CLUSTER),
    Rule("eks-control-plane-logging", "EKS sends api, audit and authenticator logs to "
         "CloudWatch.", _S, HIGH, "164.312(b)", "checkov CKV_AWS_37",
         "Add api, audit and authenticator to enabledClusterLogTypes.", check_logging,
         types=CLUSTER),
    Rule("eks-access-entries", "Cluster access is granted through EKS access entries (API "
         "authentication mode).", _S, MEDIUM, "164.308(a)(4)(ii)(B)",
         "custom (EKS best practices: access entries)", "Set accessConfig.authenticationMode "
         "API and grant access with aws.eks.AccessEntry.", check_auth_mode, types=CLUSTER),
    Rule("eks-no-creator-admin", "The identity that creates the cluster is not silently "
         "cluster-admin.", _S, MEDIUM, "164.308(a)(3)(i)",
         "custom (EKS best practices: access entries)", "Set accessConfig."
         "bootstrapClusterCreatorAdminPermissions false; list admins in adminRoleArns.",
         check_bootstrap_admin, types=CLUSTER),
    Rule("eks-version-pinned", "The EKS Kubernetes version is pinned.", _S, LOW,
         "164.308(a)(5)(ii)(B)", "checkov CKV_AWS_339", "Set version (see eksVersion).",
         check_version, types=CLUSTER),
    Rule("eks-nodegroup-no-ssh", "Managed node groups allow no SSH remote access.", _S, HIGH,
         "164.312(a)(1)", "checkov CKV_AWS_100", "Drop remoteAccess; use SSM Session Manager.",
         check_remote_access, types=NODE_GROUP),
]

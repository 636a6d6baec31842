"""Kubernetes workloads: restricted pod security, resources, probes, pinned images, no
service-account tokens or host access unless needed."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Mapping
from typing import Any

from policies.model import ADVISORY, CRITICAL, HIGH, LOW, MEDIUM, Rule
from policies.rules._util import as_list, get

POD = "kubernetes:core/v1:Pod"
JOB = "kubernetes:batch/v1:Job"
CRONJOB = "kubernetes:batch/v1:CronJob"
WORKLOADS = ("kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet",
             "kubernetes:apps/v1:DaemonSet", JOB, CRONJOB, POD)
#: Run-to-completion workloads need no liveness/readiness probes.
BATCH = (JOB, CRONJOB)
_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
#: A workload is exempted from one rule by the annotation ``exempt.policy.labelstack.io/<rule>``
#: on its own metadata, whose value is the reason (cdk-nag style: no reason, no exemption).
#: Used for what a node agent such as the NVIDIA device plugin must be allowed
#: (infra/k8s/gpu.py); every exemption is listed by the advisory ``k8s-policy-exemptions``.
EXEMPTION_PREFIX = "exempt.policy.labelstack.io/"


def pod_spec(props: Mapping[str, Any]) -> Mapping[str, Any]:
    """The pod spec of any workload shape (Pod, template, CronJob job template)."""
    spec = props.get("spec") or {}
    if "jobTemplate" in spec:
        spec = get(spec, "jobTemplate", "spec") or {}
    if "template" in spec:
        spec = get(spec, "template", "spec") or {}
    return spec


def containers(props: Mapping[str, Any], init: bool = True) -> list[Mapping[str, Any]]:
    spec = pod_spec(props)
    found = as_list(spec.get("containers"))
    return found + (as_list(spec.get("initContainers")) if init else [])




def check_non_root(props: Mapping[str, Any]) -> Iterator[str]:
    pod = get(pod_spec(props), "securityContext", "runAsNonRoot")
    for c in containers(props):
        own = get(c, "securityContext", "runAsNonRoot")
        if (own if own is not None else pod) is not True:
            yield f"container {c.get('name')}: runAsNonRoot is not true"


def _container_flag(key: str, want: bool, text: str):
    def check(props: Mapping[str, Any]) -> Iterator[str]:
        for c in containers(props):
            if get(c, "securityContext", key) is not want:
                yield f"container {c.get('name')}: {text}"
    return check


def check_drop_all(props: Mapping[str, Any]) -> Iterator[str]:
    for c in containers(props):
        drop = [str(x).upper() for x in as_list(get(c, "securityContext", "capabilities",
                                                    "drop"))]
        if "ALL" not in drop:
            yield f"container {c.get('name')}: capabilities.drop does not include ALL"


def check_seccomp(props: Mapping[str, Any]) -> Iterator[str]:
    pod = get(pod_spec(props), "securityContext", "seccompProfile", "type")
    for c in containers(props):
        kind = get(c, "securityContext", "seccompProfile", "type") or pod
        if kind not in ("RuntimeDefault", "Localhost"):
            yield f"container {c.get('name')}: seccompProfile is {kind or 'unset'}, not " \
                  "RuntimeDefault"


def check_privileged(props: Mapping[str, Any]) -> Iterator[str]:
    for c in containers(props):
        if get(c, "securityContext", "privileged") is True:
            yield f"container {c.get('name')}: privileged is true"


def check_requests(props: Mapping[str, Any]) -> Iterator[str]:
    for c in containers(props):
        req = get(c, "resources", "requests") or {}
        missing = [k for k in ("cpu", "memory") if k not in req]
        if missing:
            yield f"container {c.get('name')}: resources.requests misses {', '.join(missing)}"


def check_limits(props: Mapping[str, Any]) -> Iterator[str]:
    for c in containers(props):
        if "memory" not in (get(c, "resources", "limits") or {}):
            yield f"container {c.get('name')}: resources.limits.memory is unset"


def _probe(key: str):
    def check(props: Mapping[str, Any], resource_type: str) -> Iterator[str]:
        if resource_type in BATCH:
            return
        for c in containers(props, init=False):
            if not c.get(key):
                yield f"container {c.get('name')}: no {key}"
    return check


def check_image_pinned(props: Mapping[str, Any]) -> Iterator[str]:
    for c in containers(props):
        image = str(c.get("image") or "")
        if _DIGEST.search(image):
            continue
        last = image.rsplit("/", 1)[-1]
        tag = last.split(":", 1)[1] if ":" in last else ""
        if not tag or tag == "latest":
            yield f"container {c.get('name')}: image {image} is not pinned to a digest or a " \
                  "version tag"


def check_sa_token(props: Mapping[str, Any]) -> Iterator[str]:
    spec = pod_spec(props)
    sa = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    if spec.get("automountServiceAccountToken") is not False and sa == "default":
        yield ("the pod mounts the default service account's token; set "
               "automountServiceAccountToken false (or use a dedicated service account)")


def check_host_namespaces(props: Mapping[str, Any]) -> Iterator[str]:
    spec = pod_spec(props)
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key) is True:
            yield f"{key} is true"


def check_host_path(props: Mapping[str, Any]) -> Iterator[str]:
    for v in as_list(pod_spec(props).get("volumes")):
        if v.get("hostPath"):
            yield f"volume {v.get('name')} mounts hostPath {get(v, 'hostPath', 'path')}"


#: What the SAM2 backend's pydantic settings read as true (after stripping, any case).
_TRUE = {"1", "on", "t", "true", "y", "yes"}
SAM2_AUTH_DISABLED = "SAM2_AUTH_DISABLED"


def check_sam2_auth_disabled(props: Mapping[str, Any]) -> Iterator[str]:
    """Containers that switch the SAM2 backend's caller authentication off."""
    for c in containers(props):
        for e in as_list(c.get("env")):
            if str(e.get("name") or "").upper() != SAM2_AUTH_DISABLED:
                continue
            if e.get("valueFrom"):
                yield (f"container {c.get('name')}: {SAM2_AUTH_DISABLED} comes from valueFrom; "
                       "caller authentication may be off")
            elif str(e.get("value") or "").strip().lower() in _TRUE:
                yield (f"container {c.get('name')}: {SAM2_AUTH_DISABLED}={e.get('value')} "
                       "turns caller authentication off")


_S = "kubernetes"
_K = WORKLOADS
_AC = "164.312(a)(1)"
RULES = [
    Rule("k8s-run-as-non-root", "Containers run as a non-root user.", _S, HIGH, _AC,
         "checkov CKV_K8S_23", "Set securityContext.runAsNonRoot true (pod or container).",
         check_non_root, types=_K),
    Rule("k8s-read-only-root-fs", "Containers have a read-only root filesystem.", _S, MEDIUM,
         "164.312(c)(1)", "checkov CKV_K8S_22", "Set securityContext.readOnlyRootFilesystem "
         "true; mount emptyDir volumes where the app writes.",
         _container_flag("readOnlyRootFilesystem", True, "readOnlyRootFilesystem is not true"),
         types=_K),
    Rule("k8s-no-privilege-escalation", "Containers cannot gain privileges.", _S, HIGH, _AC,
         "checkov CKV_K8S_20", "Set securityContext.allowPrivilegeEscalation false.",
         _container_flag("allowPrivilegeEscalation", False,
                         "allowPrivilegeEscalation is not false"), types=_K),
    Rule("k8s-drop-all-capabilities", "Containers drop ALL Linux capabilities.", _S, MEDIUM,
         _AC, "checkov CKV_K8S_37 / CKV_K8S_28", "Set securityContext.capabilities.drop "
         "[ALL].", check_drop_all, types=_K),
    Rule("k8s-seccomp-runtime-default", "Containers run under the RuntimeDefault seccomp "
         "profile.", _S, MEDIUM, _AC, "checkov CKV_K8S_31", "Set securityContext."
         "seccompProfile.type RuntimeDefault (pod or container).", check_seccomp, types=_K),
    Rule("k8s-no-privileged", "No privileged containers.", _S, CRITICAL, _AC,
         "checkov CKV_K8S_16", "Remove securityContext.privileged.", check_privileged,
         types=_K),
    Rule("k8s-resource-requests", "Containers request CPU and memory.", _S, LOW,
         "164.308(a)(7)(ii)(B)", "checkov CKV_K8S_10 / CKV_K8S_12",
         "Set resources.requests.cpu and .memory.", check_requests, types=_K),
    Rule("k8s-memory-limits", "Containers have a memory limit.", _S, LOW,
         "164.308(a)(7)(ii)(B)", "checkov CKV_K8S_13", "Set resources.limits.memory.",
         check_limits, types=_K),
    Rule("k8s-liveness-probe", "Long-running containers have a liveness probe.", _S, LOW,
         "164.308(a)(7)(ii)(B)", "checkov CKV_K8S_8", "Add a livenessProbe.",
         _probe("livenessProbe"), types=_K, typed=True),
    Rule("k8s-readiness-probe", "Long-running containers have a readiness probe.", _S, LOW,
         "164.308(a)(7)(ii)(B)", "checkov CKV_K8S_9", "Add a readinessProbe.",
         _probe("readinessProbe"), types=_K, typed=True),
    Rule("k8s-image-pinned", "Images are pinned to a digest or a version tag (never latest).",
         _S, MEDIUM, "164.312(c)(1)", "checkov CKV_K8S_14 / CKV_K8S_43",
         "Use image@sha256:<digest> or a release tag.", check_image_pinned, types=_K),
    Rule("k8s-no-default-sa-token", "Pods on the default service account do not mount its "
         "API token.", _S, MEDIUM, "164.312(a)(1)", "checkov CKV_K8S_38",
         "Set automountServiceAccountToken false, or run under a dedicated service account.",
         check_sa_token, types=_K),
    Rule("k8s-no-host-namespaces", "Pods share no host network, PID or IPC namespace.", _S,
         HIGH, _AC, "checkov CKV_K8S_19 / CKV_K8S_17 / CKV_K8S_18",
         "Remove hostNetwork, hostPID and hostIPC.", check_host_namespaces, types=_K),
    Rule("k8s-no-host-path", "Pods mount no hostPath volumes.", _S, HIGH, _AC,
         "Pod Security Standards baseline (hostPath volumes)", "Use emptyDir, a PVC or a CSI "
         "volume.", check_host_path, types=_K),
]


def exemptions(props: Mapping[str, Any]) -> dict[str, str]:
    """Rule name -> reason of the workload's exemptions (annotations with an empty reason do
    not count)."""
    notes = get(props, "metadata", "annotations") or {}
    return {str(k)[len(EXEMPTION_PREFIX):]: str(v).strip() for k, v in notes.items()
            if str(k).startswith(EXEMPTION_PREFIX) and str(v).strip()}


def _exemptable(rule: Rule) -> Rule:
    def check(props: Mapping[str, Any], *rest: Any) -> Iterator[str]:
        if rule.name not in exemptions(props):
            yield from rule.check(props, *rest)
    return dataclasses.replace(rule, check=check)


def check_exemptions(props: Mapping[str, Any]) -> Iterator[str]:
    by_reason: dict[str, list[str]] = {}
    for name, reason in sorted(exemptions(props).items()):
        by_reason.setdefault(reason, []).append(name)
    for reason, names in by_reason.items():
        yield f"exempt from {', '.join(names)}: {reason}"


RULES = [_exemptable(r) for r in RULES] + [
    Rule("k8s-policy-exemptions", "Workload exemptions from the Kubernetes rules are listed for "
         "review.", _S, LOW, _AC, "custom (documented suppressions, cf. cdk-nag NagSuppressions)",
         "Review each exemption's reason; remove the annotation when it no longer applies.",
         check_exemptions, types=_K, enforcement=ADVISORY),
    Rule("k8s-sam2-auth-disabled-relaxation", "Flags SAM2 backends running without caller "
         "authentication (the explicit SAM2_AUTH_DISABLED=true relaxation): anyone who reaches "
         "the Service can send images (PHI) and get predictions.", _S, HIGH, "164.312(d)",
         "custom (labelstack relaxation)", "Remove SAM2_AUTH_DISABLED (chart: auth.disabled "
         "false) and give the backend SAM2_BASIC_AUTH_USER / SAM2_BASIC_AUTH_PASS from a "
         "Secret (auth.existingSecret), the same pair Label Studio's ML backend sends.",
         check_sam2_auth_disabled, types=_K, enforcement=ADVISORY)]

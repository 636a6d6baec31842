"""Load balancers: internal unless configured, TLS 1.2+, logged, strict header parsing."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from policies.model import ADVISORY, HIGH, LOW, MEDIUM, Rule
from policies.rules._util import as_list, get

LB = ("aws:lb/loadBalancer:LoadBalancer", "aws:alb/loadBalancer:LoadBalancer")
LISTENER = ("aws:lb/listener:Listener", "aws:alb/listener:Listener")
#: TLS policies that allow nothing older than TLS 1.2.
TLS12_MARKERS = ("TLS13-", "TLS-1-2", "FS-1-2")


def _application(props: Mapping[str, Any]) -> bool:
    return (props.get("loadBalancerType") or "application") == "application"


#: Kubernetes Ingress: the AWS Load Balancer Controller makes an ALB from its annotations.
INGRESS = ("kubernetes:networking.k8s.io/v1:Ingress",)
_ALB = "alb.ingress.kubernetes.io/"


def _alb_annotations(props: Mapping[str, Any]) -> dict[str, str] | None:
    """The ALB annotations of an Ingress of class ``alb`` (None for other classes)."""
    if get(props, "spec", "ingressClassName") != "alb":
        return None
    annotations = get(props, "metadata", "annotations") or {}
    return {k.removeprefix(_ALB): str(v) for k, v in annotations.items() if k.startswith(_ALB)}


def check_ingress_internet_facing(props: Mapping[str, Any]) -> Iterator[str]:
    ann = _alb_annotations(props)
    if ann is not None and ann.get("scheme", "internal") == "internet-facing":
        yield "the Ingress makes an internet-facing ALB; relaxation ingressMode=public"


def check_ingress_tls(props: Mapping[str, Any]) -> Iterator[str]:
    ann = _alb_annotations(props)
    if ann is None:
        return
    if not ann.get("certificate-arn"):
        yield "no certificate-arn: the ALB has no HTTPS listener"
    if ann.get("ssl-redirect") != "443":
        yield "ssl-redirect is not 443: HTTP is served instead of redirected"
    policy = ann.get("ssl-policy", "ELBSecurityPolicy-2016-08")
    if not any(m in policy for m in TLS12_MARKERS):
        yield f"ssl-policy {policy} still allows TLS older than 1.2"
    attrs = dict(a.strip().split("=", 1) for a in
                 ann.get("load-balancer-attributes", "").split(",") if "=" in a)
    if attrs.get("access_logs.s3.enabled") != "true":
        yield "access logs are off (load-balancer-attributes access_logs.s3.enabled)"
    if attrs.get("routing.http.drop_invalid_header_fields.enabled") != "true":
        yield "invalid header fields are not dropped"


def check_internet_facing(props: Mapping[str, Any]) -> Iterator[str]:
    if props.get("internal") is not True:
        yield "the load balancer is internet-facing; relaxation ingressMode=public"


def check_drop_headers(props: Mapping[str, Any]) -> Iterator[str]:
    if _application(props) and props.get("dropInvalidHeaderFields") is not True:
        yield "dropInvalidHeaderFields is not true"


def check_access_logs(props: Mapping[str, Any]) -> Iterator[str]:
    if get(props, "accessLogs", "enabled") is not True:
        yield "accessLogs are not enabled"


def check_https(props: Mapping[str, Any]) -> Iterator[str]:
    if str(props.get("protocol", "")).upper() != "HTTP":
        return
    actions = as_list(props.get("defaultActions"))
    if not all(a.get("type") == "redirect" and
               str(get(a, "redirect", "protocol")).upper() == "HTTPS" for a in actions):
        yield "an HTTP listener serves traffic instead of redirecting to HTTPS"


def check_tls_policy(props: Mapping[str, Any]) -> Iterator[str]:
    if str(props.get("protocol", "")).upper() not in ("HTTPS", "TLS"):
        return
    policy = str(props.get("sslPolicy") or "ELBSecurityPolicy-2016-08")
    if not any(m in policy for m in TLS12_MARKERS):
        yield f"sslPolicy {policy} still allows TLS older than 1.2"


def check_deletion_protection(props: Mapping[str, Any]) -> Iterator[str]:
    if (props.get("tags") or {}).get("Environment") == "prod" and \
            props.get("enableDeletionProtection") is not True:
        yield "enableDeletionProtection is off in a prod stack"


_S = "elb"
RULES = [
    Rule("elb-internet-facing-relaxation", "Flags internet-facing load balancers: the "
         "ingressMode=public relaxation.", _S, LOW, "164.312(e)(1)",
         "custom (labelstack relaxation)", "Use ingressMode=internal.", check_internet_facing,
         types=LB, enforcement=ADVISORY),
    Rule("elb-ingress-internet-facing-relaxation", "Flags Ingresses that make an "
         "internet-facing ALB: the ingressMode=public relaxation.", _S, LOW, "164.312(e)(1)",
         "custom (labelstack relaxation)", "Use ingressMode=internal (annotation "
         "alb.ingress.kubernetes.io/scheme: internal).", check_ingress_internet_facing,
         types=INGRESS, enforcement=ADVISORY),
    Rule("elb-ingress-tls", "ALB Ingresses serve HTTPS only (certificate, redirect, TLS 1.2+), "
         "log access and drop invalid headers.", _S, HIGH, "164.312(e)(1)",
         "AWS Config alb-http-to-https-redirection-check / elb-tls-https-listeners-only / "
         "elb-logging-enabled", "Set the alb.ingress.kubernetes.io/ certificate-arn, "
         "ssl-redirect: '443', ssl-policy ELBSecurityPolicy-TLS13-*, and "
         "load-balancer-attributes access_logs.s3.enabled=true and "
         "routing.http.drop_invalid_header_fields.enabled=true.", check_ingress_tls,
         types=INGRESS),
    Rule("elb-drop-invalid-headers", "Application load balancers drop invalid HTTP headers.",
         _S, MEDIUM, "164.312(c)(1)", "AWS Config alb-http-drop-invalid-header-enabled",
         "Set dropInvalidHeaderFields true.", check_drop_headers, types=LB),
    Rule("elb-access-logs", "Load balancers write access logs.", _S, MEDIUM, "164.312(b)",
         "AWS Config elb-logging-enabled", "Set accessLogs {bucket, enabled: true}.",
         check_access_logs, types=LB),
    Rule("elb-deletion-protection", "prod load balancers have deletion protection.", _S, LOW,
         "164.308(a)(7)(ii)(B)", "AWS Config elb-deletion-protection-enabled",
         "Set enableDeletionProtection true.", check_deletion_protection, types=LB),
    Rule("elb-https-only", "HTTP listeners only redirect to HTTPS.", _S, HIGH,
         "164.312(e)(1)", "AWS Config alb-http-to-https-redirection-check",
         "Make the HTTP listener's default action a redirect to HTTPS.", check_https,
         types=LISTENER),
    Rule("elb-tls12-policy", "HTTPS/TLS listeners use a TLS 1.2+ security policy.", _S, HIGH,
         "164.312(e)(2)(ii)", "AWS Config elb-tls-https-listeners-only / checkov CKV_AWS_103",
         "Set sslPolicy ELBSecurityPolicy-TLS13-1-2-2021-06.", check_tls_policy,
         types=LISTENER),
]

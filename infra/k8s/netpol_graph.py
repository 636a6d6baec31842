"""Evaluate Kubernetes NetworkPolicies as a reachability graph, the way the API defines them.

A connection from ``src`` to ``dst`` on a port is allowed when both ends allow it: egress at
the source (if any policy with ``Egress`` selects the source pod, one of their egress rules
must match; otherwise all egress is open) and ingress at the destination (likewise). Peers
are pods (namespace + labels) or addresses outside the pod network (``ipBlock`` matches only
these: the API reserves ipBlock for cluster-external addresses). Named ports are not
supported (the policies here use numbers).

Use :class:`Cluster` with the manifests, add pods and external addresses, then ask
:meth:`Cluster.allowed`, :meth:`Cluster.who_reaches` or :meth:`Cluster.open_egress`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Pod:
    """A pod: name, namespace, labels (and the labels of its namespace)."""

    name: str
    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class External:
    """An address outside the pod network (a load balancer node, RDS, the internet)."""

    name: str
    ip: str


Peer = Pod | External


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A LabelSelector (``matchLabels`` + ``matchExpressions``); ``{}`` matches everything."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _port_matches(ports: list[Mapping[str, Any]] | None, port: int, protocol: str) -> bool:
    if not ports:  # no ports listed: every port
        return True
    for p in ports:
        if p.get("protocol", "TCP") != protocol:
            continue
        if "port" not in p:
            return True
        start = p["port"]
        if isinstance(start, str):
            raise ValueError(f"named port {start!r} is not supported by this evaluator")
        if start <= port <= p.get("endPort", start):  # numbers may arrive as floats
            return True
    return False


class Cluster:
    """Policies plus the namespaces' labels; answers reachability questions."""

    def __init__(self, policies: Iterable[Mapping[str, Any]],
                 namespace_labels: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self.policies = [p for p in policies if p.get("kind") == "NetworkPolicy"]
        self._ns_labels = {k: dict(v) for k, v in (namespace_labels or {}).items()}

    def ns_labels(self, namespace: str) -> dict[str, str]:
        """A namespace's labels (always with ``kubernetes.io/metadata.name``)."""
        return {**self._ns_labels.get(namespace, {}), "kubernetes.io/metadata.name": namespace}

    def _selecting(self, pod: Pod, direction: str) -> list[Mapping[str, Any]]:
        out = []
        for p in self.policies:
            meta, spec = p.get("metadata") or {}, p.get("spec") or {}
            if meta.get("namespace") != pod.namespace:
                continue
            types = spec.get("policyTypes") or (
                ["Ingress", "Egress"] if "egress" in spec else ["Ingress"])
            if direction in types and selector_matches(spec.get("podSelector"), pod.labels):
                out.append(p)
        return out

    def _peer_matches(self, rule_peer: Mapping[str, Any], policy_ns: str, peer: Peer) -> bool:
        if "ipBlock" in rule_peer:
            if not isinstance(peer, External):
                return False
            block = rule_peer["ipBlock"]
            ip = ipaddress.ip_address(peer.ip)
            if ip not in ipaddress.ip_network(block["cidr"]):
                return False
            return not any(ip in ipaddress.ip_network(e) for e in block.get("except") or [])
        if not isinstance(peer, Pod):
            return False
        if "namespaceSelector" in rule_peer:
            if not selector_matches(rule_peer["namespaceSelector"], self.ns_labels(peer.namespace)):
                return False
        elif peer.namespace != policy_ns:
            return False
        return selector_matches(rule_peer.get("podSelector"), peer.labels)

    def _side_allows(self, pod: Pod, other: Peer, port: int, protocol: str,
                     direction: str) -> bool:
        policies = self._selecting(pod, direction)
        if not policies:
            return True  # not isolated in this direction
        key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
        for p in policies:
            for rule in (p.get("spec") or {}).get(key) or []:
                if not _port_matches(rule.get("ports"), port, protocol):
                    continue
                peers = rule.get(peers_key)
                if not peers or any(self._peer_matches(x, pod.namespace, other) for x in peers):
                    return True
        return False

    def allowed(self, src: Peer, dst: Peer, port: int, protocol: str = "TCP") -> bool:
        """Whether ``src`` may open a connection to ``dst`` on ``port``."""
        egress_ok = not isinstance(src, Pod) or self._side_allows(src, dst, port, protocol,
                                                                   "Egress")
        return egress_ok and (not isinstance(dst, Pod)
                              or self._side_allows(dst, src, port, protocol, "Ingress"))

    def who_reaches(self, dst: Peer, port: int, peers: Iterable[Peer],
                    protocol: str = "TCP") -> set[str]:
        """Names of the ``peers`` (other than ``dst``) that may connect to ``dst`` on ``port``."""
        return {p.name for p in peers if p != dst and self.allowed(p, dst, port, protocol)}

    def open_egress(self, pod: Pod) -> list[str]:
        """Why ``pod`` could reach any address: no egress isolation, a rule with no peers, or
        an ipBlock of length 0. Empty when its egress is confined."""
        policies = self._selecting(pod, "Egress")
        if not policies:
            return [f"{pod.namespace}/{pod.name}: no policy restricts its egress"]
        found = []
        for p in policies:
            name = (p.get("metadata") or {}).get("name")
            for i, rule in enumerate((p.get("spec") or {}).get("egress") or []):
                peers = rule.get("to")
                if not peers:
                    found.append(f"{name}: egress rule {i} allows every destination")
                for peer in peers or []:
                    cidr = (peer.get("ipBlock") or {}).get("cidr")
                    if cidr and ipaddress.ip_network(cidr).prefixlen == 0:
                        found.append(f"{name}: egress rule {i} allows {cidr}")
        return found

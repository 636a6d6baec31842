"""The Kubernetes layer: provider and namespace (:mod:`infra.k8s.base`), External Secrets
(:mod:`infra.k8s.secrets`), the AWS Load Balancer Controller and Ingress
(:mod:`infra.k8s.ingress`), Label Studio (:mod:`infra.k8s.label_studio`), wired by
:mod:`infra.k8s.layer`. Modules import pulumi lazily where tests need only plain values
(:mod:`infra.k8s.netpol`, :mod:`infra.k8s.netpol_graph`, :mod:`infra.k8s.label_studio_values`).
"""

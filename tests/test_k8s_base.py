"""The Kubernetes foundation, secrets and ingress as the program declares them: provider
auth, restricted namespace, External Secrets scoping, load balancer controller and Ingress
settings, and core objects valid for the cluster's Kubernetes version."""

from __future__ import annotations

import json

import kubernetes_validate
import pytest

from infra.k8s import base, ingress, secrets
from infra.offline import HELM_CHART, Plan
from policies.manifests import evaluate_manifests

INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
#: Components of this layer (infra/k8s/layer.py).
LAYER_COMPONENTS = {"k8s", "k8s-secrets", "k8s-lb-controller", "label-studio"}


def named(plan: Plan, typ: str, name: str):
    return next(r for r in plan.resources if r.type == typ and r.name == name)


def statements(plan: Plan, name: str) -> list[dict]:
    return json.loads(named(plan, ROLE_POLICY, name).inputs["policy"])["Statement"]


def test_provider_authenticates_with_aws_eks_get_token(each_stack: Plan) -> None:
    provider = named(each_stack, "pulumi:providers:kubernetes", "k8s-provider")
    config = json.loads(provider.inputs["kubeconfig"])
    user = config["users"][0]["user"]
    assert set(user) == {"exec"}  # no token, no client certificate, no password
    assert user["exec"]["command"] == "aws"
    assert user["exec"]["args"][:2] == ["eks", "get-token"]
    assert config["clusters"][0]["cluster"]["server"].startswith("https://")


def test_namespace_enforces_restricted_pod_security(each_stack: Plan) -> None:
    ns = named(each_stack, "kubernetes:core/v1:Namespace", "k8s-namespace").inputs
    labels = ns["metadata"]["labels"]
    version = json.loads(json.dumps(each_stack.config.get("labelstack:eksVersion", "1.34")))
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
        assert labels[f"pod-security.kubernetes.io/{mode}-version"] == f"v{version}"


def test_core_objects_validate_for_the_cluster_version(each_stack: Plan) -> None:
    version = json.loads(json.dumps(each_stack.config.get("labelstack:eksVersion", "1.34")))
    checked = 0
    for r in each_stack.resources:
        if r.parent not in LAYER_COMPONENTS:
            continue  # chart objects: see test_k8s_label_studio.py; other layers: their tests
        group = r.type.split(":")[1] if r.type.startswith("kubernetes:") else ""
        if group.startswith(("core/", "networking.k8s.io/", "apps/", "policy/")):
            obj = json.loads(json.dumps(r.inputs))  # floats from the mocks as JSON numbers
            _ints(obj)
            kubernetes_validate.validate(obj, f"{version}.0", strict=True)
            checked += 1
    assert checked >= 8


def _ints(value):
    """The engine carries numbers as doubles; Kubernetes wants integers for ports."""
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, float) and v.is_integer():
                value[k] = int(v)
            else:
                _ints(v)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            if isinstance(v, float) and v.is_integer():
                value[i] = int(v)
            else:
                _ints(v)


def test_kubeconfig_helper_has_no_static_credentials() -> None:
    doc = json.loads(base.kubeconfig("c", "https://e", "Q0E=", "us-east-1"))
    user = doc["users"][0]["user"]
    assert list(user) == ["exec"]
    assert not {"token", "client-key-data", "password"} & set(json.dumps(doc).split('"'))


# ---- External Secrets ------------------------------------------------------------------------
def test_database_reader_reads_one_secret_only(each_stack: Plan) -> None:
    stmts = statements(each_stack, "k8s-secrets-db-reader-policy")
    read = next(s for s in stmts if s["Sid"] == "ReadDatabaseSecret")
    assert read["Resource"] == each_stack.outputs["dbSecretArn"]
    assert set(read["Action"]) == {"secretsmanager:GetSecretValue",
                                   "secretsmanager:DescribeSecret"}
    kms = next(s for s in stmts if s["Sid"] == "DecryptThroughSecretsManager")
    assert kms["Action"] == "kms:Decrypt" and "kms:ViaService" in kms["Condition"]["StringEquals"]
    trust = json.loads(named(each_stack, "aws:iam/role:Role",
                             "k8s-secrets-db-reader-role").inputs["assumeRolePolicy"])
    assert f":sub\": \"system:serviceaccount:labelstack:{secrets.DB_READER_SERVICE_ACCOUNT}" \
        in json.dumps(trust).replace("\\", "")


def test_secret_key_is_generated_once_in_the_cluster(each_stack: Plan) -> None:
    django = named(each_stack, "kubernetes:external-secrets.io/v1:ExternalSecret",
                   "k8s-secrets-django").inputs["spec"]
    assert django["refreshPolicy"] == "CreatedOnce"
    assert django["dataFrom"][0]["sourceRef"]["generatorRef"]["kind"] == "Password"
    db = named(each_stack, "kubernetes:external-secrets.io/v1:ExternalSecret",
               "k8s-secrets-db").inputs["spec"]
    assert db["data"][0]["remoteRef"]["key"] == each_stack.outputs["dbSecretArn"]
    store = named(each_stack, "kubernetes:external-secrets.io/v1:SecretStore",
                  "k8s-secrets-store").inputs
    assert store["metadata"]["namespace"] == "labelstack"  # namespaced, not a cluster store
    eso = named(each_stack, HELM_CHART, "k8s-secrets-operator").inputs["values"]
    assert eso["processClusterStore"] is False


# ---- load balancer ---------------------------------------------------------------------------
def test_ingress_is_internal_https_only_with_logs(each_stack: Plan) -> None:
    ann = named(each_stack, INGRESS, "label-studio-ingress").inputs["metadata"]["annotations"]
    assert ann["alb.ingress.kubernetes.io/scheme"] == "internal"
    assert ann["alb.ingress.kubernetes.io/ssl-redirect"] == "443"
    assert ann["alb.ingress.kubernetes.io/certificate-arn"] == \
        each_stack.config["labelstack:certificateArn"]
    assert ann["alb.ingress.kubernetes.io/ssl-policy"].startswith("ELBSecurityPolicy-TLS13")
    attrs = dict(a.split("=", 1) for a in
                 ann["alb.ingress.kubernetes.io/load-balancer-attributes"].split(","))
    assert attrs["access_logs.s3.enabled"] == "true" and attrs["access_logs.s3.bucket"]
    prod = each_stack.stack == "prod"
    assert attrs["deletion_protection.enabled"] == str(prod).lower()


def test_public_ingress_only_with_ingress_mode_public(plan_with) -> None:
    plan = plan_with("dev", ingressMode="public")
    ann = named(plan, INGRESS, "label-studio-ingress").inputs["metadata"]["annotations"]
    assert ann["alb.ingress.kubernetes.io/scheme"] == "internet-facing"
    public = set(plan.outputs["publicSubnetIds"])
    assert set(ann["alb.ingress.kubernetes.io/subnets"].split(",")) == public
    # the pack flags the relaxation (advisory), and only then
    from policies.offline import evaluate

    flagged = [v for v in evaluate(plan) if v.rule == "elb-ingress-internet-facing-relaxation"]
    assert [(v.resource, v.mandatory) for v in flagged] == [("label-studio-ingress", False)]


def test_internal_ingress_passes_the_ingress_rules(stack_plan) -> None:
    from policies.offline import evaluate

    plan = stack_plan("prod")
    assert not [v for v in evaluate(plan) if v.rule.startswith("elb-ingress")]


def test_controller_has_waf_shield_off_and_a_narrowed_policy(each_stack: Plan) -> None:
    values = named(each_stack, HELM_CHART, "k8s-lb-controller-chart").inputs["values"]
    assert (values["enableShield"], values["enableWaf"], values["enableWafv2"]) == \
        (False, False, False)
    assert values["clusterName"] == each_stack.outputs["clusterName"]
    stmts = statements(each_stack, "k8s-lb-controller-policy")
    actions = {a for s in stmts for a in ([s["Action"]] if isinstance(s["Action"], str)
                                          else s["Action"])}
    assert not {a for a in actions if a.split(":")[0] in ("waf", "waf-regional", "wafv2",
                                                         "shield", "cognito-idp")}
    assert "acm:ListCertificates" not in actions  # no discovery
    acm = next(s for s in stmts if s["Sid"] == "TheGivenCertificate")
    assert acm["Resource"] == each_stack.config["labelstack:certificateArn"]
    for s in stmts:  # every write on load balancers is scoped to this cluster's tag
        if s["Sid"] in ("ManageOwnLoadBalancers", "ManageOwnSecurityGroups"):
            tag = s["Condition"]["StringEquals"][f"aws:ResourceTag/{ingress.CLUSTER_TAG}"]
            assert tag == each_stack.outputs["clusterName"]
        if s["Resource"] == "*":
            assert s["Sid"] == "Describe"
            assert all(":Describe" in a for a in s["Action"]), s["Action"]
    assert "iam:CreateServiceLinkedRole" not in actions


def test_controller_and_operator_pods_pass_the_workload_rules(stack_plan) -> None:
    plan = stack_plan("prod")
    charts_ = {r.name for r in plan.of_type(HELM_CHART)} & {"k8s-lb-controller-chart",
                                                             "k8s-secrets-operator"}
    objs = [r.inputs for r in plan.resources if r.parent in charts_]
    assert any(o["kind"] == "Deployment" for o in objs)
    assert evaluate_manifests(objs) == []


@pytest.mark.parametrize("vpc,expected", [("10.40.0.0/16", "172.20.0.0/16"),
                                          ("172.31.0.0/16", "10.100.0.0/16")])
def test_ssrf_carve_out_is_the_eks_service_range(vpc: str, expected: str) -> None:
    from infra.k8s.layer import eks_service_cidr

    assert eks_service_cidr(vpc) == expected

"""Run the Pulumi program with no CLI and no cloud account, under Pulumi's mocks.

This is the official unit-test route (``pulumi.runtime.set_mocks``): every resource the
program declares reaches :meth:`RecordingMocks.new_resource` with its inputs, and we keep
them as a :class:`Plan`. The tests, the offline compliance check and ``make plan`` all use
this one path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import Mocks, set_mocks
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.mocks import MockCallArgs, MockResourceArgs, run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from infra import stack_file
from infra.config import ConfigError

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "123456789012"
PROJECT = "labelstack"


@dataclass
class PlannedResource:
    """One declared resource: type token, logical name, camelCase inputs and its edges."""

    type: str
    name: str
    inputs: dict[str, Any]
    custom: bool = True
    parent: str | None = None
    depends_on: set[str] = field(default_factory=set)  # explicit depends_on + input sources
    protect: bool = False
    retain_on_delete: bool = False
    #: camelCase input name -> resources its value comes from (the analyzer's
    #: propertyDependencies), e.g. a BucketVersioning's ``bucket`` -> its bucket.
    property_deps: dict[str, set[str]] = field(default_factory=dict)
    #: ``depends_on`` and ``parent`` as ``<type>::<name>`` keys: logical names are only
    #: unique per type, so graphs over the whole plan use these (see :attr:`key`).
    depends_on_keys: set[str] = field(default_factory=set)
    parent_key: str | None = None

    @property
    def key(self) -> str:
        """``<type>::<name>``, unique in a plan."""
        return f"{self.type}::{self.name}"


@dataclass
class Plan:
    """Everything a stack would create, plus its stack outputs."""

    stack: str
    config: dict[str, str]
    resources: list[PlannedResource]
    outputs: dict[str, Any]
    calls: list[str]

    def of_type(self, type_token: str) -> list[PlannedResource]:
        """Resources of one type token, e.g. ``aws:s3/bucket:Bucket``."""
        return [r for r in self.resources if r.type == type_token]

    def named(self, name: str) -> PlannedResource:
        """The resource with this logical name (names are unique per type in this program)."""
        found = [r for r in self.resources if r.name == name]
        if len(found) != 1:
            raise KeyError(f"{len(found)} resources named {name!r}")
        return found[0]


def _arn(typ: str, name: str, region: str) -> str:
    service = typ.split(":")[1].split("/")[0]
    if service == "s3":
        return f"arn:aws:s3:::{name}"
    if service == "iam":
        kind = typ.rsplit(":", 1)[1]
        kind = {"OpenIdConnectProvider": "oidc-provider", "Role": "role", "Policy": "policy"}.get(
            kind, kind.lower())
        return f"arn:aws:iam::{ACCOUNT}:{kind}/{name}"
    return f"arn:aws:{service}:{region}:{ACCOUNT}:{typ.rsplit(':', 1)[1].lower()}/{name}"


class RecordingMocks(Mocks):
    """Answers resource registrations and the few data-source calls the program makes."""

    def __init__(self, region: str, account_roles: tuple[str, ...] = ()) -> None:
        self.region = region
        #: ``<path><name>`` of IAM roles the mock account already has (a fresh one: none).
        self.account_roles = account_roles
        self.created: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []

    def new_resource(self, args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
        inputs = dict(args.inputs)
        name = args.name
        outputs: dict[str, Any] = {**inputs, "arn": _arn(args.typ, name, self.region)}
        extra = _TYPE_OUTPUTS.get(args.typ)
        if extra:
            outputs.update(extra(name, inputs, self.region))
        self.created[f"{args.typ}::{name}"] = inputs
        return f"{name}-id", outputs

    def call(self, args: MockCallArgs) -> dict[str, Any]:
        self.calls.append(args.token)
        token = args.token
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:user/mock",
                    "userId": "AIDMOCK", "id": ACCOUNT}
        if token == "aws:index/getRegion:getRegion":
            return {"name": self.region, "region": self.region, "id": self.region}
        if token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}
        if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            names = [f"{self.region}{s}" for s in "abcdef"]
            return {"names": names, "zoneIds": [f"use1-az{i}" for i in range(1, 7)],
                    "id": self.region}
        if token == "aws:iam/getRoles:getRoles":
            prefix = args.args.get("pathPrefix") or "/"
            found = [r for r in self.account_roles if r.startswith(prefix)]
            return {"names": [r.rsplit("/", 1)[1] for r in found],
                    "arns": [f"arn:aws:iam::{ACCOUNT}:role{r}" for r in found],
                    "id": self.region}
        if token == "aws:ssm/getParameter:getParameter":
            name = args.args.get("name")
            return {"name": name, "id": name, "type": "String", "value": "ami-0123456789abcdef0",
                    "arn": f"arn:aws:ssm:{self.region}::parameter{name}"}
        if token == "aws:ec2/getPrefixList:getPrefixList":
            # the region's S3 ranges behind the gateway endpoint (documentation-range stand-ins)
            name = args.args.get("name")
            return {"name": name, "id": "pl-63a5400a", "prefixListId": "pl-63a5400a",
                    "cidrBlocks": ["198.51.100.0/24", "203.0.113.0/24"]}
        if token == "aws:eks/getAddonVersion:getAddonVersion":
            addon, k8s = args.args.get("addonName"), args.args.get("kubernetesVersion")
            return {"addonName": addon, "kubernetesVersion": k8s, "id": addon,
                    "version": f"v0.0.0-mock-{addon}-k8s{k8s}-eksbuild.1"}
        return {}


def _bucket(name: str, inputs: dict[str, Any], region: str) -> dict[str, Any]:
    bucket = inputs.get("bucket") or f"{name}-0123abcd"
    return {"bucket": bucket, "arn": f"arn:aws:s3:::{bucket}",
            "bucketRegionalDomainName": f"{bucket}.s3.{region}.amazonaws.com"}


def _eks_cluster(name: str, inputs: dict[str, Any], region: str) -> dict[str, Any]:
    issuer = f"https://oidc.eks.{region}.amazonaws.com/id/0123456789ABCDEF0123456789ABCDEF"
    return {"endpoint": f"https://0123ABCD.gr7.{region}.eks.amazonaws.com",
            "certificateAuthority": {"data": "bW9jay1jYQ=="},
            "identities": [{"oidcs": [{"issuer": issuer}]}],
            "vpcConfig": {**(inputs.get("vpcConfig") or {}),
                          "clusterSecurityGroupId": "sg-cluster0123", "vpcId": "vpc-0123"}}


def _rds(name: str, inputs: dict[str, Any], region: str) -> dict[str, Any]:
    name = inputs.get("identifier") or name
    host = f"{name}.abcdefgh.{region}.rds.amazonaws.com"
    return {"address": host, "endpoint": f"{host}:5432", "port": 5432,
            "masterUserSecrets": [{"secretArn": f"arn:aws:secretsmanager:{region}:{ACCOUNT}:"
                                   f"secret:rds!{name}", "secretStatus": "active"}]}


def _role(name: str, inputs: dict[str, Any], region: str) -> dict[str, Any]:
    role = inputs.get("name") or f"{name}-0123abcd"
    return {"name": role, "arn": f"arn:aws:iam::{ACCOUNT}:role/{role}"}


def _oidc(name: str, inputs: dict[str, Any], region: str) -> dict[str, Any]:
    host = str(inputs.get("url", "")).removeprefix("https://")
    return {"arn": f"arn:aws:iam::{ACCOUNT}:oidc-provider/{host}"}


def _autonamed(name: str, inputs: dict[str, Any], region: str) -> dict[str, Any]:
    """Pulumi's auto-naming (logical name + random suffix) when no name is given."""
    return {"name": inputs.get("name") or f"{name}-0123abcd"}


def _launch_template(name: str, inputs: dict[str, Any], region: str) -> dict[str, Any]:
    return {"latestVersion": 1, "defaultVersion": 1}


def _node_group(name: str, inputs: dict[str, Any], region: str) -> dict[str, Any]:
    group = inputs.get("nodeGroupName") or f"{name}-0123abcd"
    return {"nodeGroupName": group,
            "resources": [{"autoscalingGroups": [{"name": f"eks-{group}-asg"}]}]}


def _ecr(name: str, inputs: dict[str, Any], region: str) -> dict[str, Any]:
    repo = inputs.get("name") or name
    return {"repositoryUrl": f"{ACCOUNT}.dkr.ecr.{region}.amazonaws.com/{repo}"}


def _key(name: str, inputs: dict[str, Any], region: str) -> dict[str, Any]:
    return {"keyId": f"{name}-key-id",
            "arn": f"arn:aws:kms:{region}:{ACCOUNT}:key/{name}-key-id"}


def _log_group(name: str, inputs: dict[str, Any], region: str) -> dict[str, Any]:
    group = inputs.get("name") or f"{name}-0123abcd"
    return {"name": group, "arn": f"arn:aws:logs:{region}:{ACCOUNT}:log-group:{group}"}


def _trail(name: str, inputs: dict[str, Any], region: str) -> dict[str, Any]:
    trail = inputs.get("name") or f"{name}-0123abcd"
    return {"name": trail, "arn": f"arn:aws:cloudtrail:{region}:{ACCOUNT}:trail/{trail}"}


def _topic(name: str, inputs: dict[str, Any], region: str) -> dict[str, Any]:
    topic = inputs.get("name") or f"{name}-0123abcd"
    return {"name": topic, "arn": f"arn:aws:sns:{region}:{ACCOUNT}:{topic}"}


_TYPE_OUTPUTS = {
    "aws:sns/topic:Topic": _topic,
    "aws:cloudtrail/trail:Trail": _trail,
    "aws:cloudwatch/logGroup:LogGroup": _log_group,
    "aws:s3/bucket:Bucket": _bucket,
    "aws:s3/bucketV2:BucketV2": _bucket,
    "aws:eks/cluster:Cluster": _eks_cluster,
    "aws:rds/instance:Instance": _rds,
    "aws:iam/role:Role": _role,
    "aws:iam/openIdConnectProvider:OpenIdConnectProvider": _oidc,
    "aws:kms/key:Key": _key,
    "aws:ec2/launchTemplate:LaunchTemplate": _launch_template,
    "aws:eks/nodeGroup:NodeGroup": _node_group,
    "aws:ecr/repository:Repository": _ecr,
    "aws:rds/subnetGroup:SubnetGroup": _autonamed,
    "aws:rds/parameterGroup:ParameterGroup": _autonamed,
}


def stack_config(stack: str, overrides: dict[str, Any] | None = None) -> dict[str, str]:
    """The config map of ``Pulumi.<stack>.yaml`` (plus overrides), as Pulumi hands it over.

    Override keys may omit the ``labelstack:`` namespace; ``None`` removes a key.
    """
    path = ROOT / f"Pulumi.{stack}.yaml"
    if not path.exists():
        known = sorted(p.name.split(".")[1] for p in ROOT.glob("Pulumi.*.yaml"))
        raise FileNotFoundError(f"no stack file {path.name}; stacks here: {', '.join(known)}")
    raw = stack_file.read(path)  # ConfigError: YAML, layout, unknown keys, plaintext secrets
    set_keys = []
    for key, value in (overrides or {}).items():
        full = key if ":" in key else f"{PROJECT}:{key}"
        if value is None:
            raw.pop(full, None)
        else:
            raw[full] = value
            set_keys.append(full)
    # labelstack: keys are checked with their values by config.parse
    lines = stack_file.check_keys([k for k in set_keys if not k.startswith(f"{PROJECT}:")],
                                  set_keys)
    if lines:
        raise ConfigError("invalid --set override:\n  " + "\n  ".join(lines))
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()}


def _reset_runtime() -> None:
    """Forget what an earlier run in this process left behind: after a run that failed, the
    Pulumi runtime keeps its first unhandled exception and its pending outputs, and the next
    run would raise that old error."""
    from pulumi.runtime.settings import SETTINGS, _get_rpc_manager

    _get_rpc_manager().clear()
    with SETTINGS.lock:
        SETTINGS.outputs.clear()


def run(stack: str, overrides: dict[str, Any] | None = None,
        account_roles: tuple[str, ...] = ()) -> Plan:
    """Run the program for ``stack`` under mocks and return what it declares.

    ``account_roles``: IAM roles (``/path/Name``) the mock account already has; none by
    default, as in a fresh account. Raises :class:`infra.config.ConfigError` for bad
    configuration, before any resource.
    """
    from infra import program  # late import: keeps pulumi_aws import off module load

    config = stack_config(stack, overrides)
    region = config.get("aws:region", "us-east-1")
    _reset_runtime()
    mocks = RecordingMocks(region, account_roles)
    # A fresh root stack resource per run: set_mocks reuses an existing one, and with it the
    # stack transformations (tagging) of the previous run in this process.
    pulumi_settings.ROOT.set(None)
    set_mocks(mocks, project=PROJECT, stack=stack, preview=False)
    pulumi.runtime.set_all_config(config, secret_keys=[
        k for k, v in config.items() if v == stack_file.SECRET_PLACEHOLDER])
    seen: list[tuple[pulumi.ResourceTransformationArgs]] = []

    def record(args: pulumi.ResourceTransformationArgs) -> None:
        seen.append(args)
        return None

    outputs: dict[str, Any] = {}

    def program_fn() -> None:
        pulumi.runtime.register_stack_transformation(record)
        outputs.update(program.build())

    _sync_await(run_pulumi_func(program_fn))
    resolved = _sync_await(_resolve(outputs))
    resources = _sync_await(_collect(seen, mocks))
    transforms = {a.name: list(a.opts.transforms or []) for a in seen if a.type_ == HELM_CHART}
    resources += chart_objects(resources, transforms)
    return Plan(stack, config, resources, resolved, mocks.calls)


#: Type token of the client-side Helm chart component.
HELM_CHART = "kubernetes:helm.sh/v4:Chart"


def chart_objects(resources: list[PlannedResource],
                  transforms: dict[str, list[Any]] | None = None) -> list[PlannedResource]:
    """The objects each ``helm.v4.Chart`` holds, rendered offline from the chart pinned in
    :mod:`infra.charts` (or the repository's own chart when ``chart`` is a local folder) with
    exactly the values the program passed, then through the chart's resource ``transforms``
    (by chart name): at ``pulumi preview`` each is a resource of its own (type
    ``kubernetes:<group/version>:<Kind>``), parented to its chart. Rendered here because under
    mocks a chart is one opaque component."""
    from infra import charts
    from policies.manifests import type_token

    out = []
    for chart in (r for r in resources if r.type == HELM_CHART):
        local = Path(chart.inputs["chart"])
        if (local / "Chart.yaml").is_file():
            chart_dir = local
        else:
            pin = charts.PINS[chart.inputs["chart"]]
            if chart.inputs.get("version") != pin.version:
                raise charts.ChartError(f"{chart.name}: version {chart.inputs.get('version')} "
                                        f"is not the pin {pin}")
            chart_dir = charts.upstream_chart_dir(pin)
        namespace = chart.inputs.get("namespace") or "default"
        for obj in charts.render(chart_dir, chart.inputs.get("values") or {},
                                 name=chart.inputs.get("name") or chart.name,
                                 namespace=namespace):
            for transform in (transforms or {}).get(chart.name, []):
                changed = transform(pulumi.ResourceTransformArgs(
                    True, type_token(obj), obj["metadata"]["name"], obj,
                    pulumi.ResourceOptions()))
                obj = dict(changed.props) if changed else obj
            meta = obj.get("metadata") or {}
            name = "/".join(p for p in (chart.name, meta.get("namespace"), meta.get("name")) if p)
            out.append(PlannedResource(type_token(obj), name, obj, True, chart.name,
                                       parent_key=chart.key))
    return out


async def _resolve(outputs: dict[str, Any]) -> dict[str, Any]:
    return {k: await pulumi.Output.from_input(v).future() for k, v in outputs.items()}


def _camel(name: str) -> str:
    """Python input name -> the camelCase wire name (``target_bucket`` -> ``targetBucket``)."""
    head, *rest = name.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def _nested_outputs(value: Any) -> list[pulumi.Output]:
    """Every Output inside a prop value (lists of subnet ids, input-type objects...)."""
    if isinstance(value, pulumi.Output):
        return [value]
    if isinstance(value, dict):
        items = list(value.values())
    elif isinstance(value, list | tuple):
        items = list(value)
    elif hasattr(value, "__dict__") and not isinstance(value, pulumi.Resource):
        items = list(vars(value).values())
    else:
        return []
    return [o for item in items for o in _nested_outputs(item)]


async def _collect(seen: list[Any], mocks: RecordingMocks) -> list[PlannedResource]:
    out = []
    for args in seen:
        opts: pulumi.ResourceOptions = args.opts
        deps: set[str] = set()
        dep_keys: set[str] = set()
        depends_on = opts.depends_on
        if isinstance(depends_on, pulumi.Output):  # computed (e.g. a chart's resources)
            depends_on = await depends_on.future()
        if isinstance(depends_on, pulumi.Resource):
            depends_on = [depends_on]
        for dep in depends_on or []:
            if isinstance(dep, pulumi.Resource):
                deps.add(dep._name)
                dep_keys.add(f"{dep._type}::{dep._name}")
        prop_deps: dict[str, set[str]] = {}
        for key, prop in args.props.items():
            sources = {r for value in _nested_outputs(prop)
                       for r in await value.resources() if r is not args.resource}
            names = {r._name for r in sources}
            if names:
                prop_deps[_camel(key)] = names
                deps |= names
                dep_keys |= {f"{r._type}::{r._name}" for r in sources}
        custom = isinstance(args.resource, pulumi.CustomResource)
        # custom resources and remote components (helm.v4.Chart) reach the mocks with inputs
        inputs = mocks.created.get(f"{args.type_}::{args.name}", {})
        has_parent = isinstance(opts.parent, pulumi.Resource)
        parent = opts.parent._name if has_parent else None
        parent_key = f"{opts.parent._type}::{opts.parent._name}" if has_parent else None
        out.append(PlannedResource(args.type_, args.name, inputs, custom, parent, deps,
                                   bool(opts.protect), bool(opts.retain_on_delete),
                                   prop_deps, dep_keys, parent_key))
    return out

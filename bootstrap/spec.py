"""The declarative spec (YAML): projects, their label configs, storages, ML backend, webhooks
and Data Manager views. Unknown keys are errors; every error names the field, the value and
the fix.

Values may reference ``${env:NAME}`` (environment) or ``${stack:outputName}`` (a JSON file of
``pulumi stack output --json``, passed with ``--stack-outputs``; ``${stack:bucketNames.x}``
reads inside an object output), whole or inside a string; ``${env:NAME:-default}`` gives a
default.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bootstrap import label_configs
from bootstrap.errors import SpecError

MARKER_PREFIX = "labelstack-managed-key:"
_REF = re.compile(r"\$\{(env|stack):([A-Za-z_][A-Za-z0-9_.-]*)(?::-([^}]*))?\}")
_KEY = re.compile(r"^[a-z][a-z0-9-]{1,40}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TemplateSam2(_Model):
    """SAM2 interactive segmentation generated from one label list."""

    template: Literal["sam2_segmentation"]
    labels: list[str] = Field(min_length=1, max_length=9)


class TemplateDerm(_Model):
    """Dermatology lesion tracking; lesion types from an ontology file (relative to the spec)."""

    template: Literal["derm_lesion_tracking"]
    ontology: str


class TemplateSam2Video(_Model):
    """SAM2 video tracking: smart VideoRectangle boxes tracked by the backend."""

    template: Literal["sam2_video"]
    labels: list[str] = Field(min_length=1, max_length=9)
    frame_rate: float = Field(default=25.0, gt=0, le=240)  # the videos' frames per second


class ConfigFile(_Model):
    """A hand-written label config XML file (relative to the spec)."""

    file: str


LabelConfig = TemplateSam2 | TemplateDerm | TemplateSam2Video | ConfigFile
_UNION_MEMBERS = ("TemplateSam2", "TemplateDerm", "TemplateSam2Video", "ConfigFile")


class ImportStorage(_Model):
    """S3 import storage, read-only. No credentials here: Label Studio uses its own role."""

    title: str = Field(min_length=1, max_length=200)
    bucket: str
    prefix: str = Field(min_length=1)
    regex_filter: str | None = None
    #: object_per_task: each object is one task (use_blob_urls); json_task_files: each
    #: object is a JSON list of tasks holding s3:// URIs (multi-image tasks).
    task_format: Literal["object_per_task", "json_task_files"] = "object_per_task"
    #: False (default): Label Studio proxies objects, the browser never reaches S3.
    #: True: the browser gets a 303 to a presigned URL (needs bucket CORS).
    presign: bool = False
    presign_ttl_minutes: int = Field(default=15, ge=1, le=720)
    recursive_scan: bool = True
    region: str | None = None
    kms_key_id: str | None = None

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, v: str) -> str:
        if not _BUCKET.match(v):
            raise ValueError("not a valid S3 bucket name (3-63 lowercase letters, digits, . -)")
        return v

    @field_validator("regex_filter")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as e:
                raise ValueError(f"not a valid regular expression ({e})") from e
        return v


class ExportStorage(_Model):
    """S3 export storage for annotations (Label Studio never deletes objects there)."""

    title: str = Field(min_length=1, max_length=200)
    bucket: str
    prefix: str = Field(min_length=1)
    region: str | None = None
    kms_key_id: str | None = None

    _bucket = field_validator("bucket")(ImportStorage._bucket.__func__)  # type: ignore[attr-defined]

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        """Label Studio writes ``prefix + "/" + key``: a trailing slash would give ``a//1``."""
        if v.startswith("/") or "//" in v:
            raise ValueError("write the prefix without a leading slash or empty segments "
                             "('//'), e.g. exports/sam2")
        v = v.rstrip("/")
        if not v:
            raise ValueError("give a prefix such as exports/sam2 (not just '/')")
        return v


class MLBackend(_Model):
    """The ML backend Label Studio calls; interactive for smart tools."""

    url: str = Field(pattern=r"^https?://")
    title: str = "SAM2"
    interactive: bool = True
    auth: Literal["none", "basic"] = "none"
    #: names of env vars holding the basic-auth user/password (never the values themselves)
    basic_auth_user_env: str | None = None
    basic_auth_password_env: str | None = None
    timeout_seconds: float = Field(default=100, gt=0, le=600)


class Webhook(_Model):
    url: str = Field(pattern=r"^https?://")
    send_payload: bool = True
    actions: list[str] = Field(default_factory=list)  # empty: all actions
    is_active: bool = True


class ViewFilter(_Model):
    field: str  # a task data key, e.g. camera_id
    operator: Literal["equal", "not_equal", "contains", "not_contains", "greater",
                      "less", "empty"] = "equal"
    value: str | int | float | bool
    type: Literal["String", "Number", "Boolean", "Datetime"] = "String"


class View(_Model):
    """A Data Manager tab: filters on task data (task metadata)."""

    title: str = Field(min_length=1, max_length=100)
    conjunction: Literal["and", "or"] = "and"
    filters: list[ViewFilter] = Field(default_factory=list)


ReviewMetric = Literal["brush_iou_mean", "brush_iou_min", "polygon_iou", "status_agreement",
                       "visit_assessment_agreement"]


class Review(_Model):
    """Agreement review (`labelstack review`): the metrics that gate the reviewer queue (empty:
    every metric the project's annotations have), the threshold, the Data Manager view."""

    metrics: list[ReviewMetric] = Field(default_factory=list)
    threshold: float = Field(default=0.8, ge=-1, le=1)
    view_title: str = Field(default="Review queue", min_length=1, max_length=100)


class Project(_Model):
    key: str  # managed marker: how the bootstrap finds this project again (not the title)
    #: false: the project is left out of plan/apply (an optional project shipped off)
    enabled: bool = True
    title: str = Field(min_length=3, max_length=50)
    description: str = ""
    label_config: Annotated[LabelConfig, Field(union_mode="left_to_right")]
    instructions: str = ""
    instructions_file: str | None = None
    show_instruction: bool = True
    sampling: Literal["sequential", "uniform", "uncertainty"] = "sequential"
    maximum_annotations: int = Field(default=1, ge=1, le=20)
    overlap_cohort_percentage: int = Field(default=100, ge=0, le=100)
    show_skip_button: bool = True
    import_storage: list[ImportStorage] = Field(default_factory=list)
    export_storage: list[ExportStorage] = Field(default_factory=list)
    ml_backend: MLBackend | None = None
    webhooks: list[Webhook] = Field(default_factory=list)
    views: list[View] = Field(default_factory=list)
    review: Review | None = None

    @field_validator("key")
    @classmethod
    def _key(cls, v: str) -> str:
        if not _KEY.match(v):
            raise ValueError("use 2-41 lowercase letters, digits and '-', starting with a letter")
        return v


class Spec(_Model):
    version: Literal[1]
    projects: list[Project] = Field(min_length=1)

    @field_validator("projects")
    @classmethod
    def _unique_keys(cls, v: list[Project]) -> list[Project]:
        keys = [p.key for p in v]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise ValueError(f"project keys must be unique, repeated: {dupes}")
        return v


# --------------------------------------------------------------------------- loading
def _interpolate(node: Any, where: str, env: dict[str, str], stack: dict[str, Any] | None,
                 stack_file: str | None) -> Any:
    if isinstance(node, dict):
        return {k: _interpolate(v, f"{where}.{k}" if where else str(k), env, stack, stack_file)
                for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, f"{where}[{i}]", env, stack, stack_file)
                for i, v in enumerate(node)]
    if not isinstance(node, str) or "${" not in node:
        return node

    def lookup(kind: str, name: str, default: str | None) -> Any:
        if kind == "env":
            if name not in env and default is not None:
                return default
            if name not in env:
                raise SpecError(where, node, f"environment variable {name} is not set: export "
                                "it or replace the reference")
            return env[name]
        if stack is None:
            raise SpecError(where, node, "references a stack output: pass --stack-outputs "
                            "FILE (from `pulumi stack output --json`)")
        value: Any = stack
        for part in _stack_path(name, stack):
            if not isinstance(value, dict) or part not in value:
                if default is not None:
                    return default
                raise SpecError(where, node, f"stack output {name!r} not in {stack_file}; "
                                f"available: {sorted(stack)}")
            value = value[part]
        return value

    whole = _REF.fullmatch(node)
    if whole:
        return lookup(*whole.groups())
    return _REF.sub(lambda m: str(lookup(*m.groups())), node)


def _stack_path(name: str, stack: dict[str, Any]) -> list[str]:
    """`bucketNames.source-segmentation` -> ["bucketNames", "source-segmentation"]; a
    top-level output whose name holds a dot wins."""
    return [name] if name in stack else name.split(".")


def _loc(err: dict, data: Any) -> tuple[str, Any]:
    parts, node = [], data
    for p in err["loc"]:
        if isinstance(p, int):
            parts.append(f"[{p}]")
            node = node[p] if isinstance(node, list) and p < len(node) else None
            continue
        if isinstance(node, dict) and p in node:
            parts.append(("." if parts else "") + p)
            node = node[p]
        elif p in _UNION_MEMBERS or "[" in str(p):
            continue  # union member names: not part of the user's path
        else:
            parts.append(("." if parts else "") + str(p))
            node = err.get("input")
    # show the project key when the path goes through projects[i]
    return "".join(parts), err.get("input", node)


def parse_spec(text: str, *, source: str = "<spec>", env: dict[str, str] | None = None,
               stack_outputs: dict[str, Any] | None = None, stack_file: str | None = None
               ) -> Spec:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SpecError(source, "<yaml>", f"not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise SpecError(source, raw, "the spec must be a mapping with `version` and `projects`")
    data = _interpolate(raw, "", dict(os.environ) if env is None else env, stack_outputs,
                        stack_file)
    try:
        spec = Spec.model_validate(data)
    except ValidationError as e:
        err = _best_error(e)
        path, value = _loc(err, data)
        if err["type"] == "extra_forbidden":
            raise SpecError(path, value, "unknown field: remove it or fix its spelling "
                            "(see docs/bootstrap.md for the fields)") from e
        if err["type"] == "missing":
            raise SpecError(path, None, "required field is missing") from e
        raise SpecError(path, value, err["msg"]) from e
    for project in spec.projects:
        _check_basic_auth_names(project)
    return spec


_AUTH_ENV_FIELDS = (("basic_auth_user_env", "SAM2_BASIC_AUTH_USER", "user"),
                    ("basic_auth_password_env", "SAM2_BASIC_AUTH_PASS", "password"))


def _check_basic_auth_names(project: Project) -> None:
    """`auth: basic` must name both env vars: without them Label Studio would get empty
    credentials and only say it cannot connect."""
    m = project.ml_backend
    if m is None or m.auth != "basic":
        return
    for attr, example, what in _AUTH_ENV_FIELDS:
        if not getattr(m, attr):
            raise SpecError(f"projects[{project.key}].ml_backend.{attr}", None,
                            f"`auth: basic` needs the name of the env var holding the "
                            f"backend's {what}: add `{attr}: {example}` (or set `auth: none` "
                            "for a backend that does not check callers)")


def basic_auth_credentials(project: Project, env: dict[str, str] | None = None
                           ) -> tuple[str, str] | None:
    """The (user, password) Label Studio sends to the project's ML backend, read from the env
    vars the spec names; None for `auth: none`. Unset or empty variables are a SpecError."""
    m = project.ml_backend
    if m is None or m.auth != "basic":
        return None
    _check_basic_auth_names(project)
    env = dict(os.environ) if env is None else env
    values = []
    for attr, _, what in _AUTH_ENV_FIELDS:
        name = getattr(m, attr)
        value = env.get(name, "")
        if not value:
            state = "is empty" if name in env else "is not set"
            raise SpecError(f"projects[{project.key}].ml_backend.{attr}", name,
                            f"environment variable {name} {state}, so Label Studio would send "
                            f"empty credentials and fail to connect. Fix: set {name} to the "
                            f"backend's {what}, the same value the backend runs with")
        values.append(value)
    return values[0], values[1]


def _best_error(e: ValidationError) -> dict:
    """Prefer the error of the union member the user meant (the one with `template`/`file`)."""
    errs = e.errors()
    for err in errs:
        if err["type"] in ("extra_forbidden", "missing") and not any(
                p in _UNION_MEMBERS for p in err["loc"]):
            return err
    for err in errs:
        if err["type"] != "literal_error" and err["type"] != "missing":
            return err
    return errs[0]


def load_spec(path: Path, *, env: dict[str, str] | None = None,
              stack_outputs_file: Path | None = None) -> Spec:
    try:
        text = path.read_text()
    except OSError as e:
        raise SpecError("--spec", str(path), f"cannot read the spec ({e.strerror})") from e
    stack = None
    if stack_outputs_file is not None:
        try:
            stack = json.loads(stack_outputs_file.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise SpecError("--stack-outputs", str(stack_outputs_file),
                            f"must be a readable JSON object ({e})") from e
    return parse_spec(text, source=str(path), env=env, stack_outputs=stack,
                      stack_file=str(stack_outputs_file) if stack_outputs_file else None)


# --------------------------------------------------------------------------- rendering
def render_label_config(project: Project, base: Path) -> str:
    """The label config XML for `project` (templates rendered, files read)."""
    lc = project.label_config
    where = f"projects[{project.key}].label_config"
    if isinstance(lc, TemplateSam2):
        return label_configs.sam2_segmentation(list(lc.labels))
    if isinstance(lc, TemplateDerm):
        return label_configs.derm_lesion_tracking(
            label_configs.load_ontology(base / lc.ontology))
    if isinstance(lc, TemplateSam2Video):
        return label_configs.sam2_video(list(lc.labels), frame_rate=lc.frame_rate)
    path = base / lc.file
    try:
        text = path.read_text()
    except OSError as e:
        raise SpecError(f"{where}.file", lc.file, f"cannot read it ({e.strerror})") from e
    import xml.etree.ElementTree as ET

    try:
        ET.fromstring(text)
    except ET.ParseError as e:
        raise SpecError(f"{where}.file", lc.file, f"not well-formed XML ({e}): fix the "
                        "file") from e
    return text


def render_instructions(project: Project, base: Path) -> str:
    if project.instructions_file:
        path = base / project.instructions_file
        try:
            return path.read_text().strip()
        except OSError as e:
            raise SpecError(f"projects[{project.key}].instructions_file",
                            project.instructions_file, f"cannot read it ({e.strerror})") from e
    return project.instructions.strip()


def managed_description(project: Project) -> str:
    """The project description with the managed marker as its last line."""
    body = project.description.strip()
    marker = f"{MARKER_PREFIX}{project.key}"
    return f"{body}\n\n{marker}" if body else marker


def marker_key(description: str | None) -> str | None:
    for line in reversed((description or "").splitlines()):
        line = line.strip()
        if line.startswith(MARKER_PREFIX):
            return line[len(MARKER_PREFIX):].strip()
    return None

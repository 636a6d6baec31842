"""Ephemeral stacks: up, smoke test, destroy and sweep, on the Pulumi Automation API.

A stack is named from a pull request (``eph-pr-123``) or a branch (``eph-feature-x``),
configured from ``Pulumi.ephemeral.yaml``, and tagged with its owner, time to live and expiry
(stack tags ``labelstack:owner``, ``labelstack:ttl-hours``, ``labelstack:expires-at``).
``run`` is up -> smoke test -> destroy -> stack removal, and the destroy runs whatever happened
before it; a stack whose destroy fails is kept and reported, never forgotten. ``sweep``
destroys every ephemeral stack past its expiry.

The Pulumi engine is reached through :class:`Workspace`; :class:`PulumiWorkspace` is the real
one (Pulumi CLI, state backend and AWS credentials from the environment).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Protocol

import typer

REPO = Path(__file__).resolve().parent.parent
PREFIX = "eph-"
TAG_KIND, TAG_OWNER = "labelstack:kind", "labelstack:owner"
TAG_TTL, TAG_EXPIRES = "labelstack:ttl-hours", "labelstack:expires-at"
EXIT_OK, EXIT_FAILED, EXIT_INPUT, EXIT_SERVICE = 0, 1, 2, 3
EXIT_CODES = ("Exit codes: 0 ok; 1 the smoke test failed (the stack was destroyed); 2 bad "
              "input; 3 up, destroy or sweep failed (a stack that could not be destroyed is kept "
              "and named).")


class EphemeralError(Exception):
    """A problem the operator must fix; ``exit_code`` says which kind."""

    def __init__(self, message: str, exit_code: int = EXIT_INPUT) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# ---- naming and configuration ------------------------------------------------------------------
def stack_name(*, branch: str | None = None, pr: int | None = None) -> str:
    """``eph-pr-<n>`` for a pull request, else ``eph-<branch slug>`` (at most 40 characters)."""
    if pr is not None:
        if pr <= 0:
            raise EphemeralError(f"--pr: {pr} is not a pull-request number (a positive integer)")
        return f"{PREFIX}pr-{pr}"
    if not branch:
        raise EphemeralError("name the stack: pass --pr <number> or --branch <name>")
    slug = re.sub(r"[^a-z0-9]+", "-", branch.lower()).strip("-")
    if not slug:
        raise EphemeralError(f"--branch: {branch!r} has no letters or digits to name a stack")
    return (PREFIX + slug)[:40].rstrip("-")


def flatten_config(config: Mapping[str, Any]) -> dict[str, tuple[str, bool]]:
    """Stack-file ``config:`` -> ``{path: (value, secret)}`` for ``set_all_config(path=True)``.

    Lists and mappings become Pulumi config paths (``ns:key[0]``, ``ns:key.sub``);
    ``{secure: ...}`` values stay encrypted (``secret=True``)."""
    out: dict[str, tuple[str, bool]] = {}

    def walk(path: str, value: Any) -> None:
        if isinstance(value, Mapping) and set(value) == {"secure"}:
            out[path] = (str(value["secure"]), True)
        elif isinstance(value, Mapping):
            for k, v in value.items():
                walk(f"{path}.{k}", v)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(f"{path}[{i}]", v)
        elif isinstance(value, bool):
            out[path] = ("true" if value else "false", False)
        else:
            out[path] = (str(value), False)

    for key, value in config.items():
        walk(key, value)
    return out


def read_stack_file(path: Path) -> dict[str, Any]:
    """The ``config:`` mapping of a stack file, with errors that name the file."""
    import yaml

    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise EphemeralError(f"--stack-file: {path} does not exist") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise EphemeralError(f"{path}:{where} is not valid YAML ({getattr(e, 'problem', e)})") \
            from None
    if not isinstance(raw, dict) or not isinstance(raw.get("config"), dict):
        raise EphemeralError(f"{path}: no top-level `config:` mapping; start from "
                             "Pulumi.ephemeral.yaml")
    return raw["config"]


def expiry_tags(owner: str, ttl_hours: int, now: datetime) -> dict[str, str]:
    """Stack tags naming the owner, the TTL and the expiry (ISO 8601, UTC)."""
    if not owner.strip():
        raise EphemeralError("--owner: empty; name the person or team that owns the stack")
    if not 1 <= ttl_hours <= 24 * 14:
        raise EphemeralError(f"--ttl-hours: {ttl_hours} is outside 1..336 (two weeks)")
    expires = (now + timedelta(hours=ttl_hours)).astimezone(UTC).replace(microsecond=0)
    return {TAG_KIND: "ephemeral", TAG_OWNER: owner, TAG_TTL: str(ttl_hours),
            TAG_EXPIRES: expires.isoformat().replace("+00:00", "Z")}


def expired(tags: Mapping[str, str], now: datetime) -> bool:
    """True when the stack's expiry tag is in the past (a stack without one never expires)."""
    raw = tags.get(TAG_EXPIRES)
    if not raw:
        return False
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return False
    return when <= now


# ---- the engine --------------------------------------------------------------------------------
class Workspace(Protocol):
    """What the runner needs of the Pulumi engine."""

    def prepare(self, name: str, config: Mapping[str, tuple[str, bool]],
                tags: Mapping[str, str]) -> None: ...
    def up(self, name: str, policy_packs: list[str], on_output: Callable[[str], None]) \
        -> dict[str, Any]: ...
    def destroy(self, name: str, on_output: Callable[[str], None]) -> None: ...
    def remove(self, name: str) -> None: ...
    def list_stacks(self) -> list[str]: ...
    def tags(self, name: str) -> dict[str, str]: ...
    def outputs(self, name: str) -> dict[str, Any]: ...


class PulumiWorkspace:
    """The Automation API over this repository's project (``Pulumi.yaml``)."""

    def __init__(self, work_dir: Path = REPO) -> None:
        from pulumi import automation as auto

        self._auto = auto
        self._ws = auto.LocalWorkspace(work_dir=str(work_dir))

    def _stack(self, name: str, create: bool = False):
        auto = self._auto
        if create:
            return auto.Stack.create_or_select(name, self._ws)
        return auto.Stack.select(name, self._ws)

    def prepare(self, name, config, tags) -> None:
        stack = self._stack(name, create=True)
        stack.set_all_config({k: self._auto.ConfigValue(value=v, secret=s)
                              for k, (v, s) in config.items()}, path=True)
        for k, v in tags.items():
            self._ws.set_tag(name, k, v)

    def up(self, name, policy_packs, on_output) -> dict[str, Any]:
        result = self._stack(name).up(policy_packs=policy_packs, on_output=on_output)
        return {k: v.value for k, v in result.outputs.items()}

    def destroy(self, name, on_output) -> None:
        self._stack(name).destroy(on_output=on_output)

    def remove(self, name) -> None:
        self._ws.remove_stack(name)

    def list_stacks(self) -> list[str]:
        return [s.name for s in self._ws.list_stacks()]

    def tags(self, name) -> dict[str, str]:
        return dict(self._ws.list_tags(name))

    def outputs(self, name) -> dict[str, Any]:
        return {k: v.value for k, v in self._stack(name).outputs().items()}


# ---- smoke test ----------------------------------------------------------------------------------
@dataclass
class SmokeResult:
    """What the smoke test checked, each with its verdict."""

    checks: list[tuple[str, bool, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(ok for _, ok, _ in self.checks)


def smoke_test(outputs: Mapping[str, Any], *, api_key: str | None = None,
               spec: Path = REPO / "bootstrap" / "projects.yaml",
               timeout: float = 30) -> SmokeResult:
    """Label Studio answers ``/health``, and every project of the spec exists (the bootstrap).

    ``outputs``: the stack outputs (``labelStudioUrl``; ``labelStudioApiKey`` when exported
    as a secret). Run from a network that reaches the internal load balancer."""
    import httpx

    result = SmokeResult()
    url = str(outputs.get("labelStudioUrl") or "").rstrip("/")
    if not url:
        result.checks.append(("label-studio-url", False, "the stack has no labelStudioUrl output"))
        return result
    try:
        r = httpx.get(f"{url}/health", timeout=timeout, follow_redirects=False)
        result.checks.append(("label-studio-health", r.status_code == 200,
                              f"GET {url}/health -> HTTP {r.status_code}"))
    except httpx.HTTPError as e:
        result.checks.append(("label-studio-health", False, f"GET {url}/health: {e!r}"))
        return result
    key = api_key or outputs.get("labelStudioApiKey")
    if not key:
        result.checks.append(("bootstrap", False, "no API key (output labelStudioApiKey or "
                              "--api-key-file) to read the projects"))
        return result
    import json
    import tempfile

    from bootstrap import spec as bootstrap_spec
    from bootstrap.client import Server
    from bootstrap.errors import BootstrapError
    from bootstrap.planner import Planner

    try:
        with tempfile.NamedTemporaryFile("w", suffix=".json") as fh:
            json.dump({k: v for k, v in outputs.items() if k != "labelStudioApiKey"}, fh)
            fh.flush()
            sp = bootstrap_spec.load_spec(spec, stack_outputs_file=Path(fh.name))
        found = Planner(Server(url, str(key)), sp, spec.parent).find_projects()
        missing = [p.key for p in sp.projects if p.enabled and p.key not in found]
        result.checks.append(("bootstrap", not missing,
                              f"missing projects: {', '.join(missing)}" if missing
                              else f"{len(found)} project(s) present"))
    except BootstrapError as e:
        result.checks.append(("bootstrap", False, str(e)))
    return result


# ---- the runner ----------------------------------------------------------------------------------
@dataclass
class RunReport:
    """The outcome of ``run``: which phases passed, and a stack left behind if any."""

    stack: str
    up_ok: bool = False
    smoke: SmokeResult | None = None
    destroyed: bool = False
    removed: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if not self.destroyed or not self.up_ok:
            return EXIT_SERVICE
        if self.smoke is None or not self.smoke.ok:
            return EXIT_FAILED
        return EXIT_OK


@dataclass
class Runner:
    """Drives one workspace; every phase reports through ``log``."""

    workspace: Workspace
    policy_pack: Path = REPO / "policies"
    log: Callable[[str], None] = print
    smoke: Callable[[Mapping[str, Any]], SmokeResult] = smoke_test

    def up(self, name: str, config: Mapping[str, Any], tags: Mapping[str, str]) -> dict[str, Any]:
        self.log(f"stack {name}: configuring ({len(config)} keys) and tagging")
        self.workspace.prepare(name, flatten_config(config), tags)
        self.log(f"stack {name}: up with the policy pack {self.policy_pack}")
        return self.workspace.up(name, [str(self.policy_pack)], self.log)

    def destroy(self, name: str) -> None:
        """Destroy, then remove the stack; a failed destroy keeps the stack (and raises)."""
        self.log(f"stack {name}: destroy")
        try:
            self.workspace.destroy(name, self.log)
        except Exception as e:
            raise EphemeralError(f"destroy of {name} failed: {e}; the stack is kept, re-run "
                                 f"`labelstack ephemeral destroy --stack {name}`",
                                 EXIT_SERVICE) from e
        self.workspace.remove(name)
        self.log(f"stack {name}: destroyed and removed")

    def run(self, name: str, config: Mapping[str, Any], tags: Mapping[str, str]) -> RunReport:
        """up -> smoke test -> destroy -> remove; destroy runs whatever happened before."""
        report = RunReport(stack=name)
        try:
            outputs = self.up(name, config, tags)
            report.up_ok = True
            report.smoke = self.smoke(outputs)
            for check, ok, detail in report.smoke.checks:
                self.log(f"smoke {check}: {'ok' if ok else 'FAILED'} ({detail})")
        except Exception as e:  # any failure of up or the test still destroys
            report.errors.append(f"{'smoke test' if report.up_ok else 'up'} failed: {e}")
            self.log(report.errors[-1])
        try:
            self.destroy(name)
            report.destroyed = report.removed = True
        except EphemeralError as e:
            report.errors.append(str(e))
            self.log(str(e))
        return report

    def sweep(self, now: datetime) -> tuple[list[str], list[str]]:
        """Destroy every ephemeral stack past its expiry: (destroyed, kept because it failed)."""
        destroyed, failed = [], []
        for name in self.workspace.list_stacks():
            tags = self.workspace.tags(name)
            if tags.get(TAG_KIND) != "ephemeral" or not expired(tags, now):
                continue
            self.log(f"stack {name}: expired at {tags[TAG_EXPIRES]} (owner {tags.get(TAG_OWNER)})")
            try:
                self.destroy(name)
                destroyed.append(name)
            except EphemeralError as e:
                self.log(str(e))
                failed.append(name)
        return destroyed, failed


# ---- CLI -----------------------------------------------------------------------------------------
app = typer.Typer(add_completion=False, no_args_is_help=True, epilog=EXIT_CODES,
                  help="Ephemeral stacks: up, smoke test, destroy, sweep (Pulumi Automation API).")

PrOpt = Annotated[int | None, typer.Option("--pr", help="pull-request number: stack eph-pr-N")]
BranchOpt = Annotated[str | None, typer.Option("--branch", envvar="GITHUB_HEAD_REF",
                                               help="branch name (when no --pr)")]
OwnerOpt = Annotated[str, typer.Option("--owner", envvar="LABELSTACK_OWNER",
                                       help="person or team owning the stack (tag)")]
TtlOpt = Annotated[int, typer.Option("--ttl-hours", help="hours until `sweep` destroys it")]
FileOpt = Annotated[Path, typer.Option("--stack-file", help="configuration to copy")]
StackOpt = Annotated[str | None, typer.Option("--stack", help="an existing stack's name")]


def _workspace() -> Workspace:
    try:
        return PulumiWorkspace()
    except Exception as e:  # no CLI, no backend login
        raise EphemeralError(f"the Pulumi engine is not usable here: {e}. Install the Pulumi "
                             "CLI, `pulumi login` to the state backend, and set "
                             "PULUMI_CONFIG_PASSPHRASE (README: Deploy to AWS)",
                             EXIT_SERVICE) from e


def _guard(fn: Callable[[], int]) -> None:
    try:
        code = fn()
    except EphemeralError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(e.exit_code) from None
    raise typer.Exit(code)


def _name(stack: str | None, pr: int | None, branch: str | None) -> str:
    if stack:
        if not stack.startswith(PREFIX):
            raise EphemeralError(f"--stack: {stack!r} is not an ephemeral stack (names start "
                                 f"with {PREFIX!r}); this tool never destroys other stacks")
        return stack
    return stack_name(branch=branch, pr=pr)


@app.command()
def up(pr: PrOpt = None, branch: BranchOpt = None, owner: OwnerOpt = "",
       ttl_hours: TtlOpt = 24, stack_file: FileOpt = REPO / "Pulumi.ephemeral.yaml") -> None:
    """Create or update the stack with the policy pack; print its outputs."""
    def go() -> int:
        name = stack_name(branch=branch, pr=pr)
        tags = expiry_tags(owner, ttl_hours, datetime.now(UTC))
        outputs = Runner(_workspace()).up(name, read_stack_file(stack_file), tags)
        for k, v in sorted(outputs.items()):
            typer.echo(f"{k}: {v}")
        return EXIT_OK
    _guard(go)


@app.command("test")
def test_cmd(pr: PrOpt = None, branch: BranchOpt = None, stack: StackOpt = None,
             api_key_file: Annotated[Path | None, typer.Option(
                 help="file holding a Label Studio API key")] = None) -> None:
    """Smoke test a running stack: Label Studio reachable, the projects bootstrapped."""
    def go() -> int:
        name = _name(stack, pr, branch)
        outputs = _workspace().outputs(name)
        key = api_key_file.read_text().strip() if api_key_file else None
        res = smoke_test(outputs, api_key=key)
        for check, ok, detail in res.checks:
            typer.echo(f"{check}: {'ok' if ok else 'FAILED'} ({detail})")
        return EXIT_OK if res.ok else EXIT_FAILED
    _guard(go)


@app.command()
def destroy(pr: PrOpt = None, branch: BranchOpt = None, stack: StackOpt = None) -> None:
    """Destroy the stack's resources, then remove the stack (kept if destroy fails)."""
    def go() -> int:
        name = _name(stack, pr, branch)  # validated before the engine is touched
        Runner(_workspace()).destroy(name)
        return EXIT_OK
    _guard(go)


@app.command()
def run(pr: PrOpt = None, branch: BranchOpt = None, owner: OwnerOpt = "",
        ttl_hours: TtlOpt = 6, stack_file: FileOpt = REPO / "Pulumi.ephemeral.yaml") -> None:
    """up -> smoke test -> destroy -> remove, for a pull request's CI job."""
    def go() -> int:
        name = stack_name(branch=branch, pr=pr)
        tags = expiry_tags(owner, ttl_hours, datetime.now(UTC))
        report = Runner(_workspace()).run(name, read_stack_file(stack_file), tags)
        for e in report.errors:
            typer.echo(f"error: {e}", err=True)
        if not report.destroyed:
            typer.echo(f"stack {name} was NOT destroyed and is kept: destroy it by hand",
                       err=True)
        return report.exit_code
    _guard(go)


@app.command()
def sweep() -> None:
    """Destroy every ephemeral stack past its expiry tag."""
    def go() -> int:
        destroyed, failed = Runner(_workspace()).sweep(datetime.now(UTC))
        typer.echo(f"destroyed {len(destroyed)}: {', '.join(destroyed) or '-'}")
        if failed:
            typer.echo(f"kept (destroy failed) {len(failed)}: {', '.join(failed)}", err=True)
            return EXIT_SERVICE
        return EXIT_OK
    _guard(go)

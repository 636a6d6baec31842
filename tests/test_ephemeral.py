"""The ephemeral runner against a fake workspace (the Pulumi engine cannot run here), and its
smoke test against a real Label Studio."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from infra import ephemeral as E
from labelstack.cli import cli

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


class FakeWorkspace:
    """Records every call; ``fail`` names the phases that raise."""

    def __init__(self, fail: set[str] | None = None, outputs: dict | None = None) -> None:
        self.fail = fail or set()
        self.calls: list[tuple[str, str]] = []
        self.stacks: dict[str, dict] = {}
        self._outputs = outputs if outputs is not None else {"labelStudioUrl": "http://ls"}

    def _call(self, phase: str, name: str) -> None:
        self.calls.append((phase, name))
        if phase in self.fail:
            raise RuntimeError(f"{phase} exploded")

    def prepare(self, name, config, tags) -> None:
        self._call("prepare", name)
        self.stacks[name] = {"config": dict(config), "tags": dict(tags)}

    def up(self, name, policy_packs, on_output):
        self._call("up", name)
        self.stacks[name]["policy_packs"] = policy_packs
        return dict(self._outputs)

    def destroy(self, name, on_output) -> None:
        self._call("destroy", name)

    def remove(self, name) -> None:
        self._call("remove", name)
        self.stacks.pop(name, None)

    def list_stacks(self):
        return list(self.stacks)

    def tags(self, name):
        return self.stacks[name]["tags"]

    def outputs(self, name):
        return dict(self._outputs)


def ok_smoke(outputs):
    return E.SmokeResult([("label-studio-health", True, "200")])


def bad_smoke(outputs):
    return E.SmokeResult([("label-studio-health", False, "HTTP 502")])


def runner(ws: FakeWorkspace, smoke=ok_smoke) -> E.Runner:
    return E.Runner(ws, log=lambda _: None, smoke=smoke)


TAGS = E.expiry_tags("platform-team", 6, NOW)
CONFIG = {"aws:region": "us-east-1", "labelstack:profile": "ephemeral",
          "labelstack:adminRoleArns": ["arn:aws:iam::123456789012:role/a"]}


# ---- naming, config, tags --------------------------------------------------------------------
@pytest.mark.parametrize(("kwargs", "name"), [
    ({"pr": 42}, "eph-pr-42"),
    ({"branch": "Feature/SAM2 video!"}, "eph-feature-sam2-video"),
    ({"branch": "x" * 80}, "eph-" + "x" * 36),
])
def test_stack_names(kwargs, name):
    assert E.stack_name(**kwargs) == name


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({}, "--pr"), ({"pr": 0}, "--pr: 0"), ({"branch": "///"}, "--branch"),
])
def test_stack_name_errors(kwargs, needle):
    with pytest.raises(E.EphemeralError, match=needle):
        E.stack_name(**kwargs)


def test_flatten_config_paths_and_secrets():
    flat = E.flatten_config({"aws:region": "eu-west-1", "labelstack:roles": ["a", "b"],
                             "labelstack:tok": {"secure": "v1:abc"}, "labelstack:on": True,
                             "labelstack:nested": {"k": 3}})
    assert flat == {"aws:region": ("eu-west-1", False), "labelstack:roles[0]": ("a", False),
                    "labelstack:roles[1]": ("b", False), "labelstack:tok": ("v1:abc", True),
                    "labelstack:on": ("true", False), "labelstack:nested.k": ("3", False)}


def test_expiry_tags_and_expired():
    tags = E.expiry_tags("team-a", 6, NOW)
    assert tags[E.TAG_EXPIRES] == "2026-11-22T18:00:00Z"
    assert tags[E.TAG_OWNER] == "team-a" and tags[E.TAG_TTL] == "6"
    assert not E.expired(tags, NOW + timedelta(hours=5))
    assert E.expired(tags, NOW + timedelta(hours=6))
    assert not E.expired({}, NOW)  # untagged stacks never expire
    with pytest.raises(E.EphemeralError, match="--ttl-hours: 0"):
        E.expiry_tags("team-a", 0, NOW)
    with pytest.raises(E.EphemeralError, match="--owner"):
        E.expiry_tags(" ", 6, NOW)


def test_read_stack_file_errors(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("config:\n  a: [1,\n")
    with pytest.raises(E.EphemeralError, match=r"bad.yaml: line \d+, column \d+"):
        E.read_stack_file(bad)
    nocfg = tmp_path / "nocfg.yaml"
    nocfg.write_text("aws:region: us-east-1\n")
    with pytest.raises(E.EphemeralError, match="no top-level `config:`"):
        E.read_stack_file(nocfg)
    with pytest.raises(E.EphemeralError, match="does not exist"):
        E.read_stack_file(tmp_path / "missing.yaml")


def test_shipped_ephemeral_stack_file_reads():
    config = E.read_stack_file(E.REPO / "Pulumi.ephemeral.yaml")
    assert config["labelstack:profile"] == "ephemeral"


# ---- every path of run ------------------------------------------------------------------------
def test_run_happy_path_destroys_and_removes():
    ws = FakeWorkspace()
    report = runner(ws).run("eph-pr-1", CONFIG, TAGS)
    assert [c for c, _ in ws.calls] == ["prepare", "up", "destroy", "remove"]
    assert report.exit_code == E.EXIT_OK and report.destroyed and report.removed
    assert "eph-pr-1" not in ws.stacks


def test_run_applies_policy_pack_config_and_tags():
    ws = FakeWorkspace()
    r = runner(ws)
    r.up("eph-pr-2", CONFIG, TAGS)
    st = ws.stacks["eph-pr-2"]
    assert st["policy_packs"] == [str(E.REPO / "policies")]
    assert st["config"]["labelstack:adminRoleArns[0]"] == ("arn:aws:iam::123456789012:role/a",
                                                          False)
    assert st["tags"][E.TAG_KIND] == "ephemeral"


def test_run_up_fails_destroy_still_runs():
    ws = FakeWorkspace(fail={"up"})
    report = runner(ws).run("eph-pr-3", CONFIG, TAGS)
    assert ("destroy", "eph-pr-3") in ws.calls and ("remove", "eph-pr-3") in ws.calls
    assert report.exit_code == E.EXIT_SERVICE
    assert any("up failed: up exploded" in e for e in report.errors)


def test_run_smoke_fails_destroy_still_runs():
    ws = FakeWorkspace()
    report = runner(ws, smoke=bad_smoke).run("eph-pr-4", CONFIG, TAGS)
    assert [c for c, _ in ws.calls][-2:] == ["destroy", "remove"]
    assert report.exit_code == E.EXIT_FAILED


def test_run_smoke_raises_destroy_still_runs():
    def boom(outputs):
        raise RuntimeError("cannot reach the load balancer")

    ws = FakeWorkspace()
    report = runner(ws, smoke=boom).run("eph-pr-5", CONFIG, TAGS)
    assert report.destroyed and report.exit_code == E.EXIT_FAILED
    assert any("smoke test failed" in e for e in report.errors)


def test_run_destroy_fails_stack_kept_and_reported():
    ws = FakeWorkspace(fail={"destroy"})
    report = runner(ws).run("eph-pr-6", CONFIG, TAGS)
    assert ("remove", "eph-pr-6") not in ws.calls
    assert "eph-pr-6" in ws.stacks  # never forgotten
    assert not report.destroyed and report.exit_code == E.EXIT_SERVICE
    assert any("eph-pr-6" in e and "kept" in e for e in report.errors)


def test_sweep_destroys_only_expired_ephemeral_stacks():
    ws = FakeWorkspace()
    ws.stacks = {
        "eph-old": {"tags": E.expiry_tags("a", 1, NOW - timedelta(hours=3))},
        "eph-fresh": {"tags": E.expiry_tags("a", 24, NOW)},
        "prod": {"tags": {E.TAG_EXPIRES: "2000-01-01T00:00:00Z"}},  # not ours: no kind tag
        "eph-untagged": {"tags": {}},
    }
    destroyed, failed = runner(ws).sweep(NOW)
    assert destroyed == ["eph-old"] and failed == []
    assert set(ws.stacks) == {"eph-fresh", "prod", "eph-untagged"}


def test_sweep_destroy_failure_is_reported_and_kept():
    ws = FakeWorkspace(fail={"destroy"})
    ws.stacks = {"eph-old": {"tags": E.expiry_tags("a", 1, NOW - timedelta(hours=3))}}
    destroyed, failed = runner(ws).sweep(NOW)
    assert destroyed == [] and failed == ["eph-old"] and "eph-old" in ws.stacks


# ---- CLI ----------------------------------------------------------------------------------------
def test_cli_refuses_non_ephemeral_stack(monkeypatch):
    monkeypatch.setattr(E, "_workspace", FakeWorkspace)
    result = CliRunner().invoke(cli, ["ephemeral", "destroy", "--stack", "prod"])
    assert result.exit_code == E.EXIT_INPUT
    assert "not an ephemeral stack" in result.output


def test_cli_run_destroy_failure_exit_code(monkeypatch, tmp_path):
    ws = FakeWorkspace(fail={"destroy"})
    monkeypatch.setattr(E, "_workspace", lambda: ws)
    monkeypatch.setattr(E, "smoke_test", ok_smoke)
    monkeypatch.setattr(E.Runner, "smoke", staticmethod(ok_smoke))
    result = CliRunner().invoke(cli, ["ephemeral", "run", "--pr", "9", "--owner", "me"])
    assert result.exit_code == E.EXIT_SERVICE, result.output
    assert "eph-pr-9 was NOT destroyed" in result.output


def test_cli_without_pulumi_engine_is_a_clear_error(monkeypatch):
    def no_engine():
        raise E.EphemeralError("the Pulumi engine is not usable here: no CLI", E.EXIT_SERVICE)

    monkeypatch.setattr(E, "_workspace", no_engine)
    result = CliRunner().invoke(cli, ["ephemeral", "sweep"])
    assert result.exit_code == E.EXIT_SERVICE and "Pulumi engine" in result.output


# ---- smoke test against a real Label Studio ----------------------------------------------
@pytest.mark.servers
def test_smoke_test_real_label_studio(label_studio, tmp_path):
    """Health passes; the bootstrap check fails until every project of the spec exists."""
    import secrets

    import httpx

    from bootstrap import spec as S

    suffix = secrets.token_hex(3)
    keys = {"sam2-segmentation": f"smoke-{suffix}-a", "derm-lesion-tracking": f"smoke-{suffix}-b"}
    text = (E.REPO / "bootstrap" / "projects.yaml").read_text()
    for old, new in keys.items():
        text = text.replace(f"key: {old}", f"key: {new}")
    spec = E.REPO / "bootstrap" / f".smoke-{suffix}.yaml"  # beside the spec: relative paths
    spec.write_text(text)
    try:
        key = label_studio.personal_access_token()
        # the outputs a real stack has: the spec resolves bucket names from them
        outputs = {"labelStudioUrl": label_studio.url,
                   "bucketNames": {"annotations": "ann-bucket", "source-dermatology": "derm-b",
                                   "source-segmentation": "seg-bucket"}}
        res = E.smoke_test(outputs, api_key=key, spec=spec)
        checks = {name: (ok, detail) for name, ok, detail in res.checks}
        assert checks["label-studio-health"][0] is True
        assert checks["bootstrap"][0] is False and keys["sam2-segmentation"] in checks[
            "bootstrap"][1]
        auth = {"Authorization": f"Token {label_studio.legacy_token}"}
        for new in keys.values():
            r = httpx.post(f"{label_studio.url}/api/projects/", headers=auth, timeout=30,
                           json={"title": f"smoke {new}",
                                 "description": f"{S.MARKER_PREFIX}{new}"})
            r.raise_for_status()
        res = E.smoke_test(outputs, api_key=key, spec=spec)
        assert res.ok, res.checks
    finally:
        spec.unlink()


@pytest.mark.servers
def test_smoke_test_unreachable_fails():
    res = E.smoke_test({"labelStudioUrl": "http://127.0.0.1:9"}, timeout=2)
    assert not res.ok and res.checks[0][0] == "label-studio-health"

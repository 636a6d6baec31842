"""The bootstrap refuses to register a basic-auth ML backend whose credential env vars are
unset: a clear bad-input error (exit 2) before anything is written to Label Studio."""

from __future__ import annotations

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from bootstrap.cli import app
from bootstrap.spec import marker_key

KEY = "backend-auth-check"


@pytest.mark.servers
def test_apply_with_unset_backend_credentials_exits_2_and_writes_nothing(
        label_studio, tmp_path, monkeypatch):
    monkeypatch.delenv("SAM2_BASIC_AUTH_USER", raising=False)
    monkeypatch.setenv("SAM2_BASIC_AUTH_PASS", "set-but-user-missing")
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"version": 1, "projects": [{
        "key": KEY, "title": "Backend auth check",
        "label_config": {"template": "sam2_segmentation", "labels": ["Object"]},
        "ml_backend": {"url": "http://127.0.0.1:9", "auth": "basic",
                       "basic_auth_user_env": "SAM2_BASIC_AUTH_USER",
                       "basic_auth_password_env": "SAM2_BASIC_AUTH_PASS"}}]}))
    token = tmp_path / "token"
    token.write_text(label_studio.legacy_token)

    r = CliRunner().invoke(app, ["apply", "--spec", str(spec), "--url", label_studio.url,
                                 "--token-file", str(token)])

    out = " ".join(r.output.split())  # rich wraps long lines
    assert r.exit_code == 2, r.output
    assert f"projects[{KEY}].ml_backend.basic_auth_user_env" in out
    assert "SAM2_BASIC_AUTH_USER is not set" in out
    assert "set SAM2_BASIC_AUTH_USER to the backend's user, the same value the backend runs " \
        "with" in out
    projects = httpx.get(f"{label_studio.url}/api/projects/", params={"page_size": 1000},
                         headers={"Authorization": f"Token {label_studio.legacy_token}"},
                         timeout=30).json()["results"]
    assert KEY not in {marker_key(p.get("description")) for p in projects}  # nothing created

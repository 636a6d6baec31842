"""A real Label Studio connects the SAM2 backend and gets masks from it through its own API.

Label Studio (on PostgreSQL, ML_BLOCK_LOCAL_IP=false) runs its connection check (/health then
/setup) with HTTP basic auth (its BASIC_AUTH ML connection) when the backend is added; an
interactive-annotating call then makes Label Studio send /predict, and the backend fetches the
uploaded image back from Label Studio with a personal access token (exchanged for a Bearer
access token, the path the public example gets 401s on). Opening a task makes Label Studio
call /predict without prompts: the backend answers an empty prediction Label Studio accepts
and encodes the image meanwhile, so the first click runs the decoder only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from label_studio_sdk import LabelStudio

from tests.backend_server import (
    LABEL_CONFIG,
    BackendProcess,
    decode_region,
    keypoint,
    rectangle,
    sample_image,
    start_backend,
    wait_prewarm_idle,
)
from tests.servers import LabelStudioServer, run_label_studio, run_postgres

pytestmark = [pytest.mark.servers, pytest.mark.sam2]


#: Label Studio 1.23.2's default SSRF block list, less the one range the ML backend lives in
#: (loopback here; the cluster's service CIDR in the Helm values, see docs/backend.md).
BANNED_SUBNETS_BUT_LOOPBACK = (
    "0.0.0.0/8,10.0.0.0/8,100.64.0.0/10,169.254.0.0/16,172.16.0.0/12,192.0.0.0/24,"
    "192.0.2.0/24,192.88.99.0/24,192.168.0.0/16,198.18.0.0/15,198.51.100.0/24,"
    "203.0.113.0/24,224.0.0.0/4,233.252.0.0/24,240.0.0.0/4,255.255.255.255/32,::/128,::1/128,"
    "fc00::/7,fe80::/10,ff00::/8"
)


@pytest.fixture(scope="module")
def label_studio_for_ml(s3_server) -> Iterator[LabelStudioServer]:
    """Label Studio with the ML backend's range taken off its SSRF block list.

    Adding an ML backend makes Label Studio 1.23.2 create a webhook to <backend>/webhook, and
    webhook URLs are checked against the SSRF block list even with ML_BLOCK_LOCAL_IP=false:
    with the default list, a backend on loopback (or on a 10.x/172.x ClusterIP in the
    cluster) is refused with 403 "URL resolves to a reserved network address". The shared
    `label_studio` fixture keeps the default list, so this module starts its own instance
    (own PostgreSQL database, the same hardening env otherwise).
    """
    with contextlib.ExitStack() as stack:
        mp = stack.enter_context(pytest.MonkeyPatch.context())
        mp.setenv("USE_DEFAULT_BANNED_SUBNETS", "false")
        mp.setenv("USER_ADDITIONAL_BANNED_SUBNETS", BANNED_SUBNETS_BUT_LOOPBACK)
        pg = stack.enter_context(run_postgres(dbname="labelstudio_ml"))
        ls = stack.enter_context(run_label_studio(pg, s3_server))
        mp.undo()
        yield ls


@pytest.fixture(scope="module")
def ls_backend(label_studio_for_ml, tmp_path_factory):
    """A SAM2 backend that resolves task images through this Label Studio with a PAT."""
    label_studio = label_studio_for_ml
    backend = start_backend(
        tmp_path_factory.mktemp("sam2-ls"),
        LABEL_STUDIO_URL=label_studio.url,
        LABEL_STUDIO_API_KEY=label_studio.personal_access_token(),
    )
    try:
        yield backend
    finally:
        backend.stop()


def _project_with_backend(label_studio: LabelStudioServer, backend: BackendProcess,
                          title: str, seed: int):
    """A project with one uploaded image, the backend connected with basic auth."""
    client = LabelStudio(base_url=label_studio.url, api_key=label_studio.legacy_token)
    project = client.projects.create(title=title, label_config=LABEL_CONFIG)
    headers = {"Authorization": f"Token {label_studio.legacy_token}"}
    upload = httpx.post(
        f"{label_studio.url}/api/projects/{project.id}/import",
        headers=headers,
        files={"file": ("scan.png", sample_image(seed), "image/png")},
        timeout=60,
    )
    assert upload.status_code == 201, upload.text
    (task,) = client.tasks.list(project=project.id)
    assert str(task.data["image"]).startswith("/data/upload/")
    user, password = backend.auth
    ml = client.ml.create(
        project=project.id, url=backend.url, is_interactive=True, title="SAM2",
        auth_method="BASIC_AUTH", basic_auth_user=user, basic_auth_pass=password,
    )
    return client, headers, task, ml


def test_label_studio_connects_and_predicts(label_studio_for_ml, ls_backend) -> None:
    label_studio = label_studio_for_ml
    setups_before = ls_backend.health().json()["requests"]["setup"]
    client, headers, task, ml = _project_with_backend(label_studio, ls_backend,
                                                      "SAM2 backend check", 301)
    state = client.ml.get(ml.id)
    assert state.state == "CO", state  # Label Studio's own check: /health then /setup
    assert ls_backend.health().json()["requests"]["setup"] > setups_before

    context = {"result": [keypoint(40, 45), rectangle(20, 20, 50, 55)]}
    resp = httpx.post(
        f"{label_studio.url}/api/ml/{ml.id}/interactive-annotating",
        headers=headers,
        json={"task": task.id, "context": context},
        timeout=120,
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert "errors" not in body, body
    (region,) = body["data"]["result"]
    assert region["type"] == "brushlabels" and region["value"]["brushlabels"] == ["Lesion"]
    assert (region["original_width"], region["original_height"]) == (256, 192)
    mask = decode_region(region)
    assert mask.shape == (192, 256) and set(np.unique(mask)) <= {0, 255}
    assert ls_backend.health().json()["encoder_calls"] >= 1


def test_task_open_prewarms_and_the_first_click_skips_the_encoder(
    label_studio_for_ml, ls_backend
) -> None:
    label_studio = label_studio_for_ml
    _, headers, task, ml = _project_with_backend(label_studio, ls_backend,
                                                      "SAM2 prewarm check", 303)
    log_start = label_studio.log_path.stat().st_size
    before = wait_prewarm_idle(ls_backend)
    # the labeling page loads the task: Label Studio calls /predict without prompts
    opened = httpx.get(f"{label_studio.url}/api/tasks/{task.id}/", headers=headers, timeout=120)
    assert opened.status_code == 200, opened.text
    warmed = wait_prewarm_idle(ls_backend)
    assert warmed["prewarm"]["encoded"] == before["prewarm"]["encoded"] + 1
    assert warmed["encoder_calls"] == before["encoder_calls"] + 1

    context = {"result": [keypoint(45, 50)]}
    resp = httpx.post(f"{label_studio.url}/api/ml/{ml.id}/interactive-annotating",
                      headers=headers, json={"task": task.id, "context": context}, timeout=120)
    assert resp.status_code == 200, resp.text
    assert "errors" not in resp.json(), resp.json()
    (region,) = resp.json()["data"]["result"]
    assert decode_region(region).shape == (192, 256)
    clicked = ls_backend.health().json()
    assert clicked["encoder_calls"] == warmed["encoder_calls"]  # the click: decoder only
    assert clicked["decoder_calls"] == warmed["decoder_calls"] + 1
    assert clicked["prewarm"]["memo_hits"] > warmed["prewarm"]["memo_hits"]  # no refetch

    # the empty answer stored no prediction, so the next open asks (and finds it warm) again
    stored = httpx.get(f"{label_studio.url}/api/predictions/", params={"task": task.id},
                       headers=headers, timeout=60)
    assert stored.status_code == 200 and stored.json() == [], stored.text
    again = httpx.get(f"{label_studio.url}/api/tasks/{task.id}/", headers=headers, timeout=120)
    assert again.status_code == 200
    reopened = wait_prewarm_idle(ls_backend)
    assert reopened["prewarm"]["scheduled"] == clicked["prewarm"]["scheduled"] + 1
    assert reopened["encoder_calls"] == clicked["encoder_calls"]

    with label_studio.log_path.open("rb") as fh:
        fh.seek(log_start)
        log = fh.read().decode(errors="replace")
    assert "incorrect response" not in log and "incorrect prediction" not in log

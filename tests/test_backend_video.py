"""SAM2 video tracking: several objects from VideoRectangle box prompts, on CPU with the real
architecture (tiny, random weights) and a generated 24-frame 320x240 video; the answer saved
and exported by a real Label Studio; bad input answered with 4xx; the state cache's bounds."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import torch

from backend.video import (
    StateCache,
    Track,
    VideoRegion,
    keyframes,
    mask_box,
    new_inference_state,
    tensor_bytes,
)
from bootstrap import label_configs as LC
from tests.backend_server import BackendProcess, start_backend
from tests.video_samples import SampleVideo, region, two_objects_video

#: frames tracked past the last prompt in these tests (few: CPU time)
TRACK = 2
VIDEO_CONFIG = LC.sam2_video(["Car", "Person"], frame_rate=24)


@pytest.fixture(scope="module")
def video() -> SampleVideo:
    return two_objects_video()


@pytest.fixture(scope="module")
def video_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackendProcess]:
    backend = start_backend(tmp_path_factory.mktemp("sam2-video"), timeout=300,
                            SAM2_VIDEO_FRAMES=str(TRACK), SAM2_VIDEO_MAX_OBJECTS="2",
                            SAM2_VIDEO_MAX_BYTES=str(2 * 2**20))
    try:
        yield backend
    finally:
        backend.stop()


def predict(backend: BackendProcess, data: str, regions: list[dict],
            config: str = VIDEO_CONFIG) -> httpx.Response:
    body = {"tasks": [{"id": 7, "data": {"video": data}}], "project": "1.1700000000",
            "label_config": config, "params": {"context": {"result": regions}}}
    return backend.post("/predict", json=body, timeout=900)  # with the caller credentials


def video_stats(backend: BackendProcess) -> dict:
    return backend.health().json()["video"]


@pytest.fixture(scope="module")
def tracked(video_backend: BackendProcess, video: SampleVideo) -> dict:
    """One tracking call: the square prompted on frame 3, the disc on frame 4."""
    before = video_stats(video_backend)
    regions = [region(video, "sq", 0, 3, "Car"), region(video, "disc", 1, 4, "Person")]
    r = predict(video_backend, video.data_uri(), regions)
    assert r.status_code == 200, r.text
    return {"regions": regions, "answer": r.json(), "before": before,
            "after": video_stats(video_backend)}


# -- tracking through the real backend ------------------------------------------------------
@pytest.mark.sam2
def test_every_object_tracked_in_one_pass(tracked: dict, video: SampleVideo) -> None:
    [prediction] = tracked["answer"]["results"]
    results = prediction["result"]
    assert [r["id"] for r in results] == ["sq", "disc"]  # one result per object, its own id
    assert prediction["model_version"].endswith("-video:random")
    last = 4 + TRACK  # window: first prompt (3) .. last prompt (4) + TRACK frames
    for res, sent in zip(results, tracked["regions"], strict=True):
        assert res["type"] == "videorectangle"
        assert (res["from_name"], res["to_name"]) == ("box", "video")
        value = res["value"]
        assert value["labels"] == sent["value"]["labels"]
        assert value["framesCount"] == video.frames and value["duration"] == pytest.approx(1.0)
        seq = value["sequence"]
        frames = [k["frame"] for k in seq]
        assert frames == sorted(set(frames))
        prompt = sent["value"]["sequence"][0]
        # the annotator's keyframe comes back as drawn (its lifespan may end if lost)
        assert {k: seq[0][k] for k in ("frame", "x", "y", "width", "height")} == {
            k: prompt[k] for k in ("frame", "x", "y", "width", "height")}
        assert all(prompt["frame"] <= f <= last for f in frames)
        for k in seq:
            assert k["time"] == pytest.approx(k["frame"] / video.fps)
            assert k["x"] >= 0 and k["y"] >= 0 and k["width"] > 0 and k["height"] > 0
            assert k["x"] + k["width"] <= 100.0001 and k["y"] + k["height"] <= 100.0001
        # every frame after the prompt is a keyframe, or the lifespan ended before it
        for f in range(prompt["frame"] + 1, last + 1):
            before = [k for k in seq if k["frame"] < f]
            assert f in frames or not before[-1]["enabled"], (res["id"], f, seq)
        assert 0.0 <= res["score"] <= 1.0
    # both objects went through ONE propagation over the window, not one per object
    assert tracked["after"]["frames_propagated"] - tracked["before"]["frames_propagated"] == (
        last - 3 + 1)
    assert tracked["after"]["states"] == 1 and tracked["after"]["bytes"] > 0


@pytest.mark.sam2
def test_same_window_again_reuses_the_task_state(tracked: dict, video_backend: BackendProcess,
                                                 video: SampleVideo) -> None:
    """Tracking again on the same task and frames (the annotator moved a box) reuses the
    decoded frames and their image features: no encoder pass, the same answer."""
    r = predict(video_backend, video.data_uri(), tracked["regions"])
    assert r.status_code == 200, r.text
    stats = video_stats(video_backend)
    assert stats["frames_propagated"] - tracked["after"]["frames_propagated"] == 4
    assert stats["encoder_calls"] == tracked["after"]["encoder_calls"] > 0
    assert stats["states"] == 1 and stats["evictions"] == 0
    again = r.json()["results"][0]["result"]
    first = tracked["answer"]["results"][0]["result"]
    assert [a["value"]["sequence"] for a in again] == [f["value"]["sequence"] for f in first]


# -- Label Studio accepts and keeps the keyframes --------------------------------------------
@pytest.mark.sam2
@pytest.mark.servers
def test_keyframes_saved_and_exported_by_label_studio(tracked: dict, label_studio,
                                                      video: SampleVideo) -> None:
    headers = {"Authorization": f"Token {label_studio.legacy_token}"}
    with httpx.Client(base_url=label_studio.url, headers=headers, timeout=60) as c:
        r = c.post("/api/projects/", json={"title": "SAM2 video test",
                                           "label_config": VIDEO_CONFIG})
        assert r.status_code == 201, r.text
        pid = r.json()["id"]
        r = c.post(f"/api/projects/{pid}/import", json=[{"video": video.data_uri()}])
        assert r.status_code == 201, r.text
        [task] = c.get("/api/tasks", params={"project": pid}).json()["tasks"]
        result = tracked["answer"]["results"][0]["result"]
        r = c.post(f"/api/tasks/{task['id']}/annotations/", json={"result": result})
        assert r.status_code == 201, r.text
        export = c.get(f"/api/projects/{pid}/export", params={"exportType": "JSON"})
        assert export.status_code == 200, export.text
    [exported] = export.json()
    [annotation] = exported["annotations"]
    saved = {res["id"]: res for res in annotation["result"]}
    assert set(saved) == {"sq", "disc"}
    for res in result:
        got = saved[res["id"]]
        assert got["type"] == "videorectangle" and got["from_name"] == "box"
        assert got["value"]["sequence"] == res["value"]["sequence"]
        assert got["value"]["labels"] == res["value"]["labels"]


# -- bad input ------------------------------------------------------------------------------
@pytest.mark.sam2
def test_bad_input_answered_with_clear_4xx(video_backend: BackendProcess,
                                           video: SampleVideo) -> None:
    uri = video.data_uri()
    cases = []
    late = region(video, "late", 0, 3, "Car")
    late["value"]["sequence"][0]["frame"] = video.frames + 6
    cases.append(("frame past the end", uri, [late], 422, "frame_out_of_range",
                  "past the video's last frame"))
    not_video = "data:video/mp4;base64,UE5HIG5vdCBhIHZpZGVv" + "QUFB" * 64
    cases.append(("not a video", not_video, [region(video, "a", 0, 3, "Car")], 415,
                  "video_not_decodable", "not a readable video"))
    many = [region(video, f"o{i}", 0, 3, "Car") for i in range(3)]
    cases.append(("too many objects", uri, many, 422, "too_many_objects",
                  "SAM2_VIDEO_MAX_OBJECTS=2"))
    wrong_rate = region(video, "r", 0, 3, "Car")
    wrong_rate["value"]["framesCount"] = 2 * video.frames
    cases.append(("frame rate mismatch", uri, [wrong_rate], 422, "bad_context",
                  'framerate="24"'))
    no_box = region(video, "z", 0, 3, "Car")
    no_box["value"]["sequence"][0]["width"] = 0
    cases.append(("empty box", uri, [no_box], 422, "bad_context", "sequence"))
    for what, data, regions, status, code, words in cases:
        r = predict(video_backend, data, regions)
        assert r.status_code == status, (what, r.text)
        err = r.json()["error"]
        assert err["code"] == code and words in err["message"], (what, err)
    body = {"tasks": [{"id": 7, "data": {"video": uri}}], "label_config": VIDEO_CONFIG,
            "params": {"context": {"result": [region(video, "a", 0, 3, "Car")]}}}
    assert video_backend.post("/predict", json=body, auth=None).status_code == 401
    big = predict(video_backend, "data:video/mp4;base64," + "QUFB" * (3 * 2**20 // 3), [
        region(video, "b", 0, 3, "Car")])
    assert big.status_code == 413, big.text


# -- keyframes and state cache (no model) ---------------------------------------------------
def test_lost_object_ends_its_lifespan_and_comes_back(video: SampleVideo) -> None:
    reg = VideoRegion.model_validate(region(video, "sq", 0, 2, "Car"))
    track = Track(boxes={0: (0, 0, 5, 5), 1: (32, 24, 96, 72), 2: None, 3: None,
                         4: (160, 120, 320, 240)})
    seq = keyframes(reg, track, 320, 240, fps=24.0)
    assert [k["frame"] for k in seq] == [2, 5]  # frame 1 precedes the prompt: left out
    assert seq[0]["enabled"] is False  # lost on frames 3-4: the box ends after frame 2
    assert seq[1] == {"frame": 5, "x": 50.0, "y": 50.0, "width": 50.0, "height": 50.0,
                      "enabled": True, "rotation": 0, "time": 5 / 24}
    mask = np.zeros((240, 320), bool)
    mask[10:20, 30:35] = True
    assert mask_box(mask) == (30, 10, 35, 20) and mask_box(np.zeros((4, 4), bool)) is None


def test_state_cache_evicts_least_recent_within_bounds() -> None:
    cache = StateCache(max_bytes=100, max_entries=2)
    a, b = cache.entry("a"), cache.entry("b")
    cache.account("a", a, 40)
    cache.account("b", b, 40)
    assert cache.stats() == {"states": 2, "evictions": 0, "bytes": 80}
    cache.entry("a")  # a used again: b is now the least recent
    c = cache.entry("c")
    cache.account("c", c, 10)  # three tasks, two allowed: b goes
    assert cache.entry("a") is a and cache.stats()["evictions"] == 1
    assert cache.entry("b") is not b  # evicted: a later call on b starts a fresh state
    big = cache.entry("big")
    cache.account("big", big, 90)  # over both bounds: the least recent (c, then a) go
    assert cache.stats() == {"states": 2, "evictions": 3, "bytes": 90}
    assert cache.entry("big") is big and cache.entry("a") is not a


def test_state_lock_serializes_work_on_one_task_only() -> None:
    cache = StateCache(max_bytes=10**9, max_entries=8)
    order: list[str] = []
    one = cache.entry("1")

    def work(key: str, hold: float) -> None:
        entry = cache.entry(key)
        with entry.lock:
            order.append(f"{key}+")
            time.sleep(hold)
            order.append(f"{key}-")

    with one.lock:  # task 1 busy: another task runs meanwhile, task 1's next call waits
        t1 = threading.Thread(target=work, args=("1", 0))
        t2 = threading.Thread(target=work, args=("2", 0))
        t1.start()
        t2.start()
        t2.join(timeout=10)
        assert order == ["2+", "2-"]
    t1.join(timeout=10)
    assert order == ["2+", "2-", "1+", "1-"]


def test_state_keeps_frame_features_within_its_budget() -> None:
    state = new_inference_state(torch.zeros((6, 3, 8, 8), dtype=torch.uint8), 8, 8,
                                torch.device("cpu"))
    per_frame = tensor_bytes({0: (torch.zeros(100), {"f": [torch.zeros(150)]})})
    state.features_budget = 3 * per_frame
    for frame in range(6):  # SAM2 assigns the latest frame's features on every encoder pass
        state["cached_features"] = {frame: (torch.zeros(100), {"f": [torch.zeros(150)]})}
    assert sorted(state["cached_features"]) == [0, 1, 2]  # kept until the budget, no further
    assert state.features_bytes == tensor_bytes(state["cached_features"]) <= 3 * per_frame
    state.features_budget = 0  # no budget: SAM2's own behaviour, the latest frame only
    dict.__setitem__(state, "cached_features", {})
    state["cached_features"] = {4: (torch.zeros(1), {})}
    assert list(state["cached_features"]) == [4]

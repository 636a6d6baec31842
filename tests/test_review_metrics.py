"""Agreement metrics on cases computed by hand: brush IoU from RLE, polygon IoU in pixels,
kappa and alpha on textbook tables, unmatched lesion tracks, the task's agreement and reason,
and the task data the queue writes (idempotent, settlement kept)."""

from __future__ import annotations

import numpy as np
import pytest
from label_studio_sdk.converter.brush import decode_rle, encode_rle

from backend.rle import mask2rle
from review import brush, categorical, polygons
from review.agreement import task_agreement
from review.queue import Policy, merged_data, review_fields, state
from tests.review_tasks import annotation, brush_region, lesion, rect, task, visit

H, W = 20, 30


def iv(mask: np.ndarray):
    return brush.rle_intervals(mask2rle(mask.astype(np.uint8) * 255), W, H)


# --------------------------------------------------------------------------- brush
def test_identical_masks_score_one():
    m = rect(H, W, 2, 12, 3, 20)
    assert brush.iou(iv(m), iv(m)) == 1.0


def test_disjoint_masks_score_zero():
    assert brush.iou(iv(rect(H, W, 0, 5, 0, 5)), iv(rect(H, W, 10, 15, 10, 15))) == 0.0


def test_partial_overlap_by_hand():
    # 10x10 squares shifted by 5 rows: intersection 50 px, union 150 px
    a, b = rect(H, W, 0, 10, 0, 10), rect(H, W, 5, 15, 0, 10)
    assert brush.iou(iv(a), iv(b)) == pytest.approx(50 / 150)


def test_both_empty_is_undefined_and_empty_vs_full_is_zero():
    empty = np.zeros((H, W), bool)
    assert brush.iou(iv(empty), iv(empty)) is None
    assert brush.iou(iv(empty), iv(rect(H, W, 0, 2, 0, 2))) == 0.0


@pytest.mark.parametrize("kind", ["literals", "short runs", "long runs"])
def test_runs_decode_byte_for_byte_like_upstream(kind):
    rng = np.random.default_rng({"literals": 1, "short runs": 2, "long runs": 3}[kind])
    if kind == "literals":
        arr = rng.integers(0, 256, 3001)
    elif kind == "short runs":
        arr = np.repeat(rng.integers(0, 3, 300) * 100, rng.integers(1, 300, 300))
    else:
        arr = np.repeat(rng.integers(0, 2, 40) * 255, rng.integers(1, 200_000, 40))
    rle = encode_rle(arr.astype(int).tolist())
    num, ends, values = brush.rle_runs(rle)
    flat = np.repeat(values, np.diff(ends, prepend=0)).astype(np.uint8)
    assert num == arr.size
    np.testing.assert_array_equal(flat, decode_rle(rle))


def test_intervals_match_upstream_alpha_channel_on_random_masks():
    rng = np.random.default_rng(7)
    for _ in range(5):
        a, b = rng.random((H, W)) < 0.4, rng.random((H, W)) < 0.6
        ref_a = decode_rle(mask2rle(a.astype(np.uint8) * 255)).reshape(H, W, 4)[:, :, 3] > 0
        ref_b = decode_rle(mask2rle(b.astype(np.uint8) * 255)).reshape(H, W, 4)[:, :, 3] > 0
        want = (ref_a & ref_b).sum() / (ref_a | ref_b).sum()
        assert brush.iou(iv(a), iv(b)) == pytest.approx(want, abs=1e-12)


def test_a_batch_decodes_each_mask_like_upstream_and_isolates_bad_ones():
    rng = np.random.default_rng(5)
    streams = [rng.integers(0, 256, 700), np.repeat([0, 255, 0], [4000, 90_000, 12]),
               np.repeat(rng.integers(0, 4, 80), rng.integers(1, 50, 80))]
    rles = [encode_rle(a.astype(int).tolist()) for a in streams]
    batch = [rles[0], rles[1][:9], rles[1], [1, 2], rles[2]]
    got = brush.runs_many(batch)
    assert isinstance(got[1], brush.RLEError) and isinstance(got[3], brush.RLEError)
    for rle, runs in zip(batch, got, strict=True):
        if isinstance(runs, brush.RLEError):
            continue
        _, ends, values = runs
        flat = np.repeat(values, np.diff(ends, prepend=0)).astype(np.uint8)
        np.testing.assert_array_equal(flat, decode_rle(rle))


def test_truncated_or_wrong_size_rle_is_refused():
    rle = mask2rle(rect(H, W, 0, 5, 0, 5).astype(np.uint8) * 255)
    with pytest.raises(brush.RLEError, match="needs"):
        brush.rle_intervals(rle, W + 1, H)
    with pytest.raises(brush.RLEError):
        brush.rle_intervals(rle[:5], W, H)


def test_brush_task_mean_min_and_reason_name_the_label():
    sq = rect(H, W, 0, 10, 0, 10)
    a = annotation([brush_region(sq, "Lesion"), brush_region(rect(H, W, 0, 4, 20, 24),
                                                             "Ruler")], user=1)
    b = annotation([brush_region(rect(H, W, 5, 15, 0, 10), "Lesion")], user=2)
    r = task_agreement(task(1, a, b), project="sam2", users={1: "ann@x", 2: "bob@x"})
    # Lesion 1/3, Ruler painted by one annotator only: 0
    assert r.metrics["brush_iou_min"] == 0.0
    assert r.metrics["brush_iou_mean"] == pytest.approx((1 / 3 + 0) / 2)
    assert "Ruler only painted by ann@x" in r.details["brush_iou_min"]
    assert r.agreement(["brush_iou_mean"]) == pytest.approx(1 / 6)


def test_single_annotator_is_not_scored():
    a = annotation([brush_region(rect(H, W, 0, 3, 0, 3), "Lesion")], user=1)
    assert task_agreement(task(2, a), project="sam2") is None


# --------------------------------------------------------------------------- polygons
def test_polygon_pixels_from_percent_times_original_size():
    tri = polygons.polygon_px([(0, 0), (50, 0), (0, 100)], 200, 100)
    assert tri.area == pytest.approx(100 * 100 / 2)
    assert tri.bounds == (0.0, 0.0, 100.0, 100.0)


def test_polygon_iou_known_areas():
    # on a 200x100 image: x 0..50 % is 100x100 px, x 25..75 % overlaps it by 50x100 px
    a = polygons.polygon_px([(0, 0), (50, 0), (50, 100), (0, 100)], 200, 100)
    b = polygons.polygon_px([(25, 0), (75, 0), (75, 100), (25, 100)], 200, 100)
    assert (a.area, b.area) == (10000, 10000)
    assert polygons.iou(a, b) == pytest.approx(5000 / 15000)


def test_self_intersecting_polygon_is_made_valid():
    bow = polygons.polygon_px([(0, 0), (10, 10), (10, 0), (0, 10)], 100, 100)
    assert bow.is_valid and bow.area == pytest.approx(50)


SQ = [(10, 10), (30, 10), (30, 30), (10, 30)]
SQ_SHIFT = [(20, 10), (40, 10), (40, 30), (20, 30)]  # half of SQ: IoU 1/3


def test_track_drawn_by_one_annotator_counts_as_disagreement():
    a = annotation(lesion(SQ, track=1, status="stable")
                   + lesion([(60, 60), (70, 60), (70, 70)], track=2, status="new"), user=1)
    b = annotation(lesion(SQ, track=1, status="stable"), user=2)
    r = task_agreement(task(3, a, b, data={"images": ["x", "y"],
                                           "visit_dates": ["2024-01-01", "2024-06-01"]}),
                       project="derm", users={1: "ann@x", 2: "bob@x"})
    assert r.metrics["polygon_iou"] == pytest.approx((1.0 + 0.0) / 2)
    assert r.details["polygon_iou"] == ("track 2 on image 1 (visit 2024-01-01) drawn only by "
                                        "ann@x")


def test_tracks_match_by_track_id_and_image_not_by_order():
    a = annotation(lesion(SQ, track=1, status="stable", image=0)
                   + lesion(SQ_SHIFT, track=7, status="stable", image=1), user=1)
    b = annotation(lesion(SQ_SHIFT, track=7, status="stable", image=1)
                   + lesion(SQ_SHIFT, track=1, status="stable", image=0), user=2)
    r = task_agreement(task(4, a, b), project="derm")
    assert r.metrics["polygon_iou"] == pytest.approx((1 / 3 + 1.0) / 2)
    assert r.details["polygon_iou"].startswith("track 1 on image 1 IoU 0.33")


def test_status_and_visit_assessment_agreement_and_reason():
    a = annotation(lesion(SQ, track=1, status="stable") + lesion(SQ_SHIFT, track=2,
                                                                 status="new")
                   + [visit(0, "no change"), visit(1, "progression")], user=1)
    b = annotation(lesion(SQ, track=1, status="enlarged") + lesion(SQ_SHIFT, track=2,
                                                                   status="new")
                   + [visit(0, "no change"), visit(1, "progression")], user=2)
    r = task_agreement(task(5, a, b), project="derm", users={1: "ann@x", 2: "bob@x"})
    # status: 2 items, agree on 1: p_o = 1/2; marginals A {stable, new}, B {enlarged, new}:
    # p_e = (1/2 * 1/2) for "new" = 1/4; kappa = (1/2 - 1/4) / (3/4) = 1/3
    assert r.metrics["status_agreement"] == pytest.approx(1 / 3)
    assert r.metrics["visit_assessment_agreement"] == 1.0
    assert r.details["status_agreement"] == ("track 1 on image 1: stable (ann@x) vs enlarged "
                                             "(bob@x)")
    reason = r.reason(0.8, ["polygon_iou", "status_agreement"])
    assert reason.startswith("status_agreement 0.33: track 1 on image 1")
    assert "visit_assessment" not in reason


# --------------------------------------------------------------------------- categorical
def test_cohens_kappa_textbook_table():
    # 50 items: yes/yes 20, yes/no 5, no/yes 10, no/no 15 -> p_o 0.7, p_e 0.5, kappa 0.4
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert categorical.agreement([a, b]) == pytest.approx(0.4)


def test_krippendorff_alpha_textbook_example_with_missing_values():
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", nominal example:
    # 4 observers, 12 units, missing values; alpha = 0.743
    n = None
    data = [[1, 2, 3, 3, 2, 1, 4, 1, 2, n, n, n],
            [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, n, 3],
            [n, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, n],
            [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, n]]
    assert categorical.agreement(data) == pytest.approx(0.743, abs=5e-4)


def test_unanimous_single_category_is_perfect_and_no_overlap_is_undefined():
    assert categorical.agreement([["new", "new"], ["new", "new"]]) == 1.0
    assert categorical.agreement([["new", None], [None, "new"]]) is None


# --------------------------------------------------------------------------- queue fields
def _low_task(gt: bool = False):
    a = annotation([brush_region(rect(H, W, 0, 10, 0, 10), "Lesion")], user=1, ann_id=11,
                   ground_truth=gt)
    b = annotation([brush_region(rect(H, W, 5, 15, 0, 10), "Lesion")], user=2, ann_id=12)
    return task(9, a, b, data={"image": "s3://b/i.png", "batch": "b1"})


def test_queue_fields_state_and_idempotent_merge():
    policy = Policy(threshold=0.8, metrics=("brush_iou_min",))
    t = _low_task()
    r = task_agreement(t, project="sam2", users={1: "ann@x", 2: "bob@x"})
    fields = review_fields(r, policy)
    assert fields["review_state"] == "queue" == state(r, policy)
    assert fields["review_agreement"] == round(1 / 3, 4)
    assert fields["review_reason"].startswith("brush_iou_min 0.33: label Lesion IoU 0.33")
    new = merged_data(t["data"], fields)
    assert new["image"] == "s3://b/i.png" and new["batch"] == "b1"
    assert merged_data(new, review_fields(r, policy, new)) is None  # a re-run writes nothing
    assert review_fields(r, Policy(threshold=0.3))["review_state"] == "agreed"


def test_settlement_leaves_the_queue_and_keeps_its_first_record():
    policy = Policy(threshold=0.8)
    r = task_agreement(_low_task(gt=True), project="sam2", users={1: "rev@x"})
    fields = review_fields(r, policy)
    assert fields["review_state"] == "settled"
    assert (fields["review_settled_by"], fields["review_settled_annotation"]) == ("rev@x", 11)
    recorded = {**fields, "review_settled_at": "2026-01-01T09:00:00Z"}
    again = review_fields(r, policy, recorded)
    assert again["review_settled_at"] == "2026-01-01T09:00:00Z"

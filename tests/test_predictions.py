"""exports.predictions without a server: YOLO lines, class files, masks, image matching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bootstrap.label_configs import derm_lesion_tracking, load_ontology, sam2_segmentation
from exports import predictions
from exports.records import ExportError

NAMES = ["nevus", "scar"]
ALLOWED = ["nevus", "scar", "melanoma"]


def test_box_with_confidence_becomes_a_polygon() -> None:
    label, points, conf = predictions.parse_yolo_line("0 0.5 0.5 0.2 0.4 0.9", "f:1", NAMES,
                                                      ALLOWED)
    assert (label, conf) == ("nevus", 0.9)
    assert points == [[40.0, 30.0], [60.0, 30.0], [60.0, 70.0], [40.0, 70.0]]


@pytest.mark.parametrize("line, n, conf", [("1 0.1 0.1 0.3 0.1 0.2 0.4", 3, None),
                                           ("1 0.1 0.1 0.3 0.1 0.2 0.4 0.55", 3, 0.55),
                                           ("1 0 0 1 0 1 1 0 1", 4, None)])
def test_segmentation_polygons(line: str, n: int, conf) -> None:
    label, points, got = predictions.parse_yolo_line(line, "f:1", NAMES, ALLOWED)
    assert label == "scar" and len(points) == n and got == conf


@pytest.mark.parametrize("line, message", [
    ("2 0.5 0.5 0.1 0.1", r"f:3: class 2 is outside the class list \(0..1: nevus, scar\)"),
    ("-1 0.5 0.5 0.1 0.1", "class -1 is outside"),
    ("0.5 0.5 0.5 0.1 0.1", "class 0.5 is outside"),
    ("0 0.5 0.5 0.1", "got 4 numbers"),
    ("0 0.5 1.5 0.1 0.1", "normalized to 0..1"),
    ("0 0.5 0.5 0.1 0.1 1.7", "confidence 1.7"),
    ("0 a b c d", "not numbers"),
])
def test_bad_yolo_lines_are_named(line: str, message: str) -> None:
    with pytest.raises(ExportError, match=message):
        predictions.parse_yolo_line(line, "f:3", NAMES, ALLOWED)


def test_class_outside_the_ontology() -> None:
    with pytest.raises(ExportError, match="class 1 'scar' is not in the project's ontology"):
        predictions.parse_yolo_line("1 0.5 0.5 0.1 0.1", "f:1", NAMES, ["nevus"])


def test_class_names_files(tmp_path: Path) -> None:
    (tmp_path / "data.yaml").write_text("names:\n  0: nevus\n  1: scar\n")
    assert predictions.load_class_names(tmp_path / "data.yaml") == NAMES
    (tmp_path / "list.yaml").write_text("names: [nevus, scar]\n")
    assert predictions.load_class_names(tmp_path / "list.yaml") == NAMES
    (tmp_path / "names.txt").write_text("nevus\n\nscar\n")
    assert predictions.load_class_names(tmp_path / "names.txt") == NAMES
    (tmp_path / "empty.yaml").write_text("nc: 2\n")
    with pytest.raises(ExportError, match="no 'names:' list"):
        predictions.load_class_names(tmp_path / "empty.yaml")


def test_masks_are_binarized_and_must_be_2d(tmp_path: Path) -> None:
    mask = np.zeros((4, 6), np.uint8)
    mask[1:3, 2:5] = 7
    Image.fromarray(mask).save(tmp_path / "a.png")
    np.save(tmp_path / "b.npy", mask.astype(bool))
    for name in ("a.png", "b.npy"):
        np.testing.assert_array_equal(predictions.load_mask(tmp_path / name),
                                      (mask > 0).astype(np.uint8) * 255)
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ExportError, match="mode RGB"):
        predictions.load_mask(tmp_path / "rgb.png")
    np.save(tmp_path / "c.npy", np.zeros((2, 4, 6)))
    with pytest.raises(ExportError, match=r"must be 2-D .* \(2, 4, 6\)"):
        predictions.load_mask(tmp_path / "c.npy")


def test_tags_of_the_shipped_configs() -> None:
    tag = predictions.find_tag(sam2_segmentation(["Lesion", "Ruler"]), "BrushLabels", 1)
    assert (tag.name, tag.to_name, tag.labels, tag.value_key) == (
        "mask", "image", ["Lesion", "Ruler"], "image")
    derm = derm_lesion_tracking(load_ontology(Path("bootstrap/ontology/lesion_types.yaml")))
    tag = predictions.find_tag(derm, "PolygonLabels", 2)
    assert (tag.name, tag.to_name, tag.value_key) == ("lesion", "images", "images")
    with pytest.raises(ExportError, match="no RectangleLabels tag"):
        predictions.find_tag(derm, "RectangleLabels", 2)


def test_image_paths_match_label_files_by_suffix() -> None:
    tag = predictions.Tag("PolygonLabels", "lesion", "images", [], "images")
    tasks = [{"id": 1, "data": {"images": ["s3://b/images/patients/P1/2026-01-01/face.jpg",
                                           "s3://b/images/patients/P1/2026-02-01/face.jpg"]}},
             {"id": 2, "data": {"images": ["/data/upload/3/arm.png"]}}]
    index = predictions._image_index(tasks, tag)
    assert index[("P1", "2026-02-01", "face")] == [(1, 1)]
    assert index[("arm",)] == [(2, 0)]
    assert len(index[("face",)]) == 2  # ambiguous alone: the folders disambiguate

"""Bootstrap fixes found in a browser: hotkeys clear of the keymap, an "All tasks" view first,
export prefixes without a trailing slash, SAM2 instructions and palette captions."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from pydantic import ValidationError

from bootstrap.label_configs import BOX_HOTKEYS, sam2_segmentation
from bootstrap.spec import ExportStorage, parse_spec

REPO = Path(__file__).resolve().parents[1]
# Label Studio 1.23.2's default keymap (web/dist/apps/labelstudio/main.js), keys without arrows
KEYMAP = {"shift+1", "shift+2", "ctrl+z", "ctrl+shift+z", "ctrl+enter", "ctrl+space", "ctrl+d",
          "ctrl+h", "ctrl+plus", "ctrl+minus", "ctrl+backspace", "alt+.", "alt+l", "alt+m",
          "alt+r", "alt+h", "backspace", "delete", "escape", "enter", "u", "[", "]",
          "m", "b", "o", "e", "w", "k", "v", "h", "p", "r"}


def test_sam2_hotkeys_clear_of_the_keymap_and_captioned() -> None:
    labels = [f"L{i}" for i in range(9)]
    view = ET.fromstring(sam2_segmentation(labels))
    children = list(view)
    keys = []
    for tag, word in (("KeyPointLabels", "Point prompts"), ("RectangleLabels", "Box prompts"),
                      ("BrushLabels", "Brush")):
        (el,) = view.iter(tag)
        caption = children[children.index(el) - 1]
        assert caption.tag == "Header" and caption.get("value").startswith(word)
        keys += [lab.get("hotkey") for lab in el if lab.get("hotkey")]
    assert len(keys) == len(set(keys)) == 18
    assert not set(keys) & KEYMAP
    assert [k for k in keys if k.isalpha()] == list(BOX_HOTKEYS)
    captions = [h.get("value") for h in view.iter("Header")]
    assert any("keys a, s, d" in c for c in captions)


def test_all_tasks_view_comes_first() -> None:
    spec = parse_spec((REPO / "bootstrap" / "projects.yaml").read_text(),
                      env={"SAM2_BACKEND_URL": "http://sam2:9090"},
                      stack_outputs={"bucketNames": {"source-segmentation": "seg-src",
                                                     "source-dermatology": "derm-src",
                                                     "annotations": "annotations"}})
    sam2 = next(p for p in spec.projects if p.key == "sam2-segmentation")
    assert [v.title for v in sam2.views][:2] == ["All tasks", "Batch 1"]
    assert sam2.views[0].filters == []
    for project in spec.projects:
        for storage in project.export_storage:
            assert not storage.prefix.endswith("/")


@pytest.mark.parametrize("prefix, want", [("exports/sam2/", "exports/sam2"),
                                          ("exports/sam2", "exports/sam2"),
                                          ("a/b/c/", "a/b/c")])
def test_export_prefix_is_normalized(prefix: str, want: str) -> None:
    assert ExportStorage(title="t", bucket="annotations", prefix=prefix).prefix == want


@pytest.mark.parametrize("prefix", ["exports//sam2", "/exports", "/"])
def test_export_prefix_with_empty_segments_is_refused(prefix: str) -> None:
    with pytest.raises(ValidationError, match="prefix"):
        ExportStorage(title="t", bucket="annotations", prefix=prefix)


def test_sam2_instructions_name_zoom_keys_and_number_the_steps() -> None:
    html = (REPO / "bootstrap" / "instructions" / "sam2.html").read_text()
    for key in ("shift+1", "shift+2", "ctrl+plus", "ctrl+minus"):
        assert key in html
    # Label Studio drops style attributes and its CSS hides list numbers: number the steps
    steps = [p.find("b").text for p in ET.fromstring(f"<root>{html}</root>").iter("p")
             if p.find("b") is not None and p.find("b").text.rstrip(".").isdigit()]
    assert steps == [f"{i}." for i in range(1, 7)]
    assert "style=" not in html
    for palette in ("Point prompts", "Box prompts", "Brush"):
        assert palette in html

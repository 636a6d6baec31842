"""Label config generation for the shipped projects.

Configs are built as XML trees (never string concatenation) so label values are escaped, and
each label list is written once and fanned out to every tag that uses it: the SAM2 project's
keypoint, rectangle and brush tags cannot drift apart.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bootstrap.errors import SpecError

#: Distinct, colour-blind-friendly-ish palette used when a label has no colour of its own.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
LESION_STATUSES = ("new", "stable", "enlarged", "regressed", "resolved")
VISIT_ASSESSMENTS = ("no change", "progression", "improvement", "needs dermatologist review")


def _xml(root: ET.Element) -> str:
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="unicode") + "\n"


#: Box-prompt label hotkeys: letters that Label Studio's default keymap leaves free (its tools
#: use b e h k m o p r u v w; shift+1 / shift+2 are zoom to fit / zoom to actual size)
BOX_HOTKEYS = "asdfgjlnq"


def _hotkeys(prefix: str, n: int, keys: str = "123456789") -> list[str]:
    if n > len(keys):
        raise SpecError("label_config.labels", n, f"at most {len(keys)} labels get hotkeys; "
                        "split the project or drop hotkeys")
    return [f"{prefix}{k}" for k in keys[:n]]


def sam2_segmentation(labels: list[str], *, object_name: str = "image") -> str:
    """SAM2 interactive precision segmentation.

    One label list feeds KeyPointLabels (smart: positive/negative prompts, Alt toggles the
    polarity), RectangleLabels (smart: box prompt) and BrushLabels (the mask SAM2 returns and
    the annotator refines), each under a caption naming its role. Hotkeys: 1..9 keypoint
    labels, BOX_HOTKEYS (a s d f ...) rectangle labels, clear of Label Studio's keymap
    (shift+1 / shift+2 zoom, letter tool keys, ctrl/alt+digit switch browser tabs); brush
    labels get none because the mask arrives already labelled from its prompt. Task metadata
    (camera_id, captured_at, batch) is shown in a header and is filterable in the Data Manager
    because it lives in task data.
    """
    if not labels:
        raise SpecError("label_config.labels", labels, "give at least one label")
    if len(set(labels)) != len(labels):
        raise SpecError("label_config.labels", labels, "remove the duplicate labels")
    view = ET.Element("View")
    ET.SubElement(view, "Header", value="Camera $camera_id, captured $captured_at, "
                  "batch $batch", size="6")
    ET.SubElement(view, "Image", name=object_name, value=f"${object_name}", zoom="true",
                  zoomControl="true", brightnessControl="true", contrastControl="true",
                  crosshair="true")
    tags = (("KeyPointLabels", "prompt_point", "123456789",
             {"smart": "true", "smartOnly": "true"},
             f"Point prompts (keys {', '.join('123456789'[:len(labels)])}): click the object; "
             "Alt+click marks an area to exclude"),
            ("RectangleLabels", "prompt_box", BOX_HOTKEYS, {"smart": "true", "smartOnly": "true"},
             f"Box prompts (keys {', '.join(BOX_HOTKEYS[:len(labels)])}): draw a box around "
             "the object"),
            ("BrushLabels", "mask", None, {},
             "Brush: the mask SAM2 returns, refine it with the brush (B) and eraser (E)"))
    for tag, name, hk_keys, extra, caption in tags:
        ET.SubElement(view, "Header", value=caption, size="6")
        el = ET.SubElement(view, tag, name=name, toName=object_name, **extra)
        keys = _hotkeys("", len(labels), hk_keys) if hk_keys is not None else [None] * len(
            labels)
        for i, (label, hotkey) in enumerate(zip(labels, keys, strict=True)):
            attrs = {"value": label, "background": PALETTE[i % len(PALETTE)]}
            if hotkey:
                attrs["hotkey"] = hotkey
            if tag != "BrushLabels":
                attrs["showInline"] = "true"
            ET.SubElement(el, "Label", **attrs)
    return _xml(view)


class LesionType(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: str = Field(min_length=1)
    color: str | None = None
    retired: bool = False


class Ontology(BaseModel):
    """An approved vocabulary file (YAML): name, version, lesion_types[]."""

    model_config = ConfigDict(extra="forbid")
    name: str
    version: int
    lesion_types: list[LesionType] = Field(min_length=1)

    @field_validator("lesion_types")
    @classmethod
    def _unique(cls, v: list[LesionType]) -> list[LesionType]:
        values = [t.value for t in v]
        dupes = sorted({x for x in values if values.count(x) > 1})
        if dupes:
            raise ValueError(f"duplicate lesion types {dupes}: each value once")
        return v


def load_ontology(path: Path) -> Ontology:
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as e:
        raise SpecError("label_config.ontology", str(path), f"cannot read it ({e.strerror})") \
            from e
    try:
        return Ontology.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(x) for x in first["loc"])
        raise SpecError(f"ontology {path}: {loc}", first.get("input"), first["msg"]) from e


def derm_lesion_tracking(ontology: Ontology) -> str:
    """Dermatology lesion tracking across one patient's visits.

    ``$images`` is the ordered list of visit images (paginated), ``$patient_id`` and
    ``$visits`` (visit dates) come with the task. Polygons carry a lesion type from the
    approved ontology; each region gets a track_id (same lesion across visits), a status and
    a note shown in the region list; each visit gets one global assessment (perItem).
    """
    active = [t for t in ontology.lesion_types if not t.retired]
    view = ET.Element("View")
    ET.SubElement(view, "Header", value="Patient $patient_id, visits $visits", size="5")
    ET.SubElement(view, "Image", name="images", valueList="$images", zoom="true",
                  zoomControl="true")
    poly = ET.SubElement(view, "PolygonLabels", name="lesion", toName="images",
                         strokeWidth="3", pointSize="small", pointStyle="circle",
                         opacity="0.3")
    for i, t in enumerate(active):
        ET.SubElement(poly, "Label", value=t.value,
                      background=t.color or PALETTE[i % len(PALETTE)])
    region = ET.SubElement(view, "View", visibleWhen="region-selected")
    ET.SubElement(region, "Header", value="Lesion track", size="6")
    ET.SubElement(region, "Number", name="track_id", toName="images", perRegion="true",
                  min="1", required="true")
    status = ET.SubElement(region, "Choices", name="status", toName="images",
                           perRegion="true", choice="single-radio", required="true")
    for s in LESION_STATUSES:
        ET.SubElement(status, "Choice", value=s)
    ET.SubElement(region, "TextArea", name="region_note", toName="images", perRegion="true",
                  displayMode="region-list", editable="true", maxSubmissions="1",
                  placeholder="Note on this lesion")
    ET.SubElement(view, "Header", value="Assessment of this visit", size="6")
    visit = ET.SubElement(view, "Choices", name="visit_assessment", toName="images",
                          perItem="true", choice="single-radio")
    for a in VISIT_ASSESSMENTS:
        ET.SubElement(visit, "Choice", value=a)
    return _xml(view)


def sam2_video(labels: list[str], *, frame_rate: float = 25.0, object_name: str = "video"
               ) -> str:
    """SAM2 video tracking: each box drawn with the smart VideoRectangle is one object; the
    backend tracks every object of the task through the next frames and answers keyframes.

    ``frame_rate`` must be the videos' frame rate: Label Studio numbers frames with it.
    Hotkeys: plain 1..9 pick a label (Label Studio binds no plain digit; its video keys use
    alt / ctrl+alt / shift+alt with arrows, its tool keys are letters).
    """
    if not labels:
        raise SpecError("label_config.labels", labels, "give at least one label")
    if len(set(labels)) != len(labels):
        raise SpecError("label_config.labels", labels, "remove the duplicate labels")
    if not 0 < frame_rate <= 240:
        raise SpecError("label_config.frame_rate", frame_rate, "give the videos' frame rate "
                        "(frames per second, above 0, at most 240)")
    view = ET.Element("View")
    tag = ET.SubElement(view, "Labels", name="object", toName=object_name)
    for i, (label, hotkey) in enumerate(zip(labels, _hotkeys("", len(labels)), strict=True)):
        ET.SubElement(tag, "Label", value=label, hotkey=hotkey,
                      background=PALETTE[i % len(PALETTE)])
    ET.SubElement(view, "Video", name=object_name, value=f"${object_name}",
                  framerate=f"{frame_rate:g}")
    ET.SubElement(view, "VideoRectangle", name="box", toName=object_name, smart="true")
    return _xml(view)


def config_labels(xml: str) -> dict[str, set[str]]:
    """{control tag name: its label/choice values}: used to find labels a change removes."""
    out: dict[str, set[str]] = {}
    for el in ET.fromstring(xml).iter():
        values = {c.get("value") for c in el if c.tag in ("Label", "Choice") and c.get("value")}
        if values and el.get("name"):
            out[el.get("name")] = values
    return out

"""Label Studio ML backend protocol: request models, label config parsing, prompts, answers.

Multiple rectangles: each rectangle is its own object and gets its own mask (one brushlabels
region per rectangle). Keypoints inside a rectangle refine that rectangle's mask; keypoints
inside no rectangle refine every rectangle of the same label. Prompts are grouped by
(image tag, label): each group is segmented separately.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from backend.errors import BadContext, UnknownLabel
from backend.model import MaskResult, Prompt
from backend.rle import mask2rle


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class PromptValue(_Loose):
    x: float = Field(ge=0, le=100)
    y: float = Field(ge=0, le=100)
    width: float | None = Field(None, gt=0, le=100)
    height: float | None = Field(None, gt=0, le=100)
    keypointlabels: list[str] | None = None
    rectanglelabels: list[str] | None = None


class ContextItem(_Loose):
    type: Literal["keypointlabels", "rectanglelabels"]
    value: PromptValue
    from_name: str | None = None
    to_name: str
    original_width: int | None = Field(None, gt=0)
    original_height: int | None = Field(None, gt=0)
    is_positive: bool = True  # Label Studio omits it on plain (non-Alt) clicks

    @model_validator(mode="after")
    def _shape(self) -> ContextItem:
        v = self.value
        if self.type == "rectanglelabels" and (v.width is None or v.height is None):
            raise ValueError("a rectanglelabels item needs value.width and value.height")
        labels = v.keypointlabels if self.type == "keypointlabels" else v.rectanglelabels
        if not labels:
            raise ValueError(f"value.{self.type} must name one label")
        return self

    @property
    def label(self) -> str:
        v = self.value
        return (v.keypointlabels if self.type == "keypointlabels" else v.rectanglelabels)[0]


class Context(_Loose):
    result: list[ContextItem] = Field(min_length=1)


class Task(_Loose):
    id: int | None = None
    data: dict[str, Any]


class PredictParams(_Loose):
    context: dict[str, Any] | None = None


class PredictRequest(_Loose):
    tasks: list[Task] = Field(min_length=1)
    label_config: str | None = None
    project: str | None = None
    params: PredictParams = Field(default_factory=PredictParams)


class SetupRequest(_Loose):
    project: str | None = None
    schema_: str | None = Field(None, alias="schema")


def parse_context(raw: dict[str, Any] | None) -> Context | None:
    """The interactive context, or None for a non-interactive (pre-annotation) call."""
    if not raw or not raw.get("result"):
        return None
    try:
        return Context.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = "params.context." + ".".join(str(p) for p in err["loc"])
        raise BadContext(
            f"{where}: {err['msg']} (got {err.get('input')!r}); send Label Studio's interactive "
            "context: keypointlabels / rectanglelabels items with value.x/y in percent",
            field=where,
        ) from exc


def parse_label_config(xml: str | None) -> ET.Element:
    """The label config's root element; a missing or malformed config is a 4xx naming it."""
    if not xml:
        raise BadContext("label_config is missing from the request", field="label_config")
    try:
        return ET.fromstring(xml)
    except ET.ParseError as exc:
        raise BadContext(f"label_config is not valid XML: {exc}", field="label_config") from exc


@dataclass
class LabelConfig:
    """What the backend needs from the project's label config."""

    image_values: dict[str, str]  # Image tag name -> task data key
    brush_tags: dict[str, list[tuple[str, set[str]]]]  # image name -> [(brush name, labels)]

    @classmethod
    def parse(cls, xml: str | None) -> LabelConfig:
        root = parse_label_config(xml)
        images: dict[str, str] = {}
        brushes: dict[str, list[tuple[str, set[str]]]] = defaultdict(list)
        for el in root.iter():
            if el.tag == "Image" and el.get("name") and el.get("value"):
                images[el.get("name")] = el.get("value").lstrip("$")
            elif el.tag == "BrushLabels" and el.get("name") and el.get("toName"):
                labels = {lab.get("value") for lab in el.iter("Label") if lab.get("value")}
                for to_name in el.get("toName").split(","):
                    brushes[to_name].append((el.get("name"), labels))
        return cls(image_values=images, brush_tags=dict(brushes))

    def brush_for(self, to_name: str, label: str) -> str:
        tags = self.brush_tags.get(to_name)
        if not tags:
            raise UnknownLabel(
                f"label config has no BrushLabels tag with toName={to_name!r}: add one so the "
                "backend can answer with masks",
                field="label_config",
            )
        for name, labels in tags:
            if label in labels:
                return name
        known = sorted(set().union(*(labels for _, labels in tags)))
        raise UnknownLabel(
            f"label {label!r} is not a BrushLabels label for {to_name!r} (known: {known}): add "
            f'<Label value="{label}"/> to the BrushLabels tag',
            field="params.context.result.value",
        )

    def data_key(self, to_name: str) -> str:
        if to_name not in self.image_values:
            raise BadContext(
                f"to_name={to_name!r} is not an Image tag of the label config "
                f"(known: {sorted(self.image_values)})",
                field="params.context.result.to_name",
            )
        return self.image_values[to_name]


@dataclass
class Group:
    """Prompts for one label on one image tag."""

    to_name: str
    label: str
    from_name: str
    prompts: list[Prompt]


def _in_box(point: np.ndarray, box: np.ndarray) -> bool:
    return bool(box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3])


def build_groups(ctx: Context, config: LabelConfig, width: int, height: int) -> list[Group]:
    """Turn percent-coordinate context items into pixel prompts, grouped by image and label."""
    by_key: dict[tuple[str, str], list[ContextItem]] = defaultdict(list)
    for item in ctx.result:
        by_key[(item.to_name, item.label)].append(item)
    groups = []
    for (to_name, label), items in by_key.items():
        from_name = config.brush_for(to_name, label)
        points, labels, boxes = [], [], []
        for it in items:
            x, y = it.value.x * width / 100.0, it.value.y * height / 100.0
            if it.type == "keypointlabels":
                points.append((x, y))
                labels.append(1 if it.is_positive else 0)
            else:
                w, h = it.value.width * width / 100.0, it.value.height * height / 100.0
                boxes.append(np.array([x, y, min(x + w, width), min(y + h, height)], np.float32))
        pts = np.array(points, dtype=np.float32).reshape(-1, 2)
        lab = np.array(labels, dtype=np.int32)
        if not boxes:
            prompts = [Prompt(points=pts, labels=lab)]
        else:
            inside = [[_in_box(p, b) for b in boxes] for p in pts]
            prompts = []
            for j, box in enumerate(boxes):
                keep = [i for i, row in enumerate(inside) if row[j] or not any(row)]
                prompts.append(Prompt(points=pts[keep], labels=lab[keep], box=box))
        groups.append(Group(to_name=to_name, label=label, from_name=from_name, prompts=prompts))
    return groups


def brush_result(group: Group, mask: MaskResult, width: int, height: int) -> dict[str, Any]:
    """One brushlabels region in Label Studio's result format."""
    return {
        "from_name": group.from_name,
        "to_name": group.to_name,
        "type": "brushlabels",
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
        "value": {
            "format": "rle",
            "rle": mask2rle(mask.mask.astype(np.uint8) * 255),
            "brushlabels": [group.label],
        },
        "score": mask.score,
        "readonly": False,
    }

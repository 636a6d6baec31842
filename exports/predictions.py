"""Model output imported as Label Studio predictions (pre-annotations), with version and score.

Two inputs, mapped to the regions of the project's label config:

* **Masks** (SAM2 project): ``DIR/<task id>/<label>.png|npy`` (``<label>__<n>.png`` for more
  than one region of a label), one binary mask per file, the size of the task's image. Each
  becomes a ``BrushLabels`` region (RLE, the exact bytes Label Studio's own encoder writes).
* **YOLO label files** (dermatology project): one ``.txt`` per image, lines ``class x y w h
  [conf]`` (detection box) or ``class x1 y1 x2 y2 ... [conf]`` (segmentation polygon), all
  normalized to 0..1. A file is matched to a task image by its path: ``P1/2024-03-01/a.txt``
  matches the image ``.../P1/2024-03-01/a.jpg`` (the shortest unambiguous path suffix is
  enough). The dermatology config outlines lesions with ``PolygonLabels`` and has no
  ``RectangleLabels``: a box becomes a 4-point polygon, which the annotator edits like any
  outline. ``conf`` is the region's score; the prediction's score is their mean.

Everything is read and checked first (:func:`plan_masks`, :func:`plan_yolo`); only then does
:func:`apply` write, so bad input (a class outside the ontology, a mask of the wrong size)
stops the import with nothing written. One prediction per task and model version: importing
the same ``model_version`` again updates that prediction in place (or leaves it when equal)
instead of adding a duplicate.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

from exports.records import ExportError

_MASK_SUFFIXES = (".png", ".npy")
_INSTANCE = re.compile(r"^(?P<label>.+?)(?:__(?P<n>\d+))?$")


@dataclass
class Target:
    """The Label Studio project predictions go to."""

    url: str
    api_key: str
    project: int
    _client: Any = field(default=None, repr=False)
    _tasks: list[dict[str, Any]] | None = field(default=None, repr=False)

    def client(self):
        if self._client is None:
            from label_studio_sdk import LabelStudio

            self._client = LabelStudio(base_url=self.url.rstrip("/"), api_key=self.api_key)
        return self._client

    def label_config(self) -> str:
        from exports.source import SourceError

        try:
            return self.client().projects.get(id=self.project).label_config or ""
        except Exception as exc:  # the SDK's ApiError or an httpx error
            status = getattr(exc, "status_code", None)
            raise SourceError(f"project {self.project} at {self.url}: cannot read its label "
                              f"config ({status or exc})",
                              service_failed=status is None or status >= 500) from None

    def tasks(self) -> list[dict[str, Any]]:
        """The project's tasks with their predictions (id, data and predictions kept)."""
        from exports.source import iter_project_tasks

        if self._tasks is None:
            self._tasks = [{"id": t["id"], "data": t.get("data") or {},
                            "predictions": t.get("predictions") or [],
                            "annotations": [{"result": a.get("result") or []}
                                            for a in t.get("annotations") or []]}
                           for t in iter_project_tasks(self.url, self.api_key, self.project)]
        return self._tasks


@dataclass
class Tag:
    """A labeling control of the config: its name, the object it labels, its labels."""

    kind: str
    name: str
    to_name: str
    labels: list[str]
    value_key: str = ""  # the task data key of the object (e.g. "image", "images")


def find_tag(config: str, kind: str, project: int) -> Tag:
    """The first ``kind`` control (e.g. BrushLabels) of a label config, with its object."""
    root = ET.fromstring(config)
    objects = {el.get("name"): (el.get("valueList") or el.get("value") or "").lstrip("$")
               for el in root.iter() if el.get("value") or el.get("valueList")}
    for el in root.iter(kind):
        labels = [c.get("value") for c in el if c.tag == "Label" and c.get("value")]
        return Tag(kind, el.get("name"), el.get("toName"), labels,
                   objects.get(el.get("toName"), ""))
    raise ExportError(f"project {project}: its label config has no {kind} tag, so these "
                      f"predictions have no region to map to: import them into the project "
                      f"whose config has one")


@dataclass
class Planned:
    """One task's prediction, checked and ready to write."""

    task_id: int
    result: list[dict[str, Any]]
    score: float | None


def _region_id(*parts: object) -> str:
    return hashlib.sha1("/".join(map(str, parts)).encode()).hexdigest()[:10]


# ----------------------------------------------------------------------------- masks


def load_mask(path: Path):
    """A mask file as an H x W uint8 array of 0/255 (any nonzero pixel is inside)."""
    import numpy as np
    from PIL import Image

    try:
        if path.suffix.lower() == ".npy":
            array = np.load(path, allow_pickle=False)
        else:
            with Image.open(path) as image:
                if image.mode not in ("1", "L", "P", "I", "I;16"):
                    raise ExportError(f"{path}: a mask PNG must be single-channel (mode 1, L, "
                                      f"P or I), got mode {image.mode}: save the mask as "
                                      "grayscale")
                array = np.asarray(image)
    except (OSError, ValueError) as exc:
        raise ExportError(f"{path}: cannot read the mask ({exc})") from None
    if array.ndim != 2:
        raise ExportError(f"{path}: a mask must be 2-D (height x width), got shape "
                          f"{array.shape}")
    return (array != 0).astype(np.uint8) * 255


def _image_size_of_task(target: Target, task: dict[str, Any], tag: Tag) -> tuple[int, int]:
    """(width, height) of a task's image: from a result that records it, else the image."""
    for holder in task["annotations"] + task["predictions"]:
        for item in holder.get("result") or []:
            if item.get("to_name") == tag.to_name and item.get("original_width"):
                return int(item["original_width"]), int(item["original_height"])
    return _fetch_image_size(target, task, tag)


def _fetch_image_size(target: Target, task: dict[str, Any], tag: Tag) -> tuple[int, int]:
    from PIL import Image

    from exports.source import SourceError

    uri = task["data"].get(tag.value_key)
    if not isinstance(uri, str) or not uri:
        raise ExportError(f"task {task['id']}: field data.{tag.value_key} holds no image URL, "
                          "so the mask size cannot be checked")
    http = target.client()._client_wrapper.httpx_client
    path = uri
    if uri.startswith("s3://") or uri.startswith("gs://") or uri.startswith("azure-blob://"):
        # Label Studio's resolver streams the object with the project's storage credentials
        import base64

        encoded = base64.urlsafe_b64encode(uri.encode()).decode()
        path = f"tasks/{task['id']}/resolve/?fileuri={encoded}"
    elif urlparse(uri).scheme:
        raise ExportError(f"task {task['id']}: field data.{tag.value_key} is an external URL; "
                          "its size is not fetched from outside Label Studio")
    response = http.request(path.lstrip("/"), method="GET")
    if response.status_code >= 400:
        raise SourceError(f"task {task['id']}: Label Studio answered HTTP "
                          f"{response.status_code} for its image", service_failed=True)
    try:
        with Image.open(io.BytesIO(response.content)) as image:
            return image.size
    except OSError:
        raise SourceError(f"task {task['id']}: its image could not be read to learn its size",
                          service_failed=True) from None


def plan_masks(target: Target, folder: Path, model_version: str,
               score: float | None) -> list[Planned]:
    """Read and check every mask of ``folder``; one planned prediction per task folder."""
    from backend.rle import mask2rle

    tag = find_tag(target.label_config(), "BrushLabels", target.project)
    tasks = {t["id"]: t for t in target.tasks()}
    plan = []
    folders = sorted(p for p in Path(folder).iterdir() if p.is_dir())
    if not folders:
        raise ExportError(f"--masks {folder}: no task folders: lay masks out as "
                          "<task id>/<label>.png or .npy")
    for task_dir in folders:
        if not task_dir.name.isdigit() or int(task_dir.name) not in tasks:
            raise ExportError(f"{task_dir}: folder name must be the id of a task of project "
                              f"{target.project}; {task_dir.name!r} is not")
        task = tasks[int(task_dir.name)]
        result = []
        size = None  # the task image's (width, height), looked up once
        for path in sorted(p for p in task_dir.iterdir() if p.suffix.lower() in _MASK_SUFFIXES):
            label = _INSTANCE.match(path.stem).group("label")
            if label not in tag.labels:
                raise ExportError(f"{path}: label {label!r} is not a label of the "
                                  f"{tag.kind} tag {tag.name!r} (labels: "
                                  f"{', '.join(tag.labels)}): name the file after one")
            mask = load_mask(path)
            size = size or _image_size_of_task(target, task, tag)
            width, height = size
            if mask.shape != (height, width):
                raise ExportError(f"task {task['id']}: mask {path.name} is {mask.shape[1]}x"
                                  f"{mask.shape[0]} but field data.{tag.value_key} (the image)"
                                  f" is {width}x{height}: masks must have the image's size")
            region = {"id": _region_id(task["id"], path.name), "from_name": tag.name,
                      "to_name": tag.to_name, "type": "brushlabels", "original_width": width,
                      "original_height": height, "image_rotation": 0,
                      "value": {"format": "rle", "rle": mask2rle(mask), "brushlabels": [label]}}
            if score is not None:
                region["score"] = score
            result.append(region)
        if result:
            plan.append(Planned(task["id"], result, score))
    return plan


# ------------------------------------------------------------------------------ YOLO


def load_class_names(path: Path) -> list[str]:
    """YOLO class names in id order: a data.yaml (``names:`` list or {id: name}) or lines."""
    text = Path(path).read_text(encoding="utf-8")
    if Path(path).suffix.lower() in (".yaml", ".yml"):
        import yaml

        names = (yaml.safe_load(text) or {}).get("names")
        if isinstance(names, dict):
            names = [names[k] for k in sorted(names, key=int)]
        if not isinstance(names, list) or not names:
            raise ExportError(f"--classes {path}: no 'names:' list in the YAML file")
        return [str(n) for n in names]
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise ExportError(f"--classes {path}: the file holds no class names")
    return names


def _image_parts(uri: str) -> tuple[str, ...]:
    """Path components of an image URI without the extension (bucket and scheme dropped)."""
    parsed = urlparse(uri)
    path = PurePosixPath(parsed.path)
    return tuple(path.with_suffix("").parts[1:] if path.is_absolute()
                 else path.with_suffix("").parts)


def _image_index(tasks: list[dict[str, Any]], tag: Tag) -> dict[tuple[str, ...], list]:
    index: dict[tuple[str, ...], list] = {}
    for task in tasks:
        images = task["data"].get(tag.value_key)
        images = images if isinstance(images, list) else [images]
        for i, uri in enumerate(images):
            if not isinstance(uri, str):
                continue
            parts = _image_parts(uri)
            for k in range(1, len(parts) + 1):
                index.setdefault(parts[-k:], []).append((task["id"], i))
    return index


def parse_yolo_line(line: str, where: str, names: list[str], allowed: list[str]):
    """(label, points in percent, score or None) of one YOLO line."""
    try:
        values = [float(v) for v in line.split()]
    except ValueError:
        raise ExportError(f"{where}: not numbers: {line.strip()!r:.80}") from None
    cls, coords = values[0], values[1:]
    if not cls.is_integer() or not 0 <= cls < len(names):
        raise ExportError(f"{where}: class {cls:g} is outside the class list (0..{len(names) - 1}"
                          f": {', '.join(names)}): fix the label file or --classes")
    label = names[int(cls)]
    if label not in allowed:
        raise ExportError(f"{where}: class {int(cls)} {label!r} is not in the project's "
                          f"ontology (labels: {', '.join(allowed)}): map it in --classes")
    conf = None
    if len(coords) in (5,) or (len(coords) >= 7 and len(coords) % 2 == 1):
        conf, coords = coords[-1], coords[:-1]
    if len(coords) == 4:
        x, y, w, h = coords
        corners = [(x - w / 2, y - h / 2), (x + w / 2, y - h / 2), (x + w / 2, y + h / 2),
                   (x - w / 2, y + h / 2)]
    elif len(coords) >= 6 and len(coords) % 2 == 0:
        corners = list(zip(coords[0::2], coords[1::2], strict=True))
    else:
        raise ExportError(f"{where}: expected 'class x y w h [conf]' or 'class x1 y1 x2 y2 x3 "
                          f"y3 ... [conf]', got {len(values)} numbers")
    if not all(-1e-6 <= v <= 1 + 1e-6 for xy in corners for v in xy):
        raise ExportError(f"{where}: coordinates must be normalized to 0..1")
    if conf is not None and not 0 <= conf <= 1:
        raise ExportError(f"{where}: confidence {conf:g} is outside 0..1")
    points = [[round(min(max(x, 0.0), 1.0) * 100, 4), round(min(max(y, 0.0), 1.0) * 100, 4)]
              for x, y in corners]
    return label, points, conf


def plan_yolo(target: Target, folder: Path, classes: Path, model_version: str
              ) -> list[Planned]:
    """Read and check every YOLO label file of ``folder``; one planned prediction per task."""
    tag = find_tag(target.label_config(), "PolygonLabels", target.project)
    names = load_class_names(classes)
    index = _image_index(target.tasks(), tag)
    by_task: dict[int, list[dict[str, Any]]] = {}
    scores: dict[int, list[float]] = {}
    files = sorted(Path(folder).rglob("*.txt"))
    if not files:
        raise ExportError(f"--yolo {folder}: no .txt label files")
    for path in files:
        parts = path.relative_to(folder).with_suffix("").parts
        matches = None
        for k in range(1, len(parts) + 1):
            matches = index.get(parts[-k:])
            if matches is not None and len(matches) == 1:
                break
        if not matches:
            raise ExportError(f"{path}: matches no image of project {target.project} (looked "
                              f"for an image path ending in {'/'.join(parts)})")
        if len(matches) > 1:
            raise ExportError(f"{path}: matches {len(matches)} images (tasks "
                              f"{sorted({m[0] for m in matches})}): lay the label files out "
                              "like the image paths (patient/visit/image.txt)")
        task_id, item_index = matches[0]
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            where = f"{path}:{number} (task {task_id}, image {item_index})"
            label, points, conf = parse_yolo_line(line, where, names, tag.labels)
            region = {"id": _region_id(task_id, "/".join(parts), number), "from_name": tag.name,
                      "to_name": tag.to_name, "type": "polygonlabels",
                      "item_index": item_index, "image_rotation": 0,
                      "value": {"points": points, "closed": True, "polygonlabels": [label]}}
            if conf is not None:
                region["score"] = conf
                scores.setdefault(task_id, []).append(conf)
            by_task.setdefault(task_id, []).append(region)
    return [Planned(task_id, result,
                    sum(scores[task_id]) / len(scores[task_id]) if task_id in scores else None)
            for task_id, result in sorted(by_task.items())]


# ----------------------------------------------------------------------------- writing


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0

    def __str__(self) -> str:
        return f"{self.created} created, {self.updated} updated, {self.unchanged} unchanged"


def _same(existing: dict[str, Any], planned: Planned) -> bool:
    def canon(result):
        return json.dumps(result, sort_keys=True)

    old_score = existing.get("score")
    return canon(existing.get("result")) == canon(planned.result) and (
        (old_score is None and planned.score is None)
        or (old_score is not None and planned.score is not None
            and abs(float(old_score) - planned.score) < 1e-9))


def apply(target: Target, plan: list[Planned], model_version: str,
          advance: Callable[[], None] | None = None) -> ImportReport:
    """Create or update one prediction per planned task (the same version never twice)."""
    from exports.source import SourceError

    client = target.client()
    tasks = {t["id"]: t for t in target.tasks()}
    report = ImportReport()
    for planned in plan:
        existing = [p for p in tasks[planned.task_id]["predictions"]
                    if p.get("model_version") == model_version]
        extra = {} if planned.score is None else {"score": planned.score}
        try:
            if not existing:
                client.predictions.create(task=planned.task_id, result=planned.result,
                                          model_version=model_version, **extra)
                report.created += 1
            elif _same(existing[0], planned):
                report.unchanged += 1
            else:
                client.predictions.update(existing[0]["id"], result=planned.result,
                                          model_version=model_version, **extra)
                report.updated += 1
        except Exception as exc:  # the SDK's ApiError or an httpx error
            status = getattr(exc, "status_code", None)
            raise SourceError(f"task {planned.task_id}: Label Studio refused the prediction "
                              f"({status or exc}); {report} before it",
                              service_failed=status is None or status >= 500) from None
        if advance:
            advance()
    return report

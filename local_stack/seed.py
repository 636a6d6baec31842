"""Sample images for both projects in a local folder, and its sync into the S3 server.

Layout of the folder (the user may add or replace images; ``up`` syncs it every time)::

    <images>/sam2-segmentation/<batch>/<image>             -> one task per image
    <images>/derm-lesion-tracking/<patient>/<YYYY-MM-DD>/<image>  -> one task per patient

The generated images are synthetic (shapes on noise, blotches on a skin tone): no real
patient data ever ships with the product.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SEG_PROJECT, DERM_PROJECT = "sam2-segmentation", "derm-lesion-tracking"
#: local bucket names, the stack outputs the bootstrap spec refers to
BUCKETS = {"source-segmentation": "labelstack-local-segmentation",
           "source-dermatology": "labelstack-local-dermatology",
           "annotations": "labelstack-local-annotations"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp"}
SEG_BATCHES, SEG_PER_BATCH = 3, 2
DERM_VISITS = {"P001": ["2023-01-10", "2023-07-02", "2024-01-15"],
               "P002": ["2023-03-05", "2023-09-12", "2024-03-20"],
               "P003": ["2023-05-22", "2023-11-30", "2024-06-04"]}


def _scene(seed: int, size: tuple[int, int]) -> bytes:
    """A synthetic camera frame: a few filled shapes on a noisy grey background."""
    import io

    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    w, h = size
    base = rng.normal(70, 18, (h, w, 1)).clip(0, 255).astype(np.uint8).repeat(3, axis=2)
    img = Image.fromarray(base)
    draw = ImageDraw.Draw(img)
    for i in range(4):
        cx, cy = int(rng.uniform(0.15, 0.85) * w), int(rng.uniform(0.15, 0.85) * h)
        r = int(rng.uniform(0.06, 0.14) * min(w, h))
        fill = tuple(int(v) for v in rng.integers(110, 250, 3))
        box = [cx - r, cy - r, cx + r, cy + int(r * rng.uniform(0.6, 1.4))]
        (draw.ellipse if i % 2 == 0 else draw.rectangle)(box, fill=fill)
    out = io.BytesIO()
    img.filter(ImageFilter.GaussianBlur(1.2)).save(out, "PNG")
    return out.getvalue()


def _skin(seed: int, growth: float, size: tuple[int, int]) -> bytes:
    """A synthetic skin patch with two dark lesions; ``growth`` scales them (later visits)."""
    import io

    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    w, h = size
    tone = np.array([224, 178, 150]) + rng.normal(0, 6, (h, w, 3))
    img = Image.fromarray(tone.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for cx, cy, r in ((0.35, 0.45, 0.09), (0.68, 0.6, 0.05)):
        rad = r * growth * min(w, h)
        p1, p2 = rng.uniform(0, 2 * np.pi, 2)  # an irregular, slightly lobed outline
        angles = np.linspace(0, 2 * np.pi, 72, endpoint=False)
        radii = rad * (1 + 0.12 * np.sin(2 * angles + p1) + 0.06 * np.sin(5 * angles + p2))
        pts = list(zip(cx * w + radii * np.cos(angles), cy * h + 0.85 * radii * np.sin(angles),
                       strict=True))
        shade = tuple(int(v) for v in rng.integers((95, 55, 40), (130, 85, 70)))
        draw.polygon(pts, fill=shade)
    out = io.BytesIO()
    img.filter(ImageFilter.GaussianBlur(2.5)).save(out, "PNG")
    return out.getvalue()


def generate_samples(images: Path, size: tuple[int, int] = (640, 480)) -> list[Path]:
    """Write sample images for a project whose folder is missing; the files written."""
    written: list[Path] = []
    seg = images / SEG_PROJECT
    if not seg.exists():
        for b in range(1, SEG_BATCHES + 1):
            for i in range(1, SEG_PER_BATCH + 1):
                path = seg / f"batch-{b:03d}" / f"cam{i}-{b:04d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(_scene(100 * b + i, size))
                written.append(path)
    derm = images / DERM_PROJECT
    if not derm.exists():
        for p, (patient, visits) in enumerate(DERM_VISITS.items()):
            for v, visit in enumerate(visits):
                path = derm / patient / visit / "site-1.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(_skin(p, 1.0 + 0.25 * v, size))
                written.append(path)
    return written


def _images_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in
                  IMAGE_SUFFIXES)


@dataclass
class SyncReport:
    uploaded: int
    seg_tasks: int
    derm_patients: int


def sam2_task_files(images: Path, bucket: str) -> dict[str, list[dict]]:
    """``tasks/<batch>--<image>.json`` -> [task] for each image under
    ``<images>/sam2-segmentation``: one file per image, so an image added later is a new key
    that the next sync imports (Label Studio never re-imports a key it has seen)."""
    files: dict[str, list[dict]] = {}
    for path in _images_under(images / SEG_PROJECT):
        rel = path.relative_to(images / SEG_PROJECT)
        batch = rel.parts[0] if len(rel.parts) > 1 else "unbatched"
        stamp = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
        files[f"tasks/{batch}--{path.stem}.json"] = [{
            "image": f"s3://{bucket}/images/{rel.as_posix()}",
            "camera_id": path.stem.split("-")[0],
            "captured_at": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "batch": batch,
        }]
    return files


def sync_images(s3, images: Path, *, on_file: Callable[[str], None] | None = None
                ) -> SyncReport:
    """Create the local buckets and upload the folder: images, SAM2 task files, derm task
    files (built by the bootstrap's own layout reader)."""
    from rich.console import Console

    from bootstrap.tasks import write_task_files

    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    for bucket in BUCKETS.values():
        if bucket not in existing:
            s3.create_bucket(Bucket=bucket)
    seg_bucket, derm_bucket = BUCKETS["source-segmentation"], BUCKETS["source-dermatology"]
    uploaded = 0
    for project, bucket, prefix in ((SEG_PROJECT, seg_bucket, "images/"),
                                    (DERM_PROJECT, derm_bucket, "images/patients/")):
        for path in _images_under(images / project):
            key = prefix + path.relative_to(images / project).as_posix()
            s3.upload_file(str(path), bucket, key)
            uploaded += 1
            if on_file:
                on_file(key)
    seg_files = sam2_task_files(images, seg_bucket)
    for key, tasks in seg_files.items():
        s3.put_object(Bucket=seg_bucket, Key=key, Body=json.dumps(tasks, indent=1).encode(),
                      ContentType="application/json")
    report = write_task_files(s3, derm_bucket, console=Console(stderr=True, quiet=True))
    return SyncReport(uploaded, sum(len(t) for t in seg_files.values()), report.patients)

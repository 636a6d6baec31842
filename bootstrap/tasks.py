"""Build the dermatology project's task files from the bucket layout
``<images_prefix><patient_id>/<visit-date>/<image>`` (default ``images/patients/``: Label
Studio's role may read only ``images/`` and ``tasks/`` of a source bucket): one JSON file
per patient under ``<tasks_prefix>``, holding one task with the ordered visit images as
``s3://`` URIs.

Label Studio imports these with a ``json_task_files`` import storage and rewrites every URI in
the ``images`` list to a URL it serves (proxy) or presigns. Files whose content is unchanged
are not rewritten, so re-runs are cheap and do not re-trigger imports.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import defaultdict
from dataclasses import dataclass

from rich.console import Console
from rich.progress import Progress

from bootstrap.errors import BootstrapError

IMAGE_EXT = re.compile(r"\.(jpe?g|png|tiff?|webp|bmp)$", re.IGNORECASE)
_PATIENT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass
class TasksReport:
    patients: int
    images: int
    written: int
    unchanged: int
    skipped: list[str]


def build_tasks(bucket: str, keys: list[str], images_prefix: str) -> tuple[dict[str, dict],
                                                                            list[str]]:
    """{patient_id: task} from object keys; also the keys that do not fit the layout."""
    visits: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    skipped = []
    for key in keys:
        rest = key[len(images_prefix):].split("/")
        if len(rest) != 3 or not IMAGE_EXT.search(rest[2]) or not _PATIENT.match(rest[0]):
            skipped.append(key)
            continue
        patient, visit, _ = rest
        try:
            dt.date.fromisoformat(visit)
        except ValueError:
            skipped.append(key)
            continue
        visits[patient][visit].append(key)
    tasks = {}
    for patient, by_visit in sorted(visits.items()):
        images, dates = [], []
        for visit in sorted(by_visit):
            for key in sorted(by_visit[visit]):
                images.append(f"s3://{bucket}/{key}")
                dates.append(visit)
        tasks[patient] = {"patient_id": patient, "images": images, "visit_dates": dates,
                          "visits": ", ".join(sorted(by_visit))}
    return tasks, skipped


def write_task_files(s3, bucket: str, *, images_prefix: str = "images/patients/",
                     tasks_prefix: str = "tasks/", console: Console | None = None
                     ) -> TasksReport:
    """List the layout, build one task file per patient, upload the changed ones."""
    from botocore.exceptions import ClientError

    console = console or Console(stderr=True)
    keys: list[str] = []
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                   Prefix=images_prefix):
            keys += [o["Key"] for o in page.get("Contents", [])]
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code")
        raise BootstrapError(f"tasks: cannot list s3://{bucket}/{images_prefix} ({code}). Fix: "
                             "check --bucket and the credentials/role used") from e
    if not keys:
        raise BootstrapError(f"tasks: no objects under s3://{bucket}/{images_prefix}. Fix: "
                             "upload images as <patient>/<YYYY-MM-DD>/<image> under that "
                             "prefix or pass --images-prefix")
    tasks, skipped = build_tasks(bucket, keys, images_prefix)
    written = unchanged = 0
    with Progress(console=console) as prog:
        bar = prog.add_task("task files", total=len(tasks))
        for patient, task in tasks.items():
            key = f"{tasks_prefix}{patient}.json"
            body = json.dumps([task], indent=1, sort_keys=True).encode()
            try:
                old = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            except ClientError:
                old = None
            if old == body:
                unchanged += 1
            else:
                s3.put_object(Bucket=bucket, Key=key, Body=body,
                              ContentType="application/json")
                written += 1
            prog.advance(bar)
    return TasksReport(len(tasks), sum(len(t["images"]) for t in tasks.values()), written,
                       unchanged, skipped)

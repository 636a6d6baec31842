"""One review run: read tasks (live project or export file), score them, write the queue back,
write the CSV and the HTML report. The CLI only parses arguments and calls these."""

from __future__ import annotations

import base64
import heapq
import io
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from review.agreement import decode_brushes, task_agreement
from review.queue import Policy, Queue, WriteReport, user_emails
from review.report import WORST, Scored, write_csv, write_html

Tick = Callable[[int], None]
BATCH = 64  # tasks whose brush masks are decoded together


class ReviewInputError(ValueError):
    """Bad input: names the field, the value and the fix."""


@dataclass
class ProjectRun:
    name: str
    policy: Policy
    project_id: int | None = None
    scored: list[Scored] = field(default_factory=list)
    tasks_read: int = 0
    written: WriteReport | None = None
    #: (-agreement, order, scored) of the worst tasks: only these keep their task for the
    #: report's thumbnails (holding every task's masks would grow memory with the project)
    _worst: list = field(default_factory=list)

    def add(self, s: Scored, task: dict) -> None:
        self.scored.append(s)
        value = s.result.agreement(list(self.policy.metrics))
        if value is None:
            return
        entry = (-value, len(self.scored), s)
        if len(self._worst) < WORST:
            heapq.heappush(self._worst, entry)
        elif entry > self._worst[0]:
            heapq.heapreplace(self._worst, entry)[2].task = None
        else:
            return
        s.task = {"id": task["id"], "data": task.get("data") or {},
                  "annotations": task.get("annotations") or []}


def spec_policies(path: Path) -> dict[str, tuple[str, Policy]]:
    """{project key: (title, policy)} from the bootstrap spec's ``review:`` sections. Only
    those sections are read, so no stack outputs or environment are needed."""
    import yaml
    from pydantic import ValidationError

    from bootstrap.spec import Review

    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ReviewInputError(f"--spec {path}: cannot read it as YAML ({e}): give the "
                               "bootstrap spec (bootstrap/projects.yaml)") from e
    out = {}
    for i, p in enumerate((raw or {}).get("projects") or []):
        if not isinstance(p, dict) or "review" not in p:
            continue
        try:
            review = Review.model_validate(p["review"] or {})
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(x) for x in err["loc"])
            raise ReviewInputError(f"spec field `projects[{i}].review.{where}` = "
                                   f"{err.get('input')!r}: {err['msg']}") from e
        out[p.get("key", f"projects[{i}]")] = (p.get("title", ""), Policy(
            threshold=review.threshold, metrics=tuple(review.metrics),
            view_title=review.view_title))
    return out


def score(tasks: Iterable[dict], run: ProjectRun, tick: Tick, users: dict[int, str],
          on_task: Callable[[dict, Any], None] | None = None) -> None:
    """Score tasks in batches (brush masks of a batch decoded together); ``on_task`` sees
    each task with its result (the write-back)."""
    it = iter(tasks)
    while batch := list(itertools.islice(it, BATCH)):
        decoded = decode_brushes(batch)
        for task in batch:
            result = task_agreement(task, project=run.name, users=users, decoded=decoded)
            if on_task is not None:
                on_task(task, result)
            if result is not None:
                run.add(Scored(result, run.policy), task)
        run.tasks_read += len(batch)
        tick(len(batch))




def review_file(path: Path, run: ProjectRun, tick: Tick) -> None:
    from exports.source import iter_export_file

    score(iter_export_file(path), run, tick, {})


def find_projects(server: Any, wanted: list[str], policies: dict[str, tuple[str, Policy]],
                  default: Policy) -> list[ProjectRun]:
    """Projects to review: spec keys (found by the bootstrap's managed marker) or numeric ids;
    none given: every spec project with a ``review:`` section that exists on the server."""
    from bootstrap.spec import marker_key

    projects = server.get_json("/api/projects/", "list projects", page_size=1000)
    projects = projects.get("results", projects) if isinstance(projects, dict) else projects
    by_key: dict[str | None, list[dict]] = {}
    for p in projects:
        by_key.setdefault(marker_key(p.get("description")), []).append(p)
    by_id = {str(p["id"]): p for p in projects}
    runs = []
    for w in wanted or [k for k in policies if k in by_key]:
        same_key = by_key.get(w, [])
        if len(same_key) > 1:
            raise ReviewInputError(
                f"--project {w!r}: {len(same_key)} projects carry this managed key (ids "
                f"{', '.join(str(x['id']) for x in same_key)}): name the one to review by its "
                "numeric id")
        p = same_key[0] if same_key else by_id.get(w)
        if p is None:
            raise ReviewInputError(f"--project {w!r}: no such project on the server (give a "
                                   f"spec key {sorted(k for k in by_key if k)} or a numeric id)")
        key = marker_key(p.get("description"))
        policy = policies.get(key, (None, default))[1] if key else default
        runs.append(ProjectRun(key or p["title"], policy, int(p["id"])))
    if not runs:
        raise ReviewInputError("--project: none given and no project of the spec was found on "
                               "the server: name one with --project KEY_OR_ID")
    return runs


def review_live(server: Any, run: ProjectRun, tick: Tick, *, write: bool,
                users: dict[int, str] | None = None,
                total: Callable[[int], None] | None = None) -> None:
    """Score a live project; with ``write``, bring its tasks' ``review_*`` data and its queue
    view up to date (``total`` learns the task count once the tasks are read)."""
    from review.source import iter_live_tasks

    users = user_emails(server) if users is None else users
    tasks = iter_live_tasks(server, run.project_id)
    if total is not None:
        total(len(tasks))
    queue = Queue(server, run.project_id, run.policy)
    score(tasks, run, tick, users, queue.write if write else None)
    if write:
        queue.ensure_view()
        run.written = queue.report


# --------------------------------------------------------------------------- images
def _image_uri(task: dict, index: int) -> str | None:
    data = task.get("data") or {}
    for key in ("image", "images"):
        v = data.get(key)
        if isinstance(v, list) and v:
            v = v[index] if index < len(v) else v[0]
        if isinstance(v, str) and v:
            return v
    return None


def live_image_loader(server: Any) -> Callable[[Scored], Any]:
    """Images through Label Studio with the API key: storage URIs via the task's resolve
    proxy, uploads by path. URLs on other hosts are not fetched (the key stays with Label
    Studio)."""
    from PIL import Image

    from review.report import _image_index

    origin = urlsplit(server.url)

    def load(s: Scored) -> Any:
        uri = _image_uri(s.task, _image_index(s))
        if not uri:
            return None
        parts = urlsplit(uri)
        if parts.scheme in ("s3", "gs", "azure-blob", "azure-spi"):
            path = f"/tasks/{s.task['id']}/resolve/"
            params = {"fileuri": base64.urlsafe_b64encode(uri.encode()).decode()}
        elif not parts.scheme and uri.startswith("/"):
            path, params = parts.path, dict(p.split("=", 1) for p in parts.query.split("&")
                                            if "=" in p)
        elif (parts.scheme, parts.netloc) == (origin.scheme, origin.netloc):
            path, params = parts.path, {}
        else:
            return None
        try:
            blob = server.get_bytes(path, **params)
            return Image.open(io.BytesIO(blob))
        except Exception:  # a missing image leaves a grey canvas
            return None

    return load


def write_outputs(out: Path, runs: list[ProjectRun], *, title: str,
                  image_of: Callable[[Scored], Any], images_note: str | None) -> None:
    scored = [s for r in runs for s in r.scored]
    write_csv(out / "agreement.csv", scored)
    write_html(out / "report.html", scored, title=title, image_of=image_of,
               images_note=images_note)

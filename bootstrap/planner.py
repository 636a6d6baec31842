"""Diff the spec against the server, show the plan, apply only the differences.

Reads only while planning (one POST exception: when a label config differs on a project that
has annotations, Label Studio's validate endpoint is asked whether the change would orphan
them). Applying never deletes anything: objects on the server that the spec does not mention
are reported as "unmanaged" and left alone.
"""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from bootstrap import label_configs
from bootstrap import spec as S
from bootstrap.client import Server
from bootstrap.errors import RefusedChange, ServerError

SAMPLING = {"sequential": "Sequential sampling", "uniform": "Uniform sampling",
            "uncertainty": "Uncertainty sampling"}
PROJECT_FIELDS = ("title", "description", "label_config", "expert_instruction",
                  "show_instruction", "sampling", "maximum_annotations",
                  "overlap_cohort_percentage", "show_skip_button")


@dataclass
class Change:
    target: str
    action: str  # create | update | sync | refuse
    fields: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    run: Callable[[], Any] | None = None
    note: str = ""


@dataclass
class ProjectPlan:
    key: str
    project_id: int | None
    changes: list[Change] = field(default_factory=list)
    unmanaged: list[str] = field(default_factory=list)
    syncs: list[tuple[str, Callable[[], int]]] = field(default_factory=list)


@dataclass
class Plan:
    projects: list[ProjectPlan]

    @property
    def changes(self) -> list[Change]:
        return [c for p in self.projects for c in p.changes]

    @property
    def refused(self) -> list[Change]:
        return [c for c in self.changes if c.action == "refuse"]

    @property
    def empty(self) -> bool:
        return not self.changes


def canonical_xml(xml: str | None) -> str:
    if not xml:
        return ""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return xml.strip()
    for el in root.iter():
        el.text = (el.text or "").strip() or None
        el.tail = None
    return ET.canonicalize(ET.tostring(root, encoding="unicode"))


def _short(v: Any, n: int = 60) -> str:
    s = str(v).replace("\n", "\\n")
    return s if len(s) <= n else s[: n - 3] + "..."


class Planner:
    def __init__(self, server: Server, spec: S.Spec, base: Path, console: Console | None = None,
                 force_sync: bool = False):
        self.srv, self.spec, self.base = server, spec, base
        self.console = console or Console(stderr=True)
        self.force_sync = force_sync

    # ------------------------------------------------------------------ reading the server
    def _all_projects(self) -> list[dict]:
        out, page = [], 1
        while True:
            data = self.srv.get_json("/api/projects/", "list projects", page=page,
                                     page_size=100, include=",".join(("id", *PROJECT_FIELDS,
                                                                     "task_number",
                                                                     "total_annotations_number")))
            out.extend(data["results"])
            if not data.get("next"):
                return out
            page += 1

    def find_projects(self) -> dict[str, dict]:
        """{managed key: project} for projects carrying our marker; duplicates are an error."""
        found: dict[str, dict] = {}
        for p in self._all_projects():
            key = S.marker_key(p.get("description"))
            if key is None:
                continue
            if key in found:
                raise ServerError(
                    f"two projects carry the managed marker {S.MARKER_PREFIX}{key} (ids "
                    f"{found[key]['id']} and {p['id']}). Fix: remove the marker line from the "
                    "description of the one that is not managed")
            found[key] = p
        return found

    # ------------------------------------------------------------------ planning
    def plan(self) -> Plan:
        existing = self.find_projects()
        return Plan([self._plan_project(p, existing.get(p.key)) for p in self.spec.projects
                     if p.enabled])

    def _plan_project(self, p: S.Project, cur: dict | None) -> ProjectPlan:
        xml = S.render_label_config(p, self.base)
        want = {
            "title": p.title, "description": S.managed_description(p), "label_config": xml,
            "expert_instruction": S.render_instructions(p, self.base),
            "show_instruction": p.show_instruction, "sampling": SAMPLING[p.sampling],
            "maximum_annotations": p.maximum_annotations,
            "overlap_cohort_percentage": p.overlap_cohort_percentage,
            "show_skip_button": p.show_skip_button,
        }
        pp = ProjectPlan(p.key, cur["id"] if cur else None)
        ref: dict[str, int | None] = {"id": pp.project_id}
        tgt = f"project {p.key}"
        if cur is None:
            self._validate_new_config(p, xml)

            def create() -> None:
                made = self.srv.send_json("POST", "/api/projects/", f"create {tgt}", want)
                ref["id"] = made["id"]
            pp.changes.append(Change(tgt, "create", {k: (None, v) for k, v in want.items()},
                                     create))
        else:
            diff = {}
            for k, v in want.items():
                old = cur.get(k)
                same = (canonical_xml(old) == canonical_xml(v) if k == "label_config"
                        else (old or "") == (v or "") if isinstance(v, str) else old == v)
                if not same:
                    diff[k] = (old, v)
            if "label_config" in diff:
                refusal = self._label_change_refusal(p, cur, xml)
                if refusal:
                    pp.changes.append(Change(tgt, "refuse", {"label_config": diff.pop(
                        "label_config")}, note=refusal))
            if diff:
                body = {k: v for k, (_, v) in diff.items()}
                url = f"/api/projects/{cur['id']}/"
                pp.changes.append(Change(tgt, "update", diff, lambda: self.srv.send_json(
                    "PATCH", url, f"update {tgt}", body)))

        def pid() -> int:
            assert ref["id"] is not None
            return ref["id"]

        self._plan_import_storages(p, pp, pid)
        self._plan_export_storages(p, pp, pid)
        self._plan_ml(p, pp, pid)
        self._plan_webhooks(p, pp, pid)
        self._plan_views(p, pp, pid)
        return pp

    def _validate_new_config(self, p: S.Project, xml: str) -> None:
        # Label Studio validates on create too; asking first gives the error before any write.
        try:
            self.srv.send_json("POST", "/api/projects/validate/",
                               f"validate label config of {p.key}", {"label_config": xml})
        except ServerError as e:
            raise ServerError(f"label config of project {p.key} rejected by Label Studio: "
                              f"{str(e).split(': ', 2)[-1]}. Fix: correct "
                              f"projects[{p.key}].label_config") from e

    def _label_change_refusal(self, p: S.Project, cur: dict, xml: str) -> str | None:
        """Why the label change must not be applied, or None when it is safe.

        Label Studio 1.23 accepts a PATCH that drops used labels, and its validate endpoint
        misses some cases (labels under `valueList`), so the labels and controls in use are
        read from the project summary and checked here first, then the server is asked."""
        summary = self.srv.get_json(f"/api/projects/{cur['id']}/summary/",
                                    f"read annotation summary of {p.key}")
        new_labels = label_configs.config_labels(xml)
        new_names = {el.get("name") for el in ET.fromstring(xml).iter() if el.get("name")}
        problems = []
        for source in ("created_labels", "created_labels_drafts"):
            for name, labels in (summary.get(source) or {}).items():
                for label, count in (labels or {}).items():
                    if count and label not in new_labels.get(name, set()):
                        kind = "draft" if source.endswith("drafts") else "annotation"
                        problems.append(f"label {label!r} of {name} is used in {count} {kind}(s)")
        for key, count in (summary.get("created_annotations") or {}).items():
            name = key.split("|", 1)[0]
            if count and name not in new_names:
                problems.append(f"control {name} has {count} result(s)")
        if problems:
            return ("the new label config would orphan existing annotations: "
                    + "; ".join(sorted(set(problems))) + ". Nothing was changed. Fix: keep "
                    "those labels/controls in the config (retire a label only once nothing "
                    "uses it) or migrate the annotations first")
        try:
            self.srv.send_json("POST", f"/api/projects/{cur['id']}/validate/",
                               f"validate label config change of {p.key}", {"label_config": xml})
        except ServerError as e:
            detail = str(e).split("answered 400: ", 1)[-1]
            return (f"the new label config would orphan existing annotations: {detail}. "
                    "Nothing was changed. Fix: keep those labels in the config (rename by "
                    "adding the new label alongside) or migrate the annotations first")
        return None

    def _plan_import_storages(self, p: S.Project, pp: ProjectPlan, pid: Callable[[], int]):
        cur = (self.srv.get_json("/api/storages/s3", "list import storages",
                                 project=pp.project_id) if pp.project_id else [])
        by_title = {s["title"]: s for s in cur}
        for st in p.import_storage:
            want = {"title": st.title, "bucket": st.bucket, "prefix": st.prefix,
                    "regex_filter": st.regex_filter,
                    "use_blob_urls": st.task_format == "object_per_task",
                    "presign": st.presign, "presign_ttl": st.presign_ttl_minutes,
                    "recursive_scan": st.recursive_scan, "region_name": st.region,
                    "aws_sse_kms_key_id": st.kms_key_id}
            tgt = f"import storage '{st.title}' of {p.key} (s3://{st.bucket}/{st.prefix})"
            have = by_title.pop(st.title, None)
            holder: dict[str, int | None] = {"id": have["id"] if have else None}

            def fail_fix(e: ServerError, st=st, tgt=tgt) -> ServerError:
                return ServerError(
                    f"{tgt}: Label Studio refused it: {str(e).split(': ', 2)[-1]}. Fix: make "
                    f"sure bucket {st.bucket!r} exists and holds objects under prefix "
                    f"{st.prefix!r} (Label Studio checks both), that its role can read it, "
                    "then re-run")

            if have is None:
                def create(want=want, holder=holder, fail_fix=fail_fix, tgt=tgt) -> None:
                    try:
                        made = self.srv.send_json("POST", "/api/storages/s3", f"create {tgt}",
                                                  {**want, "project": pid()})
                    except ServerError as e:
                        raise fail_fix(e) from e
                    holder["id"] = made["id"]
                pp.changes.append(Change(tgt, "create", {k: (None, v) for k, v in want.items()},
                                         create))
            else:
                diff = {k: (have.get(k), v) for k, v in want.items() if have.get(k) != v}
                if diff:
                    body = {k: v for k, (_, v) in diff.items()}

                    def update(body=body, sid=have["id"], fail_fix=fail_fix, tgt=tgt) -> None:
                        try:
                            self.srv.send_json("PATCH", f"/api/storages/s3/{sid}",
                                               f"update {tgt}", {**body, "project": pid()})
                        except ServerError as e:
                            raise fail_fix(e) from e
                    pp.changes.append(Change(tgt, "update", diff, update))
            if have is None or self.force_sync or any(
                    c.target == tgt for c in pp.changes):
                def sync(holder=holder, tgt=tgt) -> dict:
                    return self._sync(holder["id"], pid(), tgt)
                pp.changes.append(Change(tgt, "sync", note="import new objects, wait",
                                         run=sync))
        pp.unmanaged += [f"import storage '{t}'" for t in by_title]

    def _sync(self, sid: int | None, project_id: int, tgt: str) -> dict:
        """Start a sync, wait with a progress display, return the storage's final state."""
        assert sid is not None
        before = self.srv.get_json(f"/api/projects/{project_id}/", "read project")["task_number"]
        result: dict[str, Any] = {}

        def run() -> None:
            try:
                result["storage"] = self.srv.send_json("POST", f"/api/storages/s3/{sid}/sync",
                                                       f"sync {tgt}")
            except Exception as e:  # surfaced below
                result["error"] = e

        t = threading.Thread(target=run, daemon=True)
        t.start()
        with Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                      TextColumn("{task.completed} tasks"), TimeElapsedColumn(),
                      console=self.console, transient=False) as prog:
            task = prog.add_task(f"sync {tgt}", total=None)
            polls = 0
            while True:
                t.join(timeout=1.0)
                st = self.srv.get_json(f"/api/storages/s3/{sid}", "read storage status")
                done = not t.is_alive() and st["status"] not in ("queued", "in_progress")
                if done or polls % 5 == 0:  # counting tasks costs the server: every 5th poll
                    now = self.srv.get_json(f"/api/projects/{project_id}/",
                                            "read project")["task_number"]
                    prog.update(task, completed=now - before)
                polls += 1
                if done:
                    break
        if "error" in result:
            raise result["error"]
        if st["status"] in ("failed", "completed_with_errors"):
            tb = (st.get("traceback") or "").strip().splitlines()[-3:]
            raise ServerError(f"sync of {tgt} ended {st['status']}: {' / '.join(tb)}. Fix: "
                              "check the objects (task JSON must be a list of tasks) and "
                              "Label Studio's access to the bucket")
        st["project_task_number"] = now
        st["tasks_added"] = now - before
        return st

    def _plan_export_storages(self, p: S.Project, pp: ProjectPlan, pid: Callable[[], int]):
        cur = (self.srv.get_json("/api/storages/export/s3", "list export storages",
                                 project=pp.project_id) if pp.project_id else [])
        by_title = {s["title"]: s for s in cur}
        for st in p.export_storage:
            want = {"title": st.title, "bucket": st.bucket, "prefix": st.prefix,
                    "region_name": st.region, "aws_sse_kms_key_id": st.kms_key_id,
                    "can_delete_objects": False}
            tgt = f"export storage '{st.title}' of {p.key} (s3://{st.bucket}/{st.prefix})"
            have = by_title.pop(st.title, None)
            self._simple(pp, tgt, have, want, "/api/storages/export/s3", pid, slash="")
        pp.unmanaged += [f"export storage '{t}'" for t in by_title]

    def _simple(self, pp: ProjectPlan, tgt: str, have: dict | None, want: dict, path: str,
                pid: Callable[[], int], *, slash: str = "/", compare: dict | None = None,
                fix: str = "") -> None:
        """Create `want` at `path` when missing, PATCH the differing fields otherwise."""
        compare = want if compare is None else compare

        def guarded(method: str, url: str, body: dict) -> Any:
            try:
                return self.srv.send_json(method, url, f"{method} {tgt}",
                                          {**body, "project": pid()})
            except ServerError as e:
                raise ServerError(f"{tgt}: {str(e).split(': ', 2)[-1]}{fix}") from e

        if have is None:
            pp.changes.append(Change(tgt, "create", {k: (None, v) for k, v in compare.items()},
                                     lambda: guarded("POST", f"{path}{slash}", want)))
            return
        diff = {k: (have.get(k), v) for k, v in compare.items() if have.get(k) != v}
        if diff:
            body = {k: want[k] for k in diff}
            pp.changes.append(Change(tgt, "update", diff, lambda: guarded(
                "PATCH", f"{path}/{have['id']}{slash}", body)))

    def _plan_ml(self, p: S.Project, pp: ProjectPlan, pid: Callable[[], int]) -> None:
        cur = (self.srv.get_json("/api/ml/", "list ML backends", project=pp.project_id)
               if pp.project_id else [])
        by_url = {m["url"].rstrip("/"): m for m in cur}
        if p.ml_backend is not None:
            m = p.ml_backend
            want: dict[str, Any] = {"url": m.url, "title": m.title, "is_interactive":
                                    m.interactive,
                                    "auth_method": {"none": "NONE", "basic": "BASIC_AUTH"}[m.auth],
                                    "timeout": m.timeout_seconds}
            compare = dict(want)
            tgt = f"ML backend {m.url} of {p.key}"
            have = by_url.pop(m.url.rstrip("/"), None)
            # credentials are sent when the backend is registered; planning stops on unset or
            # empty env vars (a SpecError, exit 2) before anything is written
            creds = S.basic_auth_credentials(p) if have is None else None
            if creds is not None:
                want["basic_auth_user"], want["basic_auth_pass"] = creds
            self._simple(pp, tgt, have, want, "/api/ml", pid, compare=compare,
                         fix=". Fix: start the ML backend (it must answer /health and /setup "
                             "from Label Studio's network) or correct ml_backend.url, then "
                             "re-run")
            if have is None:
                pp.changes[-1].run = self._ml_create_tolerant(pp.changes[-1].run, m.url, pid,
                                                              tgt)
        pp.unmanaged += [f"ML backend {u}" for u in by_url]

    def _ml_create_tolerant(self, create: Callable[[], Any] | None, url: str,
                            pid: Callable[[], int], tgt: str) -> Callable[[], Any]:
        """Label Studio saves the ML backend, then adds a `<url>/webhook` training webhook in
        a post-save hook; SSRF protection refuses that webhook for private addresses (a
        ClusterIP) and the API answers 403 although the backend is registered. Accept that
        case, warn that training webhooks are off, and fail on anything else."""
        assert create is not None

        def run() -> Any:
            try:
                return create()
            except ServerError as e:
                if "reserved network address" not in str(e):
                    raise
                found = self.srv.get_json("/api/ml/", "list ML backends", project=pid())
                if not any(m["url"].rstrip("/") == url.rstrip("/") for m in found):
                    raise
                self.console.print(
                    f"[yellow]warning:[/] {tgt} registered; Label Studio's SSRF protection "
                    "refused the automatic training webhook to a private address, so "
                    "annotation events are not sent to the backend (interactive predictions "
                    "are unaffected)")
                return None
        return run

    def _plan_webhooks(self, p: S.Project, pp: ProjectPlan, pid: Callable[[], int]) -> None:
        cur = (self.srv.get_json("/api/webhooks/", "list webhooks", project=pp.project_id)
               if pp.project_id else [])
        by_url = {w["url"]: w for w in cur}
        for w in p.webhooks:
            want = {"url": w.url, "send_payload": w.send_payload,
                    "send_for_all_actions": not w.actions, "actions": sorted(w.actions),
                    "is_active": w.is_active}
            have = by_url.pop(w.url, None)
            if have is not None:
                have = {**have, "actions": sorted(have.get("actions") or [])}
            self._simple(pp, f"webhook {w.url} of {p.key}", have, want, "/api/webhooks", pid)
        pp.unmanaged += [f"webhook {u}" for u in by_url]

    def _plan_views(self, p: S.Project, pp: ProjectPlan, pid: Callable[[], int]) -> None:
        cur = (self.srv.get_json("/api/dm/views/", "list views", project=pp.project_id)
               if pp.project_id else [])
        by_title = {(v.get("data") or {}).get("title"): v for v in cur}
        # tabs show in `order`: the spec's order (an unfiltered "All tasks" view first)
        for order, v in enumerate(p.views):
            filters = {"conjunction": v.conjunction, "items": [
                {"filter": f"filter:tasks:data.{f.field}", "operator": f.operator,
                 "type": f.type, "value": f.value} for f in v.filters]}
            have = by_title.pop(v.title, None)
            tgt = f"view '{v.title}' of {p.key}"
            if have is None:
                pp.changes.append(Change(tgt, "create", {"filters": (None, filters)},
                                         lambda v=v, filters=filters, order=order:
                                         self.srv.send_json(
                                             "POST", "/api/dm/views/", f"create view {v.title}",
                                             {"project": pid(), "order": order, "data": {
                                                 "title": v.title, "filters": filters}})))
            elif ((have.get("data") or {}).get("filters") != filters
                  or have.get("order", order) != order):
                data = {**have["data"], "filters": filters}
                pp.changes.append(Change(
                    tgt, "update", {"filters": (have["data"].get("filters"), filters),
                                    "order": (have.get("order"), order)},
                    lambda have=have, data=data, order=order: self.srv.send_json(
                        "PATCH", f"/api/dm/views/{have['id']}/", "update view",
                        {"project": pid(), "order": order, "data": data})))
        pp.unmanaged += [f"view '{t}'" for t in by_title]

    # ------------------------------------------------------------------ applying
    def apply(self, plan: Plan) -> list[dict]:
        """Run the plan's changes in order; returns sync reports. Refuses everything if any
        change is refused (nothing is half-applied)."""
        if plan.refused:
            raise RefusedChange("; ".join(f"{c.target}: {c.note}" for c in plan.refused))
        reports = []
        for c in plan.changes:
            if c.run is None:
                continue
            out = c.run()
            if c.action == "sync" and isinstance(out, dict):
                reports.append({"target": c.target, "status": out["status"],
                                "last_sync_count": out.get("last_sync_count"),
                                "tasks_added": out["tasks_added"],
                                "project_tasks": out["project_task_number"]})
        return reports


def render_plan(plan: Plan, console: Console) -> None:
    table = Table(title="Bootstrap plan", show_lines=False)
    for col in ("project", "action", "target", "details"):
        table.add_column(col)
    for pp in plan.projects:
        if not pp.changes:
            table.add_row(pp.key, "[green]ok", "", "no changes")
        for c in pp.changes:
            color = {"create": "green", "update": "yellow", "sync": "cyan",
                     "refuse": "red"}[c.action]
            det = ", ".join(f"{k}: {_short(o, 25)} -> {_short(n, 35)}" if c.action == "update"
                            else k for k, (o, n) in c.fields.items())
            if c.note:
                det = (det + "; " if det else "") + c.note
            table.add_row(pp.key, f"[{color}]{c.action}", c.target, det)
        for u in pp.unmanaged:
            table.add_row(pp.key, "[dim]keep", u, "not in spec: left alone (never deleted)")
    console.print(table)
    n = len([c for c in plan.changes if c.action != "refuse"])
    console.print("No changes." if plan.empty else f"{n} change(s), {len(plan.refused)} "
                  "refused.")

"""The reviewer queue in open-source Label Studio: agreement written into task data, a Data
Manager view over it.

Label Studio 1.23 lets a task's ``data`` change while it has annotations (``PATCH
/api/tasks/{id}`` with the whole ``data``), and the Data Manager turns data keys into columns
that filter numerically and sort (``filter:tasks:data.X``; numeric sort when the view's
``columnsDisplayType`` says Number). Annotations, predictions and ``meta`` are never written.

Keys written (all prefixed ``review_``): ``review_agreement`` (the task's agreement: the
lowest gating metric), ``review_<metric>`` per metric, ``review_state`` (``queue`` under the
threshold, ``agreed``, ``settled`` once a reviewer marked an annotation as ground truth,
``error`` when an annotation could not be read), ``review_reason``, ``review_annotators``,
``review_threshold`` and, once settled, ``review_settled_by`` / ``review_settled_at`` /
``review_settled_annotation``. The "Review queue" view shows ``review_state = queue``, worst
agreement first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from review.agreement import TaskAgreement

PREFIX = "review_"
STATE_KEY, AGREEMENT_KEY = "review_state", "review_agreement"


@dataclass(frozen=True)
class Policy:
    """Per project: which metrics gate the queue (empty: all it has), the threshold, the view."""

    threshold: float = 0.8
    metrics: tuple[str, ...] = ()
    view_title: str = "Review queue"


def state(ta: TaskAgreement, policy: Policy) -> str:
    if ta.error:
        return "error"
    if ta.settled is not None:
        return "settled"
    value = ta.agreement(list(policy.metrics))
    return "queue" if value is not None and value < policy.threshold else "agreed"


def review_fields(ta: TaskAgreement, policy: Policy, current: dict | None = None) -> dict:
    """The ``review_*`` task data keys for one task (``current``: its data now; a settlement
    already recorded keeps its who and when)."""
    current = current or {}
    gating = list(policy.metrics)
    out: dict[str, Any] = {STATE_KEY: state(ta, policy),
                           "review_annotators": ", ".join(ta.annotators),
                           "review_threshold": policy.threshold}
    value = ta.agreement(gating)
    if value is not None:
        out[AGREEMENT_KEY] = round(value, 4)
    for name, v in sorted(ta.metrics.items()):
        out[f"{PREFIX}{name}"] = round(v, 4)
    if ta.error:
        out["review_reason"] = f"could not score: {ta.error}"
    elif value is not None and value < policy.threshold:
        out["review_reason"] = ta.reason(policy.threshold, gating)
    if ta.settled is not None:
        if current.get("review_settled_annotation") == ta.settled.annotation_id:
            by, at = current.get("review_settled_by"), current.get("review_settled_at")
        else:
            by, at = ta.settled.by, ta.settled.at
        out.update(review_settled_annotation=ta.settled.annotation_id,
                   review_settled_by=by, review_settled_at=at)
    return out


def merged_data(data: dict, fields: dict) -> dict | None:
    """The task's new data (its own keys kept, ``review_*`` replaced), or None if unchanged."""
    own = {k: v for k, v in data.items() if not k.startswith(PREFIX)}
    have = {k: v for k, v in data.items() if k.startswith(PREFIX)}
    return None if have == fields else {**own, **fields}


def view_definition(title: str) -> dict:
    """The Data Manager view data of the queue: state ``queue``, lowest agreement first."""
    return {
        "title": title,
        "filters": {"conjunction": "and", "items": [
            {"filter": f"filter:tasks:data.{STATE_KEY}", "operator": "equal",
             "type": "String", "value": "queue"}]},
        "ordering": [f"tasks:data.{AGREEMENT_KEY}"],
        "columnsDisplayType": {f"tasks:data.{AGREEMENT_KEY}": "Number"},
    }


@dataclass
class WriteReport:
    updated: list[int] = field(default_factory=list)
    unchanged: int = 0
    cleared: list[int] = field(default_factory=list)
    view: str = "unchanged"  # created, updated, unchanged
    view_id: int | None = None


class Queue:
    """Writes agreement into one project's task data and keeps its queue view (idempotent)."""

    def __init__(self, server: Any, project_id: int, policy: Policy):
        self.srv, self.project_id, self.policy = server, project_id, policy
        self.report = WriteReport()

    def write(self, task: dict, ta: TaskAgreement | None) -> None:
        """Bring one task's ``review_*`` keys up to date; a task no longer scored (fewer than
        two annotations) loses them. Only ``data`` is sent."""
        data = task.get("data") or {}
        fields = review_fields(ta, self.policy, data) if ta is not None else {}
        new = merged_data(data, fields)
        if new is None:
            self.report.unchanged += 1
            return
        self.srv.send_json("PATCH", f"/api/tasks/{task['id']}/",
                           f"write agreement of task {task['id']}", {"data": new})
        (self.report.updated if fields else self.report.cleared).append(int(task["id"]))

    def ensure_view(self) -> WriteReport:
        want = view_definition(self.policy.view_title)
        views = self.srv.get_json("/api/dm/views/", "list views", project=self.project_id)
        have = next((v for v in views
                     if (v.get("data") or {}).get("title") == self.policy.view_title), None)
        if have is None:
            made = self.srv.send_json("POST", "/api/dm/views/", "create the review view",
                                      {"project": self.project_id, "data": want})
            self.report.view, self.report.view_id = "created", made["id"]
        else:
            self.report.view_id = have["id"]
            if any(have["data"].get(k) != v for k, v in want.items()):
                self.srv.send_json("PATCH", f"/api/dm/views/{have['id']}/",
                                   "update the review view",
                                   {"project": self.project_id, "data": {**have["data"], **want}})
                self.report.view = "updated"
        return self.report


def user_emails(server: Any) -> dict[int, str]:
    """{user id: email} of the organization (who annotated, who settled)."""
    users = server.get_json("/api/users/", "list users")
    if isinstance(users, dict):
        users = users.get("results", [])
    return {int(u["id"]): u.get("email") or u.get("username") or f"user {u['id']}"
            for u in users}

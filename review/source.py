"""Where a live project's tasks come from.

Export files are read with :func:`exports.source.iter_export_file` (streamed). A live project
is read here from its JSON export endpoint rather than with
:func:`exports.source.iter_project_tasks`: the write-back sends each task's ``data`` back whole,
so it needs the data as stored (storage URIs unresolved), which the export gives and the tasks
API (``/api/tasks/``, URIs resolved to Label Studio's proxy by default) does not.
"""

from __future__ import annotations

from typing import Any


def iter_live_tasks(server: Any, project_id: int) -> list[dict]:
    """Every task of a project with its annotations (``ground_truth``, ``updated_by``,
    ``updated_at`` included) and its data as stored."""
    return server.get_json(f"/api/projects/{project_id}/export", "read the project's tasks",
                           exportType="JSON", download_all_tasks="true")

"""Where tasks come from: a Label Studio JSON export file (streamed), or a live project."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any


class SourceError(ValueError):
    """An export file that cannot be read as Label Studio tasks."""


def iter_file_tasks(path: Path) -> Iterator[dict]:
    """Tasks of a Label Studio JSON export (a list of tasks), one at a time."""
    import ijson

    try:
        with path.open("rb") as fh:
            for i, task in enumerate(ijson.items(fh, "item", use_float=True)):
                if not isinstance(task, dict) or "id" not in task:
                    raise SourceError(f"{path}: item {i} is not a Label Studio task (no `id`): "
                                      "give a JSON export (Export > JSON)")
                yield task
    except OSError as e:
        raise SourceError(f"{path}: cannot read it ({e.strerror})") from e
    except ijson.JSONError as e:
        raise SourceError(f"{path}: not a JSON list of tasks ({e}): give a Label Studio JSON "
                          "export") from e


def iter_live_tasks(server: Any, project_id: int) -> list[dict]:
    """Every task of a project with its annotations and its data as stored (URIs unresolved:
    this is what the write-back sends back), from the JSON export endpoint."""
    return server.get_json(f"/api/projects/{project_id}/export", "read the project's tasks",
                           exportType="JSON", download_all_tasks="true")

"""Keep ``Pulumi.yaml`` and the README's config table in step with :mod:`infra.config`.

``python -m infra.config_docs`` rewrites both from the model; ``--check`` fails (exit 1)
when either has drifted, and the test suite runs the check.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from infra.config import config_keys

ROOT = Path(__file__).resolve().parent.parent
PULUMI_YAML = ROOT / "Pulumi.yaml"
README = ROOT / "README.md"
BEGIN, END = "<!-- config-table:begin -->", "<!-- config-table:end -->"


def _pulumi_type(annotation: Any) -> dict[str, Any]:
    if annotation is int:
        return {"type": "integer"}
    if annotation is bool:
        return {"type": "boolean"}
    if get_origin(annotation) is tuple:
        return {"type": "array", "items": {"type": "string"}}
    return {"type": "string"}


def declared_config() -> dict[str, dict[str, Any]]:
    """The ``config:`` block Pulumi.yaml must hold."""
    out: dict[str, dict[str, Any]] = {}
    for key, field in config_keys().items():
        default = field.default
        out[key] = {**_pulumi_type(field.annotation),
                    "default": list(default) if isinstance(default, tuple) else default,
                    "description": field.description}
    return out


def config_table() -> str:
    """Markdown table of every key for the README."""
    rows = ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for key, spec in declared_config().items():
        annotation = config_keys()[key].annotation
        typ = ("one of " + ", ".join(get_args(annotation))
               if get_origin(annotation) is Literal else spec["type"])
        default = spec["default"]
        shown = f"`{default}`" if default not in ("", []) else "(empty)"
        rows.append(f"| `labelstack:{key}` | {typ} | {shown} | {spec['description']} |")
    return "\n".join(rows)


def _render_pulumi_yaml(current: dict[str, Any]) -> dict[str, Any]:
    return {**current, "config": declared_config()}


def _render_readme(text: str) -> str:
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{config_table()}\n{END}{tail}"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    project = yaml.safe_load(PULUMI_YAML.read_text())
    readme = README.read_text()
    drift = []
    if project.get("config") != declared_config():
        drift.append("Pulumi.yaml config block")
        if not check:
            PULUMI_YAML.write_text(yaml.safe_dump(_render_pulumi_yaml(project), sort_keys=False,
                                                  width=100))
    if BEGIN not in readme or _render_readme(readme) != readme:
        drift.append("README.md config table")
        if not check:
            README.write_text(_render_readme(readme))
    if check and drift:
        print(f"out of date: {', '.join(drift)}; run `python -m infra.config_docs`",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

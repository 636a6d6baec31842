"""``labelstack review``: agreement per task and the reviewer queue (work in progress)."""

from __future__ import annotations

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)

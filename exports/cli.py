"""``labelstack export ...`` and ``labelstack predictions import`` (work in progress)."""

from __future__ import annotations

import typer

export_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Export masks and lesion tables.")
predictions_app = typer.Typer(add_completion=False, no_args_is_help=True,
                              help="Import model predictions as pre-annotations.")

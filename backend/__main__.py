"""``python -m backend --host 127.0.0.1 --port 9090``: run the SAM2 backend with uvicorn."""

from __future__ import annotations

import logging

import typer
import uvicorn

cli = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="labelstack SAM2 ML backend for Label Studio",
                  epilog="Exit codes: 0 stopped cleanly; 2 bad settings (the SAM2_* variable "
                  "is named).")


@cli.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Bind address (0.0.0.0 inside the pod)."),
    port: int = typer.Option(9090, help="TCP port."),
    log_level: str = typer.Option("info", help="Log level."),
) -> None:
    """Serve /health, /setup, /predict and /webhook. Settings come from SAM2_* env vars.

    Exit codes: 0 stopped cleanly; 2 a bad setting (named) or caller auth not configured."""
    from pydantic import ValidationError

    from backend.app import create_app
    from backend.auth import AuthConfigError
    from backend.settings import Settings

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    try:
        settings = Settings()
    except ValidationError as exc:
        for err in exc.errors():
            name = "SAM2_" + "_".join(str(p) for p in err["loc"]).upper()
            typer.echo(f"error: {name}: {err['msg']} (got {err.get('input')!r})", err=True)
        raise typer.Exit(2) from exc
    try:
        app = create_app(settings)
    except AuthConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    # one worker process: the model and its embedding cache live in this process
    uvicorn.run(app, host=host, port=port, log_level=log_level, workers=1)


#: ``labelstack backend serve``: the same command under a group (``python -m backend`` keeps
#: the single-command form the container image runs).
group = typer.Typer(add_completion=False, no_args_is_help=True, help=cli.info.help,
                    epilog=cli.info.epilog)
group.command("serve", epilog=cli.info.epilog)(serve)


@group.callback()
def _group() -> None:
    """labelstack SAM2 ML backend for Label Studio."""


if __name__ == "__main__":
    cli()

"""The whole labeling stack on this machine: up, down, status, logs, screenshots.

PostgreSQL, an S3-compatible server (moto), Label Studio with the cluster's hardening
settings and the SAM2 backend on CPU, all on 127.0.0.1; state, data and logs in .local/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

EXIT_CODES = ("Exit codes: 0 ok; 1 (status) a service is not running or not answering; 2 bad "
              "input (busy port, missing binary or checkpoint, stale PID file); 3 a service "
              "failed to start.")

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__, epilog=EXIT_CODES)
out = Console()
err = Console(stderr=True)

StateOpt = Annotated[Path, typer.Option(
    "--state-dir", envvar="LABELSTACK_STATE_DIR",
    help="where PID records, logs, credentials, data and images live")]


def _fail(exc) -> typer.Exit:
    err.print(f"[bold red]error:[/] {exc}", highlight=False)
    if exc.service:
        where = f"; its log: {exc.log}" if exc.log else ""
        err.print(f"[red]failed service:[/] {exc.service}{where}", highlight=False)
    return typer.Exit(exc.exit_code)


@app.command(epilog=EXIT_CODES)
def up(
    state_dir: StateOpt = Path(".local"),
    ls_port: Annotated[int, typer.Option(envvar="LABELSTACK_LS_PORT",
                                         help="Label Studio port")] = 8080,
    backend_port: Annotated[int, typer.Option(envvar="LABELSTACK_BACKEND_PORT",
                                              help="SAM2 backend port")] = 9090,
    s3_port: Annotated[int, typer.Option(envvar="LABELSTACK_S3_PORT",
                                         help="S3 server (moto) port")] = 9000,
    pg_port: Annotated[int, typer.Option(envvar="LABELSTACK_PG_PORT",
                                         help="PostgreSQL port")] = 5433,
    images: Annotated[Path | None, typer.Option(
        envvar="LABELSTACK_IMAGES",
        help="source images folder (default <state-dir>/images; samples made when empty)")
    ] = None,
    checkpoint: Annotated[str | None, typer.Option(
        envvar="SAM2_CHECKPOINT", help="local SAM2.1 tiny checkpoint (.pt)")] = None,
    checkpoint_sha256: Annotated[str | None, typer.Option(
        envvar="SAM2_CHECKPOINT_SHA256", help="its sha256 (computed when not given)")] = None,
    random_weights: Annotated[bool, typer.Option(
        "--random-weights", help="no checkpoint: random SAM2 weights, MEANINGLESS masks")
    ] = False,
    pg_bindir: Annotated[Path | None, typer.Option(
        envvar="LABELSTACK_PG_BINDIR", help="PostgreSQL bin dir (default: newest installed)")
    ] = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for each service")] = 300,
) -> None:
    """Start the stack (what is not running yet), sync images, bootstrap both projects."""
    from local_stack import sam2
    from local_stack.procs import StackError
    from local_stack.stack import StackOptions
    from local_stack.stack import up as do_up

    opts = StackOptions(
        state_dir=state_dir, images_dir=images, checkpoint=checkpoint,
        checkpoint_sha256=checkpoint_sha256, random_weights=random_weights,
        pg_bindir=pg_bindir, timeout=timeout,
        ports={"postgres": pg_port, "s3": s3_port, "label-studio": ls_port,
               "sam2-backend": backend_port})
    if random_weights and not checkpoint:
        err.print(f"[bold black on yellow] WARNING [/] {sam2.RANDOM_WEIGHTS_BANNER}")
    try:
        result = do_up(opts, out)
    except StackError as exc:
        raise _fail(exc) from None
    _summary(result, state_dir)


def _summary(result, state_dir: Path) -> None:
    from rich.panel import Panel
    from rich.table import Table

    from local_stack import sam2

    t = Table(title=f"Projects on {result.url}")
    for c in ("id", "title", "tasks", "annotations", "ML backend", "open"):
        t.add_column(c)
    for p in result.projects:
        ml = ", ".join("connected" if m["state"] == "CO" else f"{m['state']} ({m['url']})"
                       for m in p["ml_backends"]) or "-"
        t.add_row(str(p["id"]), p["title"], str(p["tasks"]), str(p["annotations"]), ml,
                  f"/projects/{p['id']}/data")
    out.print(t)
    seg = next((p for p in result.projects if p["ml_backends"]), None)
    first = (f"open {result.url}/projects/{seg['id']}/data, pick a task, choose a smart "
             "keypoint label (Lesion) and click on a shape: SAM2 answers with a mask"
             if seg else "open the projects list")
    out.print(Panel.fit(
        f"Label Studio: [bold]{result.url}[/]\nlogin: {result.username}\npassword: "
        f"{result.password}  (kept in {state_dir / 'credentials.json'}, mode 0600)\n"
        f"try first: {first}\nstop: `make down`; state, logs and data: {state_dir}/",
        title="labelstack local is up"))
    if result.random_weights:
        out.print(f"[bold black on yellow] WARNING [/] {sam2.RANDOM_WEIGHTS_BANNER}")


@app.command(epilog=EXIT_CODES)
def down(state_dir: StateOpt = Path(".local")) -> None:
    """Stop exactly what `up` started (its PID records); data and images stay."""
    from local_stack.procs import StackError
    from local_stack.stack import down as do_down

    try:
        do_down(state_dir, out)
    except StackError as exc:
        raise _fail(exc) from None


@app.command(epilog=EXIT_CODES)
def status(state_dir: StateOpt = Path(".local")) -> None:
    """Each service: running, stale (PID file without its process) or stopped, and whether
    it answers on its port. Exit 1 unless every service runs and answers."""
    from local_stack.procs import StackError
    from local_stack.stack import status as do_status
    from local_stack.stack import status_table

    try:
        rows = do_status(state_dir)
    except StackError as exc:
        raise _fail(exc) from None
    out.print(status_table(rows))
    if not all(r.healthy for r in rows):
        raise typer.Exit(1)


@app.command(epilog=EXIT_CODES)
def logs(
    service: Annotated[str | None, typer.Argument(
        help="postgres, s3, label-studio, sam2-backend or bootstrap (default: all)")] = None,
    lines: Annotated[int, typer.Option("-n", "--lines", help="lines per log")] = 40,
    state_dir: StateOpt = Path(".local"),
) -> None:
    """The last lines of each service's log."""
    from local_stack.procs import tail
    from local_stack.stack import SERVICES, log_paths

    if service and service not in (*SERVICES, "bootstrap"):
        err.print(f"[bold red]error:[/] SERVICE={service!r} is unknown: use one of "
                  f"{', '.join((*SERVICES, 'bootstrap'))}")
        raise typer.Exit(2)
    for path in log_paths(state_dir, service):
        out.rule(str(path))
        out.print(tail(path, lines) if path.exists() else "(no log yet)", highlight=False,
                  markup=False)


@app.command(epilog=EXIT_CODES)
def screenshots(
    state_dir: StateOpt = Path(".local"),
    output: Annotated[Path, typer.Option(help="folder for the PNGs")] = Path("docs/images"),
) -> None:
    """Screenshots of each project's labeling page (headless Chromium; stack must be up)."""
    from local_stack.procs import StackError
    from local_stack.screenshots import take_screenshots

    try:
        for path in take_screenshots(state_dir, output, console=err):
            out.print(f"[green]✓[/] {path}")
    except StackError as exc:
        raise _fail(exc) from None

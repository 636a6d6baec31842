"""`python -m bootstrap {plan,apply,status,tasks}`.

Exit codes: 0 ok, 2 bad input (spec, token, arguments), 3 Label Studio or a service it calls
refused / is unreachable, 4 a change was refused (it would orphan annotations).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bootstrap import spec as S
from bootstrap.client import Server, read_token, token_kind, wait_for_server
from bootstrap.errors import BootstrapError
from bootstrap.planner import Planner, render_plan

DEFAULT_SPEC = Path(__file__).parent / "projects.yaml"
app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Declarative, idempotent bootstrap of the Label Studio projects.",
                  epilog="Exit codes: 0 ok; 2 bad input (spec, token, arguments); 3 Label "
                  "Studio or a service it calls failed; 4 a change was refused (it would "
                  "orphan annotations).")
out = Console()
err = Console(stderr=True)

SpecOpt = Annotated[Path, typer.Option("--spec", help="projects spec (YAML)")]
UrlOpt = Annotated[str | None, typer.Option("--url", envvar="LABEL_STUDIO_URL",
                                            help="Label Studio base URL")]
TokenFileOpt = Annotated[Path | None, typer.Option(
    "--token-file", help="file holding the API key (else $LABEL_STUDIO_API_KEY_FILE or "
    "$LABEL_STUDIO_API_KEY)")]
StackOpt = Annotated[Path | None, typer.Option(
    "--stack-outputs", envvar="LABELSTACK_STACK_OUTPUTS",
    help="JSON of `pulumi stack output --json` for ${stack:...} references")]
WaitOpt = Annotated[float, typer.Option(
    "--wait", help="seconds to wait for Label Studio's /health before starting (0: no wait)")]


def _fail(e: BootstrapError) -> typer.Exit:
    # escaped: messages hold field paths such as projects[sam2-segmentation] (not markup)
    err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, markup=True)
    return typer.Exit(e.exit_code)


def _connect(url: str | None, token_file: Path | None, wait: float) -> Server:
    if not url:
        raise BootstrapError("no Label Studio URL: pass --url or set LABEL_STUDIO_URL")
    token = read_token(token_file)
    if wait > 0:
        wait_for_server(url, timeout=wait, on_wait=lambda last: err.print(
            f"waiting for Label Studio at {url} ({last})"))
    srv = Server(url, token)
    who = srv.whoami()
    err.print(f"connected to {srv.url} as {who} with a {token_kind(token)}")
    return srv


def _load(spec: Path, stack: Path | None) -> S.Spec:
    return S.load_spec(spec, stack_outputs_file=stack)


@app.command()
def plan(spec: SpecOpt = DEFAULT_SPEC, url: UrlOpt = None, token_file: TokenFileOpt = None,
         stack_outputs: StackOpt = None, wait: WaitOpt = 0) -> None:
    """Show what `apply` would change. Reads only."""
    try:
        sp = _load(spec, stack_outputs)
        srv = _connect(url, token_file, wait)
        p = Planner(srv, sp, spec.parent, console=err).plan()
        render_plan(p, out)
    except BootstrapError as e:
        raise _fail(e) from None
    if p.refused:
        raise typer.Exit(4)


@app.command()
def apply(spec: SpecOpt = DEFAULT_SPEC, url: UrlOpt = None, token_file: TokenFileOpt = None,
          stack_outputs: StackOpt = None, wait: WaitOpt = 0,
          sync: Annotated[bool, typer.Option(
              "--sync", help="sync every import storage, not only new or changed ones")] = False
          ) -> None:
    """Create or update what differs from the spec; never deletes."""
    try:
        sp = _load(spec, stack_outputs)
        srv = _connect(url, token_file, wait)
        planner = Planner(srv, sp, spec.parent, console=err, force_sync=sync)
        p = planner.plan()
        render_plan(p, out)
        reads_before = len(srv.log.requests)
        reports = planner.apply(p)
    except BootstrapError as e:
        raise _fail(e) from None
    if reports:
        t = Table(title="Storage syncs")
        for c in ("storage", "status", "tasks added", "project tasks"):
            t.add_column(c)
        for r in reports:
            t.add_row(r["target"], r["status"], str(r["tasks_added"]), str(r["project_tasks"]))
        out.print(t)
    writes = len(srv.log.writes)
    out.print(f"applied: {len([c for c in p.changes if c.run])} change(s), "
              f"{writes} write request(s), {len(srv.log.requests) - reads_before} request(s) "
              "while applying")


@app.command()
def status(spec: SpecOpt = DEFAULT_SPEC, url: UrlOpt = None, token_file: TokenFileOpt = None,
           stack_outputs: StackOpt = None) -> None:
    """Managed projects on the server: tasks, annotations, storages, ML backend."""
    try:
        sp = _load(spec, stack_outputs)
        srv = _connect(url, token_file, 0)
        found = Planner(srv, sp, spec.parent, console=err).find_projects()
        t = Table(title="Managed projects")
        for c in ("key", "id", "title", "tasks", "annotations", "import storages", "ML backend"):
            t.add_column(c)
        for p in sp.projects:
            cur = found.get(p.key)
            if cur is None:
                t.add_row(p.key, "-", p.title, "-", "-", "not created", "-")
                continue
            sts = srv.get_json("/api/storages/s3", "list storages", project=cur["id"])
            mls = srv.get_json("/api/ml/", "list ML backends", project=cur["id"])
            t.add_row(p.key, str(cur["id"]), cur["title"], str(cur.get("task_number")),
                      str(cur.get("total_annotations_number")),
                      ", ".join(f"{s['title']}: {s['status']} ({s['last_sync_count']})"
                                for s in sts) or "-",
                      ", ".join(f"{m['url']} {m.get('state')}" for m in mls) or "-")
        out.print(t)
    except BootstrapError as e:
        raise _fail(e) from None


@app.command()
def tasks(bucket: Annotated[str, typer.Option(help="the dermatology source bucket")],
          images_prefix: str = "images/patients/", tasks_prefix: str = "tasks/",
          endpoint_url: Annotated[str | None, typer.Option(
              envvar="AWS_ENDPOINT_URL_S3", help="S3 endpoint (tests, VPC endpoints)")] = None
          ) -> None:
    """Build the derm project's task files (one per patient) from the bucket layout."""
    import boto3

    from bootstrap.tasks import write_task_files

    try:
        s3 = boto3.client("s3", endpoint_url=endpoint_url)
        r = write_task_files(s3, bucket, images_prefix=images_prefix,
                             tasks_prefix=tasks_prefix, console=err)
    except BootstrapError as e:
        raise _fail(e) from None
    out.print(f"{r.patients} patient task file(s) from {r.images} image(s): {r.written} "
              f"written, {r.unchanged} unchanged, {len(r.skipped)} key(s) outside the layout")
    for k in r.skipped[:20]:
        err.print(f"  skipped {k}")


def main() -> None:
    os.environ.setdefault("COLUMNS", "160")
    app()

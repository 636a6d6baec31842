"""``labelstack review``: agreement between annotators and the reviewer queue."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

DEFAULT_SPEC = Path(__file__).resolve().parent.parent / "bootstrap" / "projects.yaml"
EXIT_CODES = ("Exit codes: 0 ok; 1 some tasks could not be scored (unreadable annotations, "
              "state `error`); 2 bad input (arguments, spec, export file); 3 Label Studio "
              "failed or refused.")

app = typer.Typer(add_completion=False, help=__doc__, epilog=EXIT_CODES,
                  context_settings={"help_option_names": ["-h", "--help"]})
out = Console()
err = Console(stderr=True)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err, transient=False)


@app.command(epilog=EXIT_CODES)
def review(
    url: Annotated[str | None, typer.Option(
        "--url", envvar="LABEL_STUDIO_URL", help="Label Studio base URL (live projects)")] = None,
    token_file: Annotated[Path | None, typer.Option(
        "--token-file", help="file holding the API key (else $LABEL_STUDIO_API_KEY_FILE or "
        "$LABEL_STUDIO_API_KEY)")] = None,
    project: Annotated[list[str] | None, typer.Option(
        "--project", "-p", help="spec key or project id, repeatable (default: every spec "
        "project with a review: section); with --from-file: the spec key whose review "
        "settings apply")] = None,
    spec: Annotated[Path, typer.Option(
        "--spec", help="bootstrap spec with the review: sections")] = DEFAULT_SPEC,
    from_file: Annotated[Path | None, typer.Option(
        "--from-file", help="a Label Studio JSON export instead of a live server (reads only)",
        exists=False)] = None,
    threshold: Annotated[float | None, typer.Option(
        "--threshold", help="override the spec's threshold (default 0.8)")] = None,
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="write agreement.csv and report.html into this folder")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="score and report, write nothing to Label Studio")] = False,
) -> None:
    """Score agreement per task (brush IoU, polygon IoU per lesion track, kappa on status and
    visit assessment), write it into the tasks' data (Data Manager columns) and keep a "Review
    queue" view of the tasks under the threshold, worst first. Never changes an annotation;
    a task leaves the queue when a reviewer marks one of its annotations as ground truth."""
    from bootstrap.client import read_token
    from bootstrap.errors import BootstrapError
    from exports.source import SourceError
    from review.queue import Policy
    from review.run import (
        ProjectRun,
        ReviewInputError,
        find_projects,
        live_image_loader,
        review_file,
        review_live,
        spec_policies,
        write_outputs,
    )

    if threshold is not None and not -1 <= threshold <= 1:
        err.print(f"[red]error:[/] --threshold {threshold}: give a value in [-1, 1]")
        raise typer.Exit(2)
    try:
        policies = spec_policies(spec)

        def policy_for(key: str | None) -> Policy:
            pol = policies.get(key, (None, Policy()))[1] if key else Policy()
            if threshold is not None:
                pol = Policy(threshold, pol.metrics, pol.view_title)
            return pol

        if from_file is not None:
            if not from_file.is_file():
                raise ReviewInputError(f"--from-file {from_file}: no such file: give a Label "
                                       "Studio JSON export")
            if project and len(project) > 1:
                raise ReviewInputError(f"--project {project}: one export file is one project: "
                                       "give one spec key")
            key = project[0] if project else None
            if key and key not in policies:
                raise ReviewInputError(f"--project {key!r}: not a spec key with a review: "
                                       f"section (have {sorted(policies)})")
            runs = [ProjectRun(key or from_file.stem, policy_for(key))]
            with _progress() as bar:
                t = bar.add_task(f"scoring {from_file.name}", total=None)
                review_file(from_file, runs[0], lambda n: bar.advance(t, n))
            image_of, note = (lambda s: None), (
                "Read from an export file: images are not fetched (they live in private "
                "storage behind Label Studio), so regions are drawn on a grey canvas. Run "
                "against the live server for the images.")
        else:
            if not url:
                raise ReviewInputError("--url: not given: pass --url (or LABEL_STUDIO_URL) for "
                                       "a live server, or --from-file EXPORT.json")
            from review.client import LabelStudio
            from review.queue import user_emails

            srv = LabelStudio(url, read_token(token_file))
            runs = find_projects(srv, list(project or []), policies, policy_for(None))
            for r in runs:
                r.policy = policy_for(r.name) if r.name in policies else r.policy
            users = user_emails(srv)
            with _progress() as bar:
                for r in runs:
                    t = bar.add_task(f"project {r.name}", total=None)
                    review_live(srv, r, lambda n, t=t: bar.advance(t, n), write=not dry_run,
                                users=users, total=lambda n, t=t: bar.update(t, total=n))
            image_of, note = live_image_loader(srv), None
        if out_dir is not None:
            with err.status("writing the report"):
                write_outputs(out_dir, runs, title="Annotator agreement", image_of=image_of,
                              images_note=note)
    except (ReviewInputError, SourceError) as e:
        err.print(f"[red]error:[/] {e}", highlight=False)
        raise typer.Exit(3 if getattr(e, "service_failed", False) else 2) from None
    except BootstrapError as e:
        err.print(f"[red]error:[/] {e}", highlight=False)
        raise typer.Exit(e.exit_code if e.exit_code != 4 else 3) from None
    _summary(runs, out_dir)
    if any(s.result.error for r in runs for s in r.scored):
        raise typer.Exit(1)


def _summary(runs: list, out_dir: Path | None) -> None:
    from review.queue import state

    table = Table(title="Agreement review")
    for col in ("project", "tasks", "scored", "threshold", "queue", "settled", "errors",
                "written", "view"):
        table.add_column(col)
    for r in runs:
        states = [state(s.result, s.policy) for s in r.scored]
        w = r.written
        written = (f"{len(w.updated)} updated, {len(w.cleared)} cleared, {w.unchanged} "
                   "unchanged") if w else "nothing (read only)"
        view = f"{r.policy.view_title}: {w.view}" if w else "-"
        table.add_row(r.name, str(r.tasks_read), str(len(r.scored)), str(r.policy.threshold),
                      str(states.count("queue")), str(states.count("settled")),
                      str(states.count("error")), written, view)
    out.print(table)
    for r in runs:
        for s in r.scored:
            if s.result.error:
                err.print(f"[yellow]task {s.result.task_id} ({r.name}): could not score: "
                          f"{s.result.error}", highlight=False)
    if out_dir is not None:
        out.print(f"wrote {out_dir / 'agreement.csv'} and {out_dir / 'report.html'}")

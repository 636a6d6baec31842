"""``labelstack export masks|lesions`` and ``labelstack predictions import``.

Only argument parsing and reporting: the work is in ``exports.masks``, ``exports.lesions`` and
``exports.predictions``. Heavy modules (numpy, pillow, pyarrow, shapely, the Label Studio SDK,
boto3) are imported inside the commands.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

EXIT_CODES = ("Exit codes: 0 ok; 2 bad input (a malformed export file, a region whose RLE or "
              "size is wrong, a bad option; the message names the task and the field); 3 "
              "Label Studio or S3 failed.")

export_app = typer.Typer(add_completion=False, no_args_is_help=True, epilog=EXIT_CODES,
                         help="Export masks (PNG/NumPy) and lesion tables with provenance.")
predictions_app = typer.Typer(add_completion=False, no_args_is_help=True, epilog=EXIT_CODES,
                              help="Import model predictions as pre-annotations.")
console = Console(stderr=True)


@predictions_app.callback()
def _predictions_group() -> None:
    """Import model predictions as pre-annotations."""  # keeps `import` a sub-command

URL = typer.Option(None, "--url", envvar="LABEL_STUDIO_URL",
                   help="Label Studio base URL (env LABEL_STUDIO_URL).")
API_KEY_ENV = typer.Option("LABEL_STUDIO_API_KEY", "--api-key-env",
                           help="Name of the env var holding the API key (personal access "
                                "token or legacy token); never passed on the command line.")
PROJECT = typer.Option(None, "--project", help="Label Studio project id (live export).")
FROM_FILE = typer.Option(None, "--from-file", exists=False, dir_okay=False,
                         help="A Label Studio JSON export file instead of a live project.")
OUT = typer.Option(..., "--out", help="Folder, or s3://BUCKET/PREFIX of the annotations bucket.")
KMS = typer.Option(None, "--kms-key-id", envvar="LABELSTACK_EXPORT_KMS_KEY_ID",
                   help="KMS key id/ARN for SSE-KMS (required with an s3:// --out).")


MASKS_DIR = typer.Option(None, "--masks", file_okay=False,
                         help="Folder of masks: <task id>/<label>[__<n>].png|npy (SAM2 project, "
                              "brush regions).")
YOLO_DIR = typer.Option(None, "--yolo", file_okay=False,
                        help="Folder of YOLO label files (boxes or segmentation polygons, "
                             "normalized), named like the task images (dermatology project, "
                             "polygons).")
CLASSES = typer.Option(None, "--classes", dir_okay=False,
                       help="YOLO class names: data.yaml (names:) or one per line.")


def _fail(message: str, code: int) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _api_key(env_name: str) -> str:
    key = os.environ.get(env_name, "")
    if not key:
        raise _fail(f"--api-key-env {env_name}: the env var is empty: export a Label Studio "
                    "API key in it", 2)
    return key


@contextmanager
def _errors() -> Iterator[None]:
    """Map the library's errors to exit codes 2 (bad input) and 3 (a service failed)."""
    from exports.records import ExportError
    from exports.sink import SinkError
    from exports.source import SourceError

    try:
        yield
    except SourceError as exc:
        raise _fail(str(exc), 3 if exc.service_failed else 2) from None
    except (ExportError, SinkError) as exc:
        raise _fail(str(exc), 2) from None
    except Exception as exc:  # boto3 / botocore failures while publishing
        module = type(exc).__module__
        if module.startswith(("botocore", "boto3", "s3transfer")):
            raise _fail(f"S3 failed: {exc}", 3) from None
        raise


def _tasks(project: int | None, from_file: Path | None, url: str | None, api_key_env: str,
           on_total: Callable[[int], None]) -> tuple[Iterator[dict[str, Any]], dict[int, str]]:
    from exports import source

    if (project is None) == (from_file is None):
        raise _fail("give either --project (with --url) or --from-file", 2)
    if from_file is not None:
        return source.iter_export_file(from_file), {}
    if not url:
        raise _fail("--url: missing: the Label Studio base URL (or env LABEL_STUDIO_URL)", 2)
    key = _api_key(api_key_env)
    users = source.user_emails(url, key)
    return source.iter_project_tasks(url, key, project, on_total=on_total), users


def _run_export(kind: str, project, from_file, url, api_key_env, out, kms_key_id, work) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from exports.sink import Sink

    with _errors(), Progress(TextColumn("{task.description}"), BarColumn(),
                             MofNCompleteColumn(), console=console) as progress:
        bar = progress.add_task(f"{kind}: tasks", total=None)
        tasks, users = _tasks(project, from_file, url, api_key_env,
                              lambda n: progress.update(bar, total=n))
        with Sink(out, kms_key_id=kms_key_id) as sink:
            summary = work(tasks, sink, users, lambda n: progress.advance(bar, n))
            published = sink.commit()
    console.print(f"{kind}: {summary} -> {out} ({len(published)} files)", highlight=False,
                  soft_wrap=True)


@export_app.command("masks", epilog=EXIT_CODES)
def masks(project: int = PROJECT, from_file: Path = FROM_FILE, url: str = URL,
          api_key_env: str = API_KEY_ENV, out: str = OUT,
          fmt: str = typer.Option("png", "--format", help="png, npy or both."),
          kms_key_id: str = KMS) -> None:
    """One PNG/NPY file per brush region, pixel-exact, and masks.csv with provenance."""
    from exports.masks import export_masks

    _run_export("masks", project, from_file, url, api_key_env, out, kms_key_id,
                lambda tasks, sink, users, advance: export_masks(
                    tasks, sink, fmt=fmt, users=users, advance=advance))


@export_app.command("lesions", epilog=EXIT_CODES)
def lesions(project: int = PROJECT, from_file: Path = FROM_FILE, url: str = URL,
            api_key_env: str = API_KEY_ENV, out: str = OUT, kms_key_id: str = KMS) -> None:
    """lesions.csv / lesions.parquet (polygons in pixels) and tracks.csv across visits."""
    from exports.lesions import export_lesions

    _run_export("lesions", project, from_file, url, api_key_env, out, kms_key_id,
                lambda tasks, sink, users, advance: export_lesions(
                    tasks, sink, users=users, advance=advance))


@predictions_app.command("import", epilog=EXIT_CODES)
def import_predictions(
    project: int = typer.Option(..., "--project", help="Label Studio project id."),
    model_version: str = typer.Option(..., "--model-version",
                                      help="Recorded on every prediction; re-importing the "
                                           "same version updates instead of duplicating."),
    masks_dir: Path = MASKS_DIR, yolo_dir: Path = YOLO_DIR, classes: Path = CLASSES,
    score: float = typer.Option(None, "--score", min=0.0, max=1.0,
                                help="Prediction score when the files carry none (masks)."),
    url: str = URL, api_key_env: str = API_KEY_ENV,
) -> None:
    """Masks (PNG/NPY) or YOLO labels as Label Studio predictions with model_version and score."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from exports import predictions

    if (masks_dir is None) == (yolo_dir is None):
        raise _fail("give either --masks DIR or --yolo DIR", 2)
    if yolo_dir is not None and classes is None:
        raise _fail("--classes: missing: YOLO class ids need their names (data.yaml or a "
                    "names file, one per line, in class id order)", 2)
    if not url:
        raise _fail("--url: missing: the Label Studio base URL (or env LABEL_STUDIO_URL)", 2)
    key = _api_key(api_key_env)
    with _errors(), Progress(TextColumn("{task.description}"), BarColumn(),
                             MofNCompleteColumn(), console=console) as progress:
        bar = progress.add_task("predictions: tasks", total=None)
        target = predictions.Target(url, key, project)
        if masks_dir is not None:
            plan = predictions.plan_masks(target, masks_dir, model_version, score)
        else:
            plan = predictions.plan_yolo(target, yolo_dir, classes, model_version)
        progress.update(bar, total=len(plan))
        report = predictions.apply(target, plan, model_version,
                                   advance=lambda: progress.advance(bar))
    console.print(f"predictions {model_version}: {report}", highlight=False)

"""``labelstack``: the one console script; each sub-command is one of the product's verbs.

Sub-commands are imported only when they run, so ``labelstack plan`` needs only the
infrastructure dependencies (``requirements/infra.txt``) and ``labelstack --help`` is fast.
Each verb lives with the code it drives and stays reachable as ``python -m <package>``.
"""

from __future__ import annotations

import importlib
import sys

import typer
from typer.core import TyperGroup

EXIT_CODES = """Exit codes: 0 ok; 1 the work ran and found a failure (policy violations, failed
checks); 2 bad input (arguments, configuration, spec); 3 a service it talks to failed."""

#: verb -> (module:attribute of its typer app, one-line help)
VERBS: dict[str, tuple[str, str]] = {
    "plan": ("infra.plan:app",
             "Offline plan and compliance check of a stack (no cloud account)."),
    "ephemeral": ("infra.ephemeral:app",
                  "Ephemeral stacks: up, smoke test, destroy, sweep (Pulumi Automation API)."),
    "local": ("local_stack.cli:app",
              "The whole stack on this machine: up, down, status, logs."),
    "bootstrap": ("bootstrap.cli:app",
                  "Create and update the labeling projects in Label Studio from a spec."),
    "review": ("review.cli:app",
               "Agreement between annotators (IoU, kappa) and the reviewer queue."),
    "export": ("exports.cli:export_app",
               "Export masks (PNG/NumPy) and lesion tables with provenance."),
    "predictions": ("exports.cli:predictions_app",
                    "Import model predictions as pre-annotations."),
    "backend": ("backend.__main__:group", "The SAM2 ML backend service."),
}


def load_verb(name: str):
    """Import one verb's typer app and return it as a (typer) click command."""
    target, short_help = VERBS[name]
    module_name, attr = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        typer.echo(f"error: `labelstack {name}` needs a package that is not installed "
                   f"({exc.name}): run `make setup` for the full install (`make plan` installs "
                   "only the infrastructure dependencies)", err=True)
        raise typer.Exit(2) from exc
    command = typer.main.get_command(getattr(module, attr))
    command.help = command.help or short_help
    return command


class LazyVerbs(TyperGroup):
    """The root group: sub-commands are imported on first use, help lists them from VERBS."""

    def list_commands(self, ctx) -> list[str]:
        return list(VERBS)

    def get_command(self, ctx, cmd_name: str):
        return load_verb(cmd_name) if cmd_name in VERBS else None

    def format_commands(self, ctx, formatter) -> None:
        # short help from the table: listing must not import every verb's dependencies
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_) for name, (_, help_) in VERBS.items()])


app = typer.Typer(cls=LazyVerbs, rich_markup_mode=None, add_completion=False,
                  no_args_is_help=True, epilog=EXIT_CODES,
                  context_settings={"help_option_names": ["-h", "--help"],
                                    "max_content_width": 100})


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"labelstack {version('labelstack')}")
        raise typer.Exit()


@app.callback()
def root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Show the version and exit.")) -> None:
    """labelstack: a self-hosted, HIPAA-aligned labeling stack (Label Studio + SAM2)."""


cli = app


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    if argv is not None:
        sys.argv[1:] = argv
    app(prog_name="labelstack")


if __name__ == "__main__":
    main()

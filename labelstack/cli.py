"""``labelstack``: the one console script; each sub-command is one of the product's verbs.

Sub-commands are imported only when they run, so ``labelstack plan`` needs only the
infrastructure dependencies (``requirements/infra.txt``) and ``labelstack --help`` is fast.
Each verb lives with the code it drives and stays reachable as ``python -m <package>``.
"""

from __future__ import annotations

import importlib
import sys

import click
import typer

EXIT_CODES = """Exit codes: 0 ok; 1 the work ran and found a failure (policy violations, failed
checks); 2 bad input (arguments, configuration, spec); 3 a service it talks to failed."""

#: verb -> (module:attribute of its typer app, one-line help, what to install when missing)
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
    "backend": ("backend.__main__:cli", "The SAM2 ML backend service."),
}


def load_verb(name: str) -> click.Command:
    """Import one verb's typer app and return it as a click command."""
    target, _ = VERBS[name]
    module_name, attr = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise click.ClickException(
            f"`labelstack {name}` needs a package that is not installed ({exc.name}): "
            "run `make setup` for the full install (`make plan` installs only the "
            "infrastructure dependencies)") from exc
    command = typer.main.get_command(getattr(module, attr))
    command.help = command.help or VERBS[name][1]
    return command


class LazyVerbs(click.Group):
    """A click group whose sub-commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(VERBS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in VERBS:
            return None
        return load_verb(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # short help from the table: listing must not import every verb's dependencies
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_) for name, (_, help_) in VERBS.items()])


@click.group(cls=LazyVerbs, epilog=EXIT_CODES,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="labelstack", prog_name="labelstack")
def cli() -> None:
    """labelstack: a self-hosted, HIPAA-aligned labeling stack (Label Studio + SAM2)."""


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    sys.exit(cli.main(args=argv, prog_name="labelstack", standalone_mode=True))


if __name__ == "__main__":
    main()

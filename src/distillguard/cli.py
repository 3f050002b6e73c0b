"""The ``distillguard`` command line (CONTRACT §2-§6).

Each command is a thin shell around a library function: parse options, show progress,
print one clear line on error. The work itself lives in the package modules.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from distillguard import __version__
from distillguard.errors import DistillGuardError

app = typer.Typer(
    name="distillguard",
    help=(
        "Find and stop distillation campaigns against an LLM API: networks of accounts "
        "that harvest a model's answers to train a copy.\n\n"
        "Hunt in logs with 'scan', measure with 'simulate' + 'evaluate', enforce live with "
        "'serve'. Start with 'distillguard demo'."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def friendly_errors(fn: F) -> F:
    """Turn any DistillGuardError into one red line and exit code 2."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DistillGuardError as err:
            console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        print(f"distillguard {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    pass


def _register_commands() -> None:
    import importlib
    import pkgutil

    from distillguard import commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"distillguard.commands.{info.name}")
        module.register(app)


_register_commands()


def main() -> None:
    app(prog_name="distillguard")


if __name__ == "__main__":  # pragma: no cover
    main()

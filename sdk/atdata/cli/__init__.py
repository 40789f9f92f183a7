"""The `atdata` command line.

`app` is the typer application and `main()` the console entry point. Errors
atdata expects (bad input, unreachable services, ...) end as one line on stderr
and exit code 1; usage errors exit with 2; `--debug` (or `ATDATA_DEBUG=1`) shows
the full traceback instead. `--debug` may stand before or after the subcommand
(`atdata --debug inspect x.tar` or `atdata inspect x.tar --debug`).

Exit codes scripts can rely on:

| code | meaning |
| --- | --- |
| 0 | success |
| 1 | an error (message on stderr) |
| 2 | bad usage (unknown option, missing argument) |
| 3 | a queried thing is absent (e.g. `atdata devnet status` when it is not running) |
| 130 | interrupted (Ctrl-C) |

Adding commands: write one module per area in this package that defines
`register(app: typer.Typer) -> None` (adding a sub-app with `app.add_typer` or
top-level commands with `app.command`), and list the module name in
`COMMAND_MODULES`. Import heavy dependencies inside the command functions, so
`atdata --help` stays fast.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import traceback
from collections.abc import Sequence

import httpx
import typer

from .. import __version__
from ..errors import AtdataError

__all__ = ["EXIT_ABSENT", "EXIT_ERROR", "EXIT_USAGE", "CliError", "app", "main"]

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_ABSENT = 3
EXIT_INTERRUPTED = 130

COMMAND_MODULES: tuple[str, ...] = (
    "devnet",
    "appview",
    "inspect",
    "schema",
    "publish",
    "search",
    "get",
    "load",
    "delete",
    "export",
)
"""Modules of `atdata.cli` that add commands (each has `register(app)`)."""


class CliError(AtdataError):
    """A command failed in a way its message fully explains (no traceback needed)."""


app = typer.Typer(
    name="atdata",
    help=(
        "Typed, federated ML datasets on the AT Protocol.\n\n"
        "Examples:\n\n"
        "  atdata inspect 'out/data-{000000..000009}.tar'\n\n"
        "  atdata search digits --appview http://127.0.0.1:8080\n\n"
        "  atdata load at://did:plc:abc/io.atdata.dataset/3kxyz --head 5\n\n"
        "  atdata devnet up            # a local PLC + two PDSes on 127.0.0.1\n\n"
        "  atdata devnet status --json\n\n"
        "  atdata --debug devnet up    # full traceback on failure"
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_debug = False


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"atdata {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(
        False,
        "--debug",
        help="Show full tracebacks and debug logging (also ATDATA_DEBUG=1).",
    ),
    version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print the atdata version and exit.",
    ),
) -> None:
    """Options that apply to every command."""
    global _debug
    _debug = debug or _env_flag("ATDATA_DEBUG")
    logging.basicConfig(
        level=logging.DEBUG if _debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


for _module in COMMAND_MODULES:
    importlib.import_module(f"{__name__}.{_module}").register(app)


def _expected_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean "the world is not as the command needs", not "atdata has a bug"."""
    kinds: list[type[BaseException]] = [AtdataError, OSError, TimeoutError]
    kinds.append(httpx.HTTPError)
    errors_module = sys.modules.get("atproto_client.exceptions")
    if errors_module is not None:
        kinds.append(errors_module.AtProtocolError)
    return tuple(kinds)


_OPTIONAL = {
    "aiohttp": "atdata[appview]",
    "sqlalchemy": "atdata[appview]",
    "alembic": "atdata[appview]",
    "psycopg": "atdata[appview]",
    "coincurve": "atdata[appview]",
    "atproto": "atdata[atmosphere]",
    "atproto_client": "atdata[atmosphere]",
    "libipld": "atdata[atmosphere]",
    "sklearn": "atdata[demo]",
    "torch": "torch",
}
"""Top-level modules of optional dependencies -> what to `pip install` for them."""


def _missing_extra(exc: BaseException) -> str | None:
    """'pip install ...' advice when `exc` is an optional dependency that is not installed."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    package = _OPTIONAL.get(exc.name.split(".")[0])
    if package is None:
        return None
    return f"this command needs {exc.name.split('.')[0]}, which is not installed: pip install '{package}'"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    lines = text.splitlines()
    more = "" if len(lines) == 1 else " (more with --debug)"
    return lines[0] + more


def _hoist_debug(args: list[str]) -> list[str]:
    """Move `--debug` given after the subcommand to the front, where the root option parses it.

    People add `--debug` at the end of the command that just failed; typer only knows it
    before the subcommand. Tokens after a `--` separator are arguments and stay as they are.
    """
    end = args.index("--") if "--" in args else len(args)
    if "--debug" not in args[:end]:
        return args
    rest = [a for a in args[:end] if a != "--debug"] + args[end:]
    return ["--debug", *rest]


def _swallowed_interrupt(exc: BaseException) -> bool:
    """Typer turns a Ctrl-C into a silent exit 130: true for that, not for a command that
    said what the interrupt left behind and exited 130 itself."""
    inner = exc.__context__
    return inner is not None and isinstance(inner.__cause__, KeyboardInterrupt)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code (the console script exits with it)."""
    global _debug
    _debug = _env_flag("ATDATA_DEBUG")  # the --debug option sets it again when parsed
    args = _hoist_debug(list(sys.argv[1:] if argv is None else argv))
    try:
        # standalone mode: typer prints usage errors itself and exits with 2
        app(args=args, prog_name="atdata")
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        if code == EXIT_INTERRUPTED and _swallowed_interrupt(exc):
            print("interrupted", file=sys.stderr)
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if _debug:
            traceback.print_exc()
        elif isinstance(exc, _expected_errors()):
            print(f"error: {_one_line(exc)}", file=sys.stderr)
        elif (advice := _missing_extra(exc)) is not None:
            print(f"error: {advice}", file=sys.stderr)
        else:
            print(
                f"error: unexpected {type(exc).__name__}: {_one_line(exc)} "
                "(rerun with --debug for the traceback)",
                file=sys.stderr,
            )
        return EXIT_ERROR
    return 0

"""`atdata devnet ...`: run a local ATProto network (PLC + PDSes) in the background.

`up` and `status` print `export` lines on stdout (so `eval "$(atdata devnet up)"` works) and
everything meant for people on stderr.
"""

from __future__ import annotations

import json
import secrets
import shlex
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import typer

from . import EXIT_ABSENT, CliError

if TYPE_CHECKING:
    from ..devnet import Devnet, DevnetInfo

__all__ = ["devnet_app", "register"]

devnet_app = typer.Typer(
    name="devnet",
    help=(
        "A local ATProto network on 127.0.0.1: an in-memory PLC directory and two reference "
        "PDSes, installed on first use into $ATDATA_CACHE/devnet (default ~/.cache/atdata).\n\n"
        "Examples:\n\n"
        "  atdata devnet up\n\n"
        '  eval "$(atdata devnet account alice)"   # ATDATA_PDS/HANDLE/PASSWORD for alice\n\n'
        "  atdata devnet status --json\n\n"
        "  atdata devnet down"
    ),
    no_args_is_help=True,
)

_NAME = typer.Option(
    "default",
    "--name",
    envvar="ATDATA_DEVNET_NAME",
    help="Instance name: several devnets (on other ports) can run side by side.",
)
_JSON = typer.Option(False, "--json", help="Print machine-readable JSON.")
_PDS_PORTS = typer.Option(
    [2583, 2584], "--pds-port", help="Port of a PDS; repeat for several (default 2583, 2584)."
)


def _devnet(
    name: str, plc_port: int | None = None, pds_ports: Sequence[int] | None = None
) -> Devnet:
    from ..devnet import DEFAULT_PDS_PORTS, DEFAULT_PLC_PORT, Devnet

    return Devnet(
        plc_port=plc_port or DEFAULT_PLC_PORT,
        pds_ports=pds_ports or DEFAULT_PDS_PORTS,
        name=name,
    )


def _print_info(info: DevnetInfo, as_json: bool) -> None:
    """JSON, or a description on stderr and the `export` line on stdout."""
    if as_json:
        typer.echo(json.dumps(info.to_dict(), indent=2))
        return
    typer.echo(f"devnet running (pid {info.pid})", err=True)
    typer.echo(f"  PLC   {info.plc_url}", err=True)
    for i, pds in enumerate(info.pds, start=1):
        typer.echo(
            f"  PDS{i}  {pds.url}  handles *{pds.handle_domain}  firehose {pds.ws_url}  "
            f"blobs <= {pds.blob_limit // (1024 * 1024)} MiB",
            err=True,
        )
    typer.echo(f"  data  {info.data_dir}   log {info.run_dir}/devnet.log", err=True)
    typer.echo(f"export ATDATA_PLC_URL={shlex.quote(info.plc_url)} ATDATA_ALLOW_PRIVATE_NETWORK=1")


def _running_elsewhere(ports: Sequence[int]) -> tuple[str, DevnetInfo] | None:
    """A devnet of another instance name that listens on one of `ports`, if any."""
    from ..devnet import Devnet, cache_root

    for run_dir in sorted((cache_root() / "devnet-run").glob("*")):
        info = Devnet(run_dir=run_dir).status()  # ports do not matter to `status`
        if info is None:
            continue
        taken = {int(info.plc_url.rsplit(":", 1)[-1]), *(p.port for p in info.pds)}
        if taken & set(ports):
            return run_dir.name, info
    return None


@devnet_app.command("up")
def up(
    plc_port: int = typer.Option(2582, "--plc-port", help="Port of the PLC directory."),
    pds_port: list[int] = _PDS_PORTS,
    blob_limit_mib: int = typer.Option(
        100, "--blob-limit-mib", min=1, help="Blob upload limit per PDS in MiB (stock PDS: 5)."
    ),
    timeout: float = typer.Option(120.0, "--timeout", help="Seconds to wait until it serves."),
    name: str = _NAME,
    as_json: bool = _JSON,
) -> None:
    """Start the devnet in the background; its `export` line on stdout, the rest on stderr.

    A no-op when it already runs (on whatever ports): the running one's line is printed.
    Every start is a fresh, empty network (the PLC lives in memory).

    Examples:

      eval "$(atdata devnet up)"   # ATDATA_PLC_URL, ATDATA_ALLOW_PRIVATE_NETWORK

      atdata devnet up --plc-port 3582 --pds-port 3583 --pds-port 3584 --name mine

      atdata devnet up --blob-limit-mib 5 --json
    """
    from ..devnet import Devnet

    net = Devnet(
        plc_port=plc_port,
        pds_ports=pds_port,
        blob_limit=blob_limit_mib * 1024 * 1024,
        name=name,
    )
    running = net.status()
    elsewhere = None if running is not None else _running_elsewhere([plc_port, *pds_port])
    if elsewhere is not None:
        other, running = elsewhere
        typer.echo(f"a devnet already runs on these ports (instance {other!r})", err=True)
    if running is not None:
        # The promised no-op: say where the running one is, whatever ports were asked for.
        asked = [f"http://localhost:{plc_port}", *(f"http://localhost:{p}" for p in pds_port)]
        if asked != [running.plc_url, *(p.url for p in running.pds)]:
            owner = elsewhere[0] if elsewhere is not None else name
            flag = "" if owner == "default" else f" --name {shlex.quote(owner)}"
            typer.echo(
                f"it runs on other ports than asked: `atdata devnet down{flag}` first to start "
                "one on those",
                err=True,
            )
        _print_info(running, as_json)
        return
    if not as_json:
        from ..devnet import check_install

        first = check_install(net.home) is not None
        note = " (installing Node 22 and the PDS first: about 3 min)" if first else ""
        typer.echo(f"starting the devnet{note}", err=True)
    started = time.monotonic()
    info = net.up(timeout=timeout)
    if not as_json:
        typer.echo(f"ready after {time.monotonic() - started:.1f} s", err=True)
    _print_info(info, as_json)


@devnet_app.command("down")
def down(name: str = _NAME) -> None:
    """Stop the devnet (SIGTERM, SIGKILL after 15 s) and delete its data.

    Examples:

      atdata devnet down

      atdata devnet down --name mine
    """
    stopped = _devnet(name).down()
    typer.echo("devnet stopped" if stopped else "devnet was not running")


@devnet_app.command("status")
def status(name: str = _NAME, as_json: bool = _JSON) -> None:
    """Say whether the devnet runs (and its `export` line); exit code 0 when it does, 3 when not.

    Examples:

      atdata devnet status

      atdata devnet status --json | jq -r .plc_url
    """

    info = _devnet(name).status()
    if info is None:
        if as_json:
            typer.echo(json.dumps(None))
        else:
            typer.echo("devnet is not running", err=True)
        raise typer.Exit(EXIT_ABSENT)
    _print_info(info, as_json)


@devnet_app.command("install")
def install_cmd() -> None:
    """Install (or check) Node 22 and the PDS packages in the cache; prints the folder.

    Examples:

      atdata devnet install

      ATDATA_CACHE=/opt/atdata-cache atdata devnet install
    """
    from ..devnet import check_install, default_home, install

    home = default_home()
    reason = check_install(home)
    if reason is not None:
        typer.echo(f"installing the devnet into {home} ({reason})", err=True)
    started = time.monotonic()
    install(home)
    typer.echo(f"devnet installed in {home} ({time.monotonic() - started:.0f} s)")


@devnet_app.command("account")
def account(
    handle_name: str = typer.Argument(..., help="First label of the handle (3-18 characters)."),
    pds: int = typer.Option(1, "--pds", min=1, help="Which PDS hosts the account (1, 2, ...)."),
    password: str = typer.Option(
        "", "--password", help="Password to set (default: a random one, printed once)."
    ),
    name: str = _NAME,
    as_json: bool = _JSON,
) -> None:
    """Create an account on the running devnet and print it as ATDATA_* variables.

    Examples:

      eval "$(atdata devnet account alice)"

      atdata devnet account bob --pds 2 --json
    """
    from ..devnet import create_account

    info = _devnet(name).status()
    if info is None:
        raise CliError("the devnet is not running: start it with `atdata devnet up`")
    if pds > len(info.pds):
        raise CliError(f"--pds {pds}: this devnet has {len(info.pds)} PDSes")
    host = info.pds[pds - 1]
    handle = host.handle(handle_name)
    acct = create_account(
        host.url,
        handle,
        password or secrets.token_urlsafe(12),
        f"{handle_name}.{secrets.token_hex(3)}@example.com",
    )
    if as_json:
        typer.echo(
            json.dumps(
                {"did": acct.did, "handle": acct.handle, "password": acct.password, "pds": host.url}
            )
        )
        return
    typer.echo(f"# {acct.did}")
    typer.echo(f"export ATDATA_PDS={host.url}")
    typer.echo(f"export ATDATA_HANDLE={acct.handle}")
    typer.echo(f"export ATDATA_PASSWORD={acct.password}")
    typer.echo(f"export ATDATA_PLC_URL={info.plc_url}")
    typer.echo("export ATDATA_ALLOW_PRIVATE_NETWORK=1")


def register(app: typer.Typer) -> None:
    """Add `atdata devnet ...` to the main application."""
    app.add_typer(devnet_app, name="devnet")

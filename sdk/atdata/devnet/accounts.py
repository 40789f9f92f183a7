"""Account chores on a devnet PDS: create, log in, change handle, (de)activate, delete.

These go through the `atproto` package (the `atmosphere` extra), like the rest
of the SDK's network code; the admin deletion is one HTTP call with Basic auth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from ..errors import describe_xrpc_error
from ._install import DevnetError

if TYPE_CHECKING:
    from atproto import Client


def _atproto() -> Any:
    try:
        import atproto
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise DevnetError(
            "account helpers need the atproto package: pip install 'atdata[atmosphere]'"
        ) from exc
    return atproto


def _protocol_error() -> type[Exception]:
    from atproto_client.exceptions import AtProtocolError

    return AtProtocolError


@dataclass(frozen=True)
class Account:
    """An account on a PDS, with the password to log in again."""

    did: str
    handle: str
    password: str
    pds_url: str
    email: str = ""

    def client(self) -> Client:
        """A fresh `atproto.Client` logged in as this account.

        The devnet has no Bluesky AppView, so the profile fetch at login is off.
        """
        atproto = _atproto()
        client = atproto.Client(self.pds_url)
        try:
            client.login(self.did or self.handle, self.password, fetch_bsky_profile=False)
        except _protocol_error() as exc:
            raise DevnetError(f"login as {self.handle} failed: {describe_xrpc_error(exc)}") from exc
        return client


def create_account(pds_url: str, handle: str, password: str, email: str) -> Account:
    """Create an account (the devnet needs no invite code) and return it.

    The handle must end in the PDS's handle domain and its first label must be
    3-18 characters; the email must be unique on that PDS.
    """
    atproto = _atproto()
    client = atproto.Client(pds_url)
    data = atproto.models.ComAtprotoServerCreateAccount.Data(
        handle=handle, email=email, password=password
    )
    try:
        out = client.com.atproto.server.create_account(data)
    except _protocol_error() as exc:
        raise DevnetError(
            f"could not create account {handle!r} on {pds_url}: {describe_xrpc_error(exc)}"
        ) from exc
    return Account(did=out.did, handle=out.handle, password=password, pds_url=pds_url, email=email)


def delete_account(pds_url: str, did: str, admin_password: str) -> None:
    """Delete an account as the PDS admin (the firehose then carries `#account deleted`)."""
    response = httpx.post(
        f"{pds_url.rstrip('/')}/xrpc/com.atproto.admin.deleteAccount",
        json={"did": did},
        auth=("admin", admin_password),
        timeout=30,
    )
    if response.status_code != 200:
        raise DevnetError(
            f"could not delete {did} on {pds_url}: HTTP {response.status_code} {response.text[:200]}"
        )


def deactivate_account(account: Account) -> None:
    """Deactivate through the account's own session (`#account active=false deactivated`)."""
    atproto = _atproto()
    try:
        account.client().com.atproto.server.deactivate_account(
            atproto.models.ComAtprotoServerDeactivateAccount.Data()
        )
    except _protocol_error() as exc:
        raise DevnetError(
            f"could not deactivate {account.handle}: {describe_xrpc_error(exc)}"
        ) from exc


def activate_account(account: Account) -> None:
    """Reactivate a deactivated account through its own session."""
    try:
        account.client().com.atproto.server.activate_account()
    except _protocol_error() as exc:
        raise DevnetError(
            f"could not activate {account.handle}: {describe_xrpc_error(exc)}"
        ) from exc


def update_handle(account: Account, new_handle: str) -> Account:
    """Change the account's handle (a PLC operation plus an `#identity` event)."""
    atproto = _atproto()
    try:
        account.client().com.atproto.identity.update_handle(
            atproto.models.ComAtprotoIdentityUpdateHandle.Data(handle=new_handle)
        )
    except _protocol_error() as exc:
        raise DevnetError(
            f"could not change {account.handle} to {new_handle!r}: {describe_xrpc_error(exc)}"
        ) from exc
    return Account(
        did=account.did,
        handle=new_handle.lower(),
        password=account.password,
        pds_url=account.pds_url,
        email=account.email,
    )

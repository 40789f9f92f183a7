"""A real ATProto network on loopback for the demo and the tests.

`Devnet(...).up()` starts an in-memory PLC directory and reference PDSes
(`@atproto/pds` on Node 22), installed on first use into `$ATDATA_CACHE/devnet`
(default `~/.cache/atdata/devnet`) and reused afterwards. The same is reachable
from the shell as `atdata devnet up|down|status`.
"""

from __future__ import annotations

from ._install import NODE_VERSION, DevnetError, cache_root, check_install, default_home, install
from ._network import (
    DEFAULT_ADMIN_PASSWORD,
    DEFAULT_BLOB_LIMIT,
    DEFAULT_PDS_PORTS,
    DEFAULT_PLC_PORT,
    STOCK_BLOB_LIMIT,
    Devnet,
    DevnetInfo,
    PdsInfo,
    default_run_dir,
    free_ports,
    port_is_free,
)
from .accounts import (
    Account,
    activate_account,
    create_account,
    deactivate_account,
    delete_account,
    update_handle,
)

__all__ = [
    "DEFAULT_ADMIN_PASSWORD",
    "DEFAULT_BLOB_LIMIT",
    "DEFAULT_PDS_PORTS",
    "DEFAULT_PLC_PORT",
    "NODE_VERSION",
    "STOCK_BLOB_LIMIT",
    "Account",
    "Devnet",
    "DevnetError",
    "DevnetInfo",
    "PdsInfo",
    "activate_account",
    "cache_root",
    "check_install",
    "create_account",
    "deactivate_account",
    "default_home",
    "default_run_dir",
    "delete_account",
    "free_ports",
    "install",
    "port_is_free",
    "update_handle",
]

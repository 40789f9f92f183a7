"""A handle given to a query, mapped to a DID the index holds and checked against its DID
document: the index says which DID goes by the handle (``repos.handle``, learnt from DID
documents at ingest), and that DID's current document must still claim it. A stale mapping
(the handle moved to another account) or a handle the index never saw gives None, so a query
never answers for a handle on the word of old data alone.
"""

from __future__ import annotations

import logging
from typing import Any

from atdata.atmosphere.identity import default_plc_url
from atdata.errors import ResolutionError

from ..db import queries
from ..identity import IdentityResolver
from ._base import Context

log = logging.getLogger(__name__)


def resolver(ctx: Context) -> IdentityResolver:
    """The ingest's resolver (its cache is warm), else one of this context's own (its PLC
    directory, else ``ATDATA_PLC_URL``; closed with the app)."""
    own = getattr(ctx.ingest, "resolver", None)
    if isinstance(own, IdentityResolver):
        return own
    if ctx.identity is None:
        ctx.identity = IdentityResolver(ctx.plc_url or default_plc_url())
    return ctx.identity


async def did_for(ctx: Context, handle_or_did: str) -> str | None:
    """The DID of an author given as a DID (as is) or a handle (checked both ways)."""
    if handle_or_did.startswith("did:"):
        return handle_or_did
    handle = handle_or_did.lower()
    did = await ctx.store.read(queries.resolve_author, handle)
    if did is None:
        return None
    ids = resolver(ctx)
    for fresh in (False, True):  # a cached document may predate a handle change: ask once more
        try:
            claimed = (await ids.resolve(did, fresh=fresh)).handle
        except ResolutionError as exc:
            log.info("cannot check handle %s against %s's DID document: %s", handle, did, exc)
            return None
        if claimed == handle:
            return did
    log.info("the index maps %s to %s, whose DID document claims %r", handle, did, claimed)
    return None


async def close(ctx: Any) -> None:
    if isinstance(ctx, Context) and ctx.identity is not None:
        await ctx.identity.close()

"""Dataset cards on the page: Markdown from an untrusted record, rendered to safe HTML.

Rendering: markdown-it-py (CommonMark + tables + strikethrough) with raw HTML dropped, not
escaped (an HTML block or inline tag in a card renders as nothing), links kept only for http,
https, mailto and same-site URLs (an unsafe link keeps its text, an unsafe autolink goes
entirely), and no images at all (a remote image would tell a third party who reads the page;
an image renders as its alt text). The HTML is then sanitised by nh3 (ammonia) with a tag and
attribute allowlist, as a second, independent layer.

Blob cards (``cardBlob``, over 32 KiB) are fetched lazily when a page is first rendered, not at
ingest: ingest and backfill then never do per-record network fetches, and a card changes
nothing the index searches. The fetch goes to the author's PDS (``com.atproto.sync.getBlob``)
through the SDK's network guard with the 1 MiB cap and a 10 s deadline, and the bytes must hash
to the blob's CID; good cards are cached by CID (so a cache entry can never hold other text).
Fetches run on a small pool of their own, one at a time per CID, and a failure is remembered
for a minute: a stalling PDS cannot tie up the server's threads page view after page view.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import nh3
from atdata.atmosphere.cards import CARD_BLOB_MAX
from atdata.atmosphere.netguard import get_bytes
from atdata.errors import AtdataError
from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict

from ._html import Markup

__all__ = ["BlobCards", "blob_cid", "render_card"]

log = logging.getLogger(__name__)

_TAGS = {
    "a", "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "s", "del",
    "code", "pre", "blockquote", "ul", "ol", "li", "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}, "th": {"style"}, "td": {"style"}}
_SCHEMES = {"http", "https", "mailto"}
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.\-]*):")
# Characters browsers ignore inside a scheme ("java\tscript:"), stripped before the check.
_IGNORED = re.compile(r"[\x00-\x20\x7f]")


def _safe_href(href: str) -> bool:
    """http(s)/mailto, or a same-site path, query or fragment; nothing else (javascript:,
    data:, a scheme spelled with escapes or blanks, ...)."""
    compact = _IGNORED.sub("", href)
    match = _SCHEME.match(compact)
    if match is None:
        # "/\evil" is read as "//evil" by browsers: any backslash is refused
        return compact.startswith(("/", "#", "?")) and "\\" not in compact
    return match.group(1).lower() in _SCHEMES


def _drop_unsafe_links(children: list[Token]) -> list[Token]:
    """Inline tokens without unsafe links: a link keeps its text, an autolink goes whole."""
    out: list[Token] = []
    skipping: list[tuple[bool, bool]] = []  # per open link: (dropped, autolink)
    for tok in children:
        if tok.type == "link_open":
            dropped = not _safe_href(str(tok.attrGet("href") or ""))
            skipping.append((dropped, tok.markup == "autolink"))
            if not dropped:
                out.append(tok)
            continue
        if tok.type == "link_close":
            dropped, _ = skipping.pop() if skipping else (False, False)
            if not dropped:
                out.append(tok)
            continue
        if any(d and auto for d, auto in skipping):
            continue  # the text of an unsafe autolink is the unsafe URL itself
        out.append(tok)
    return out


def _nothing(
    self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    return ""


def _alt_text(
    self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    alt = self.renderInlineAsText(tokens[idx].children or [], options, env)
    return f"<em>{Markup(nh3.clean_text(alt))}</em>" if alt else ""


class _CardMarkdown(MarkdownIt):
    def validateLink(self, url: str) -> bool:
        """Every destination parses as a link; `_drop_unsafe_links` then decides (markdown-it's
        own check leaves a refused link in the page as its source text, URL included)."""
        return True


def _parser() -> MarkdownIt:
    md = _CardMarkdown("commonmark", {"html": True}).enable(["table", "strikethrough"])
    # Parse raw HTML as HTML tokens so it can be dropped (with html off it would show as text).
    md.add_render_rule("html_block", _nothing)
    md.add_render_rule("html_inline", _nothing)
    md.add_render_rule("image", _alt_text)
    return md


_MD = _parser()


def render_card(markdown: str) -> Markup:
    """Safe HTML of a card's Markdown (see the module docstring for what is removed)."""
    tokens = _MD.parse(markdown)
    for tok in tokens:
        if tok.type == "inline" and tok.children:
            tok.children = _drop_unsafe_links(tok.children)
    html = _MD.renderer.render(tokens, _MD.options, {})
    clean = nh3.clean(
        html,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes=_SCHEMES,
        link_rel="nofollow noopener noreferrer",
        strip_comments=True,
    )
    return Markup(clean)


def blob_cid(data: bytes) -> str:
    """The CID of a blob's bytes (CIDv1, raw codec, sha2-256, base32)."""
    raw = bytes([0x01, 0x55, 0x12, 0x20]) + hashlib.sha256(data).digest()
    return "b" + base64.b32encode(raw).decode().lower().rstrip("=")


def _blob_ref_cid(blob: Any) -> str | None:
    if not isinstance(blob, Mapping):
        return None
    ref = blob.get("ref")
    link = ref.get("$link") if isinstance(ref, Mapping) else None
    return link if isinstance(link, str) else None


class BlobCards:
    """Fetches and caches blob cards (see the module docstring)."""

    #: Seconds a failed fetch is answered from memory before the PDS is asked again.
    RETRY_AFTER = 60.0

    def __init__(self, size: int = 64, timeout: float = 10.0) -> None:
        self._cache: OrderedDict[str, str] = OrderedDict()
        self._failed: dict[str, tuple[float, str]] = {}
        self._pending: dict[str, asyncio.Future[str]] = {}
        self._size = size
        self.timeout = timeout
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="atdata-card-fetch")

    def _fetch(self, pds: str, did: str, cid: str) -> str:
        status, body = get_bytes(
            f"{pds.rstrip('/')}/xrpc/com.atproto.sync.getBlob",
            params={"did": did, "cid": cid},
            timeout=self.timeout,
            max_bytes=CARD_BLOB_MAX,
            retries=1,
        )
        if status != 200:
            raise AtdataError(f"the author's PDS answered HTTP {status}")
        if blob_cid(body) != cid:
            raise AtdataError("the PDS sent bytes that do not match the blob's CID")
        return body.decode("utf-8", errors="replace")

    async def text(self, record: Mapping[str, Any], did: str, pds: str | None) -> str:
        """The Markdown of the record's ``cardBlob``; raises `AtdataError` saying why not."""
        cid = _blob_ref_cid(record.get("cardBlob"))
        if cid is None:
            raise AtdataError("the record's cardBlob is malformed")
        if cid in self._cache:
            self._cache.move_to_end(cid)
            return self._cache[cid]
        failed = self._failed.get(cid)
        if failed is not None and failed[0] > time.monotonic():
            raise AtdataError(failed[1])
        if not pds:
            raise AtdataError("the index does not know the author's PDS")
        pending = self._pending.get(cid)
        if pending is not None:
            return await asyncio.shield(pending)
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, self._fetch, pds, did, cid)
        self._pending[cid] = future
        try:
            text = await asyncio.shield(future)
        except AtdataError as exc:
            self._failed[cid] = (time.monotonic() + self.RETRY_AFTER, str(exc))
            if len(self._failed) > 10 * self._size:
                self._failed.clear()
            raise
        finally:
            self._pending.pop(cid, None)
        self._failed.pop(cid, None)
        self._cache[cid] = text
        while len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return text

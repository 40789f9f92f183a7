"""HTML built from trusted templates and untrusted values: every value is escaped unless it is
already `Markup` (produced by this module), so a record cannot inject markup into the page."""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode

__all__ = ["Markup", "attr_url", "h", "join", "render"]


class Markup(str):
    """A string that is already safe HTML (never build one from untrusted text directly)."""

    __slots__ = ()


def h(value: Any) -> Markup:
    """Escape a value for element content or a quoted attribute (quotes included)."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape("" if value is None else str(value), quote=True))


def render(template: str, /, **values: Any) -> Markup:
    """``template`` is a trusted literal with ``{name}`` fields; each value is escaped."""
    return Markup(template.format(**{k: h(v) for k, v in values.items()}))


def join(parts: Iterable[Any], sep: str = "") -> Markup:
    return Markup(sep.join(h(p) for p in parts))


def attr_url(path: str, params: Iterable[tuple[str, Any]] = ()) -> Markup:
    """A same-site URL for an href: path plus query, escaped for the attribute."""
    pairs = [(k, str(v)) for k, v in params if v not in (None, "")]
    return h(path + ("?" + urlencode(pairs) if pairs else ""))

"""SPDX license expressions (syntax only): `MIT`, `CC-BY-4.0`, `MIT OR Apache-2.0`,
`GPL-2.0-or-later WITH Classpath-exception-2.0`, `LicenseRef-custom`.

A dataset record's `license` is meant for machines (search facets, compliance checks), so a
typo such as "CC BY 4.0" or free text is refused when publishing rather than indexed as is.
The identifiers themselves are not checked against the SPDX list (it changes; LicenseRef-*
ids are anyone's).
"""

from __future__ import annotations

import re

__all__ = ["check_license"]

_TOKEN = re.compile(r"\s*(\(|\)|[A-Za-z0-9][A-Za-z0-9.\-]*(?::[A-Za-z0-9.\-]+)?\+?)")
_OPERATORS = {"AND", "OR", "WITH"}


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ValueError(f"unexpected {text[pos:].strip()[:20]!r}")
        out.append(m.group(1))
        pos = m.end()
    return out


def check_license(expr: str) -> str:
    """`expr` if it is a syntactically valid SPDX license expression, else ValueError saying why."""
    toks: list[str] = []
    pos = 0

    def ident() -> None:
        nonlocal pos
        if pos >= len(toks) or toks[pos] in _OPERATORS or toks[pos] in "()":
            raise ValueError(
                "expected a license id" + (f" at {toks[pos]!r}" if pos < len(toks) else "")
            )
        pos += 1

    def term() -> None:
        nonlocal pos
        if pos < len(toks) and toks[pos] == "(":
            pos += 1
            expression()
            if pos >= len(toks) or toks[pos] != ")":
                raise ValueError("unbalanced parenthesis")
            pos += 1
            return
        ident()
        if pos < len(toks) and toks[pos] == "WITH":
            pos += 1
            ident()

    def expression() -> None:
        nonlocal pos
        term()
        while pos < len(toks) and toks[pos] in ("AND", "OR"):
            pos += 1
            term()

    try:
        toks = _tokens(expr)
        if not toks:
            raise ValueError("empty")
        expression()
        if pos != len(toks):
            raise ValueError(f"unexpected {toks[pos]!r}")
    except ValueError as e:
        raise ValueError(
            f"license {expr!r} is not an SPDX license expression ({e}); "
            "e.g. CC-BY-4.0, MIT OR Apache-2.0, LicenseRef-my-terms"
        ) from None
    return expr

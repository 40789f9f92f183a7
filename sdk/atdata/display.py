"""Short text for people: schema field types, array shapes and byte sizes.

The CLI (`atdata get`, `inspect`, `search`) and the AppView's web pages show the same facts,
so they word them the same way through here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["dtype_text", "human_bytes", "shape_text", "type_text"]


def dtype_text(dtype: Any) -> str:
    """`<f4 (float32)`: numpy's name next to the wire string, as `|u1` alone reads poorly.

    The wire string alone when numpy does not know it (or names it the same); "" if not a string.
    """
    if not isinstance(dtype, str) or not dtype:
        return ""
    try:
        name = np.dtype(dtype).name
    except (TypeError, ValueError):
        return dtype
    return dtype if name == dtype else f"{dtype} ({name})"


def human_bytes(n: Any) -> str:
    """`1234567` -> `1.2 MB` (decimal units, as sizes are quoted elsewhere); `?` if not an int."""
    if not isinstance(n, int):
        return "?"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000:
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def shape_text(shape: Any) -> str:
    """`[224, -1, 3]` -> `(224, ?, 3)`; unknown dimensions (None, -1) read `?`.

    A string is taken as already written; anything else that is not a list or tuple is "".
    """
    if isinstance(shape, str):
        return shape
    if not isinstance(shape, list | tuple):
        return ""
    dims = ["?" if type(d) is not int or d < 0 else str(d) for d in shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def type_text(t: Any) -> str:
    """A field type of an `io.atdata.schema` record as one line, e.g. `list[str] | None`."""
    if not isinstance(t, Mapping):
        return "?"
    kind = str(t.get("kind", "?"))
    if kind in ("list", "dict") and t.get("item"):
        inner = type_text(t["item"])
        text = f"list[{inner}]" if kind == "list" else f"dict[str, {inner}]"
    elif kind == "sample":
        text = str(t.get("sample") or "sample")
    elif kind == "ndarray":
        text = "NDArray"
    else:
        text = kind
    return f"{text} | None" if t.get("optional") else text

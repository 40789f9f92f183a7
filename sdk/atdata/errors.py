"""Exceptions raised by atdata; one hierarchy so callers can catch `AtdataError`."""

from __future__ import annotations


class AtdataError(Exception):
    """Base class of every error atdata raises on purpose."""


class AtdataWarning(UserWarning):
    """Something the user should know that does not stop the work: shards that cannot be
    verified, a name that two record families both answer, code run without a pinned hash."""


class FieldTypeError(AtdataError, TypeError):
    """A class field has an annotation atdata cannot store (raised at decoration time)."""


class SampleValueError(AtdataError, ValueError):
    """A sample value breaks its field's declared type, dtype or shape."""


class DecodeError(AtdataError):
    """A shard, sample or field could not be decoded; names where it happened."""

    def __init__(
        self,
        message: str,
        *,
        shard: str | None = None,
        key: str | None = None,
        field: str | None = None,
    ) -> None:
        self.shard, self.key, self.field = shard, key, field
        self.reason = message
        where = ", ".join(
            f"{label} {value!r}"
            for label, value in (("shard", shard), ("sample", key), ("field", field))
            if value is not None
        )
        super().__init__(f"{message} ({where})" if where else message)


class ShardIntegrityError(DecodeError):
    """A shard's bytes do not match the size or sha256 its record promises."""


class LensError(AtdataError):
    """No lens (or chain of lenses) connects two sample types."""


class LexiconError(AtdataError, ValueError):
    """A record or XRPC parameter set does not satisfy its lexicon."""

    nsid: str | None = None  # the lexicon or record type at fault, when known
    path: str | None = None  # where in the document or record ("" for the whole)


class ResolutionError(AtdataError):
    """An at:// URI, DID, handle or record could not be resolved."""


class UnsafeURLError(AtdataError, ValueError):
    """A URL taken from untrusted data was refused (scheme, private address, size)."""


class SourceError(AtdataError, OSError):
    """A shard source could not be found, listed or fetched (after retries)."""


class SchemaError(AtdataError, ValueError):
    """A schema record, name or version is invalid, or cannot be turned into a type."""


class InvalidVersion(AtdataError, ValueError):
    """A dataset version that is not a semantic version (MAJOR.MINOR.PATCH)."""


class AppViewError(AtdataError):
    """An AppView answered a query with an XRPC error (``error`` is its name, ``status`` HTTP)."""

    def __init__(self, message: str, *, status: int | None = None, error: str | None = None):
        self.status, self.error = status, error
        super().__init__(message)


class LoaderError(AtdataError):
    """The training loader cannot go on: a worker died or failed, or a resume state does not fit."""


class MissingExtraError(AtdataError, ImportError):
    """An optional feature was used without its extra installed (the message says which)."""


def require_extra(module: str, extra: str, feature: str) -> None:
    """Raise :class:`MissingExtraError` naming ``pip install 'atdata[extra]'`` unless importable."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingExtraError(
            f"{feature} needs {module!r}, which is not installed: pip install 'atdata[{extra}]'"
        )


class ShardTaskError(AtdataError):
    """A task over a shard (``map_shards``, a parallel write) failed: names shard and sample."""

    def __init__(self, message: str, shard: str | None = None, key: str | None = None) -> None:
        self.shard, self.key = shard, key
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:  # keeps shard/key across process boundaries
        return (type(self), (str(self), self.shard, self.key))


def describe_xrpc_error(e: Exception) -> str:
    """The XRPC error name and message of an atproto exception, when it has them; else its
    text, or the first cause in its chain that has one."""
    resp = getattr(e, "response", None)
    content = getattr(resp, "content", None)
    err = getattr(content, "error", None)
    msg = getattr(content, "message", None)
    if err or msg:
        return f"{err or 'Error'}: {msg or ''}".strip()
    text = str(e).strip()
    if text:
        return text
    # atproto's NetworkError has no text of its own: the cause (e.g. connection refused) is
    # in the chain of exceptions it was raised from.
    cause, seen = e.__cause__ or e.__context__, {id(e)}
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if str(cause).strip():
            return f"{type(e).__name__} ({type(cause).__name__}: {str(cause).strip()})"
        cause = cause.__cause__ or cause.__context__
    return type(e).__name__

"""Shard sources for what records point at: guarded HTTP(S), PDS blobs, and S3 with the
endpoint trust rule. Both record families (ours and the peer network's) read through these.

Every URL taken from a record or a DID document goes through the network guard; the user's
AWS credentials go only to S3 endpoints the user trusts (no endpoint means AWS itself).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

from .._sources import HttpShard, shared_http_client
from ..errors import SourceError
from .netguard import check_url, guarded_client

__all__ = ["BlobShard", "GuardedHttpShard", "s3_client_options", "trusted_s3_endpoints"]

log = logging.getLogger(__name__)


class GuardedHttpShard(HttpShard):
    """An `HttpShard` whose requests (and redirects) pass the network guard.

    Only the client differs: the URL is checked up front, and the process's shared guarded
    client re-checks every request and redirect (no private addresses unless allowed).
    Streaming, resume and sha256/size verification are `HttpShard`'s.
    """

    def __init__(self, url: str, *, allow_private: bool | None = None, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.allow_private = allow_private
        check_url(url, allow_private=allow_private)

    def _client(self) -> httpx.Client:
        allow, timeout = self.allow_private, self.timeout
        return shared_http_client(
            ("guarded", allow, timeout),
            lambda: guarded_client(allow_private=allow, timeout=timeout),
        )


_GONE_ERRORS = frozenset(("BlobNotFound", "RepoNotFound", "RepoDeactivated", "RepoTakendown"))
"""XRPC errors of getBlob meaning the blob or its repository is no longer served."""


class BlobShard(GuardedHttpShard):
    """A shard stored as a PDS blob of the dataset record `dataset_uri`.

    A PDS drops a blob with the last record that references it, so "blob not found" while
    reading a dataset resolved earlier means the dataset was deleted: said so, naming it.
    """

    def __init__(self, url: str, *, dataset_uri: str | None = None, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.dataset_uri = dataset_uri

    def refused(self, status: int, body: bytes) -> SourceError:
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        error = answer.get("error") if isinstance(answer, dict) else None
        message = answer.get("message") if isinstance(answer, dict) else None
        said = f"{error}: {message}" if error and message else (error or message or "")
        gone = error in _GONE_ERRORS or (
            status in (400, 404) and "not found" in str(message or "").lower()
        )
        if not gone:
            return super().refused(status, body)
        return SourceError(
            f"{self.dataset_uri or 'this dataset'}: the dataset was deleted (or its blobs are "
            f"gone): its PDS answered HTTP {status} {said} for {self.url}"
        )


def trusted_s3_endpoints(extra: Sequence[str] = ()) -> set[str]:
    """Endpoints that may receive the user's AWS credentials.

    The user's own configured endpoint (`AWS_ENDPOINT_URL[_S3]`), anything in
    `ATDATA_TRUSTED_S3_ENDPOINTS` (comma-separated) and `extra`. Compared by scheme+host+port.
    """
    items = [
        os.environ.get("AWS_ENDPOINT_URL_S3", ""),
        os.environ.get("AWS_ENDPOINT_URL", ""),
        *os.environ.get("ATDATA_TRUSTED_S3_ENDPOINTS", "").split(","),
        *extra,
    ]
    return {_origin(e) for e in items if e.strip()}


def _origin(url: str) -> str:
    p = urlsplit(url.strip())
    port = p.port or (443 if p.scheme == "https" else 80)
    return f"{p.scheme}://{(p.hostname or '').lower()}:{port}"


def s3_client_options(
    endpoint: str | None,
    region: str | None,
    *,
    trusted_endpoints: Sequence[str] = (),
    s3_client_kwargs: Mapping[str, Any] | None = None,
    allow_private: bool | None = None,
) -> dict[str, Any]:
    """`boto3.client("s3", ...)` keywords for a bucket a record names at `endpoint`/`region`.

    The user's credentials (`s3_client_kwargs` or the AWS environment) go along only when
    `endpoint` is absent (AWS) or trusted (`trusted_s3_endpoints`); any other endpoint is
    checked by the network guard and read anonymously.
    """
    from botocore import UNSIGNED
    from botocore.config import Config

    trusted = not endpoint or _origin(endpoint) in trusted_s3_endpoints(trusted_endpoints)
    kwargs: dict[str, Any] = dict(s3_client_kwargs or {}) if trusted else {}
    config = Config()
    if endpoint:
        check_url(endpoint, allow_private=allow_private)
        kwargs["endpoint_url"] = endpoint
        config = Config(s3={"addressing_style": "path"})  # S3-compatible services
    if region:
        kwargs.setdefault("region_name", region)
    if not trusted:
        # A record-supplied endpoint gets anonymous requests, never the user's keys.
        config = config.merge(Config(signature_version=UNSIGNED))
        log.info("S3 endpoint %s is not trusted: reading anonymously", endpoint)
    if "config" in kwargs:
        config = config.merge(kwargs["config"])
    kwargs["config"] = config
    return kwargs

"""Where parallel writers put shards, and how a shard becomes visible only when complete.

A task writes its shard under a temporary name of its own (fresh per attempt) and the shard
gets its final name in one step: ``os.replace`` on a filesystem, a finished upload (or a
server-side copy) on S3. A killed or failed attempt therefore never leaves a partial shard
under a final name, and a retry rewrites from scratch rather than appending.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ._sources import _split_s3, s3_client
from .writer import ShardInfo, write_samples

__all__ = ["ShardTarget"]

_UNLIMITED = 1 << 62


class ShardTarget:
    """A local ``%``-pattern (``out/part-%06d.tar``) or an ``s3://bucket/prefix``.

    Under an S3 prefix the shard keys are ``<prefix>/part-%06d.tar``; ``client_kwargs`` (the
    endpoint, credentials) go to boto3 in whichever process uploads.
    """

    def __init__(self, out: str | os.PathLike[str], client_kwargs: Mapping[str, Any] | None = None):
        out = os.fspath(out)
        self.client_kwargs = dict(client_kwargs or {})
        self.token = uuid.uuid4().hex[:16]  # this job's: names its partial files
        self.s3: tuple[str, str] | None = None
        if out.startswith("s3://"):
            bucket, prefix = _split_s3(out)
            prefix = prefix.rstrip("/")
            self.s3 = (bucket, prefix)
            self.pattern = f"s3://{bucket}/{prefix + '/' if prefix else ''}part-%06d.tar"
        else:
            if "%" not in out:
                raise ValueError(f"{out!r} needs a %-format for the shard index, e.g. -%06d")
            self.pattern = out
            parent = os.path.dirname(out % 0)
            if parent:
                os.makedirs(parent, exist_ok=True)

    def name(self, index: int) -> str:
        return self.pattern % index

    # -- staging: one place per write job, removed when the job ends ---------------------------

    def staging(self, token: str) -> str:
        """The job's staging folder (local) or key prefix (S3 ``s3://bucket/prefix/.…``)."""
        if self.s3 is None:
            return os.path.join(
                os.path.dirname(self.pattern % 0) or ".", f".atdata-staging-{token}"
            )
        bucket, prefix = self.s3
        return f"s3://{bucket}/{prefix + '/' if prefix else ''}.atdata-staging-{token}"

    def _local_scratch(self) -> str:
        """Where a task writes before publishing: next to the target, or a temp folder (S3)."""
        if self.s3 is None:
            return os.path.dirname(self.pattern % 0) or "."
        return tempfile.gettempdir()

    def write_staged(
        self, samples: Iterable[Any], staging: str, tag: str, maxcount: int, maxsize: int
    ) -> list[ShardInfo]:
        """Write ``samples`` as shards named ``<staging>/<tag>-<attempt>-<n>.tar``."""
        attempt = uuid.uuid4().hex[:12]
        if self.s3 is None:
            os.makedirs(staging, exist_ok=True)
            return write_samples(
                samples,
                os.path.join(staging, f"{tag}-{attempt}-%06d.tar"),
                maxcount=maxcount,
                maxsize=maxsize,
                progress=False,
            )
        scratch = tempfile.mkdtemp(prefix="atdata-write-")
        try:
            infos = write_samples(
                samples,
                os.path.join(scratch, f"{tag}-{attempt}-%06d.tar"),
                maxcount=maxcount,
                maxsize=maxsize,
                progress=False,
            )
            client = s3_client(self.client_kwargs)
            staged = []
            for info in infos:
                url = f"{staging}/{os.path.basename(info.path)}"
                bucket, key = _split_s3(url)
                client.upload_file(info.path, bucket, key)
                staged.append(dataclasses.replace(info, path=url))
            return staged
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def promote(self, staged: ShardInfo, index: int) -> ShardInfo:
        """Give a staged shard its final name ``pattern % index``."""
        final = self.name(index)
        if self.s3 is None:
            os.replace(staged.path, final)
        else:
            client = s3_client(self.client_kwargs)
            src_bucket, src_key = _split_s3(staged.path)
            bucket, key = _split_s3(final)
            client.copy_object(
                Bucket=bucket, Key=key, CopySource={"Bucket": src_bucket, "Key": src_key}
            )
            client.delete_object(Bucket=src_bucket, Key=src_key)
        return dataclasses.replace(staged, path=final)

    def remove_staging(self, staging: str) -> None:
        """Drop whatever failed or killed attempts left in the staging area."""
        if self.s3 is None:
            shutil.rmtree(staging, ignore_errors=True)
            return
        client = s3_client(self.client_kwargs)
        bucket, prefix = _split_s3(staging + "/")
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                client.delete_object(Bucket=bucket, Key=obj["Key"])

    # -- one output shard per task, final name known in the task (map_shards) ------------------

    def write_one(
        self, samples: Iterable[Any], index: int, key: Callable[[int, Any], str] | None = None
    ) -> ShardInfo | None:
        """Write ``samples`` as the shard ``pattern % index``, or nothing when there are none."""
        scratch = self._local_scratch()
        tmp_pattern = os.path.join(
            scratch, f".atdata-partial-{self.token}-{uuid.uuid4().hex[:12]}-%d.tar"
        )
        try:
            infos = write_samples(
                samples,
                tmp_pattern,
                maxcount=_UNLIMITED,
                maxsize=_UNLIMITED,
                key=key,
                progress=False,
            )
            if not infos:
                return None
            (info,) = infos
            final = self.name(index)
            if self.s3 is None:
                os.replace(info.path, final)
            else:
                bucket, object_key = _split_s3(final)
                s3_client(self.client_kwargs).upload_file(info.path, bucket, object_key)
            return dataclasses.replace(info, path=final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp_pattern % 0)

    def remove_partials(self) -> None:
        """This job's partial files left by killed tasks (their process could not clean up)."""
        pattern = os.path.join(self._local_scratch(), f".atdata-partial-{self.token}-*.tar")
        for path in glob.glob(pattern):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)

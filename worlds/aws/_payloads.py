"""Payloads over the size threshold go to S3; DynamoDB items and SQS messages hold a reference.

A payload attribute is stored as ``<name>`` (binary, inline) or ``<name>3`` (the S3 key). Reads
follow the reference, so callers never see where a payload lived.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from durable._errors import RunDataLost, WorldError
from worlds.aws._config import ACCOUNT, resolve_bucket
from worlds.aws._errors import error_code, translate

EXPIRY = (
    "(a run's events, input and S3 payloads are kept max_run_days + retention_days after they "
    "are written; `durable bootstrap --max-run-days N` keeps them longer)"
)
"""Why a run's stored data may be gone, for messages that report it."""


class PayloadStore:
    """Puts large payloads into the bucket under ``<prefix>/payloads/<run id>/``."""

    def __init__(
        self, s3: Any, bucket: str, prefix: str, threshold: int, account: Callable[[], str]
    ) -> None:
        self._s3 = s3
        self._named = bucket
        self._resolved = None if ACCOUNT in bucket else bucket
        self._account = account
        self._prefix = prefix
        self.threshold = threshold

    @property
    def bucket(self) -> str:
        """The bucket's name; ``{account}`` in it is asked of STS at the first use.

        Raises:
            WorldError: the account id could not be found out.
        """
        if self._resolved is None:
            # Resolved on demand: runs whose payloads all fit inline never need the call.
            try:
                account = self._account()
            except WorldError as exc:
                raise WorldError(
                    f"cannot name the payload bucket {self._named}: {exc} To skip this look-up, "
                    f"name the bucket: aws://?prefix={self._prefix}&bucket=NAME.",
                    transient=exc.transient,
                ) from exc
            self._resolved = resolve_bucket(self._named, account)
        return self._resolved

    def key_prefix(self, run_id: str) -> str:
        """Where a run's payloads live (so they can be listed and removed with it)."""
        return f"{self._prefix}/payloads/{run_id}/"

    def attr(self, item: dict[str, Any], name: str, run_id: str, value: bytes | None) -> None:
        """Set payload attribute ``name`` on ``item``: inline when small, else in S3."""
        if value is None:
            return
        if len(value) <= self.threshold:
            item[name] = {"B": value}
            return
        key = f"{self.key_prefix(run_id)}{uuid.uuid4().hex}"
        bucket = self.bucket
        try:
            self._s3.put_object(Bucket=bucket, Key=key, Body=value)
        except Exception as exc:
            doing = f"storing a {len(value)}-byte payload of run {run_id} in s3://{bucket}"
            raise translate(exc, doing) from exc
        item[name + "3"] = {"S": key}

    def read(self, item: dict[str, Any], name: str, run_id: str | None = None) -> bytes | None:
        """The payload attribute ``name`` of ``item``, wherever it is stored.

        Raises:
            RunDataLost: it is stored in S3 and the object is gone (expired, deleted).
        """
        inline = item.get(name)
        if inline is not None:
            return bytes(inline["B"])
        ref = item.get(name + "3")
        if ref is None:
            return None
        return self._get(ref["S"], run_id)

    def loader(self, item: dict[str, Any], name: str, run_id: str) -> Callable[[], bytes | None]:
        """Reads payload attribute ``name`` of ``item`` when called (see ``read``)."""
        return partial(self.read, item, name, run_id)

    def prefetch(self, items: Iterable[dict[str, Any]], name: str) -> dict[str, bytes]:
        """Fetch every S3-stored payload of ``items`` at once (a log with many large steps)."""
        keys = [item[name + "3"]["S"] for item in items if name + "3" in item]
        if len(keys) <= 1:
            return {key: self._get(key) for key in keys}
        with ThreadPoolExecutor(min(16, len(keys))) as pool:
            return dict(zip(keys, pool.map(self._get, keys), strict=True))

    def _get(self, key: str, run_id: str | None = None) -> bytes:
        bucket = self.bucket
        try:
            body = self._s3.get_object(Bucket=bucket, Key=key)["Body"]
            return bytes(body.read())
        except Exception as exc:
            if error_code(exc) in ("NoSuchKey", "404"):
                owner = run_id or self._run_of(key)
                of_run = f" of run {owner}" if owner else ""
                raise RunDataLost(
                    f"payload s3://{bucket}/{key}{of_run} is missing: it likely expired "
                    f"{EXPIRY}, or was deleted. The run cannot go on."
                ) from exc
            raise translate(exc, f"reading payload s3://{bucket}/{key}") from exc

    def _run_of(self, key: str) -> str | None:
        head = f"{self._prefix}/payloads/"
        if not key.startswith(head):
            return None
        return key[len(head) :].rpartition("/")[0] or None

    def delete_run(self, run_id: str) -> None:
        """Remove every payload of a run."""
        prefix, bucket = self.key_prefix(run_id), self.bucket
        try:
            pages = self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=prefix
            )
            for page in pages:
                objects = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if objects:
                    self._s3.delete_objects(Bucket=bucket, Delete={"Objects": objects})
        except Exception as exc:
            doing = f"removing the payloads of run {run_id} from s3://{bucket}"
            raise translate(exc, doing) from exc

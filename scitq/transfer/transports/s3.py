"""``s3://bucket/key`` through boto3.

The endpoint, region and credentials come from `scitq.config.S3Settings`; whatever is
left unset there is resolved by boto3 itself (``AWS_*`` variables, ``~/.aws/config``
and ``~/.aws/credentials``, instance roles). They are never taken from a URI and never
logged. Files above ``multipart_threshold`` move in parts (`TransferConfig`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig

from scitq.config import TransferSettings
from scitq.errors import TransferError
from scitq.transfer.disk import atomic_path, safe_join, walk_files
from scitq.transfer.registry import Progress, RemoteEntry
from scitq.transfer.uri import Uri

#: Error codes that trying again cannot fix.
_PERMANENT_CODES = {
    "404": "not found (no such object or bucket)",
    "NoSuchKey": "no such object",
    "NoSuchBucket": "no such bucket",
    "403": "access denied (check the S3 credentials)",
    "AccessDenied": "access denied (check the S3 credentials)",
    "InvalidAccessKeyId": "the S3 access key is not recognised",
    "SignatureDoesNotMatch": "the S3 secret key does not match the access key",
    "InvalidBucketName": "invalid bucket name",
}


def translate(exc: Exception, uri: Uri, direction: str) -> TransferError:
    """A `TransferError` for a boto3/botocore exception (credentials never included)."""
    if isinstance(exc, TransferError):
        return exc
    if isinstance(exc, S3UploadFailedError) and isinstance(
        exc.__context__, botocore.exceptions.ClientError
    ):
        exc = exc.__context__
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        if code in _PERMANENT_CODES:
            return TransferError(
                uri.text, _PERMANENT_CODES[code], direction=direction, retryable=False
            )
        message = error.get("Message") or code
        return TransferError(uri.text, f"S3 error {code}: {message}", direction=direction)
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return TransferError(
            uri.text,
            "no S3 credentials (set [transfer.s3] or the AWS environment; docs/transfer.md)",
            direction=direction,
            retryable=False,
        )
    if isinstance(exc, botocore.exceptions.EndpointConnectionError | ConnectionError):
        return TransferError(uri.text, f"cannot reach the S3 endpoint: {exc}", direction=direction)
    if isinstance(exc, botocore.exceptions.BotoCoreError | S3UploadFailedError | OSError):
        return TransferError(uri.text, str(exc), direction=direction)
    return TransferError(uri.text, f"{type(exc).__name__}: {exc}", direction=direction)


class S3Transport:
    """The ``s3`` scheme (one boto3 client, shared by threads)."""

    def __init__(self, settings: TransferSettings) -> None:
        s3 = settings.s3
        session = boto3.session.Session(
            profile_name=s3.profile,
            aws_access_key_id=s3.access_key_id,
            aws_secret_access_key=s3.secret_access_key,
            region_name=s3.region,
        )
        self._client: Any = session.client(
            "s3",
            endpoint_url=s3.endpoint_url,
            config=botocore.config.Config(
                connect_timeout=settings.connect_timeout_seconds,
                read_timeout=settings.read_timeout_seconds,
                # scitq retries with its own back-off; boto3 only smooths blips
                retries={"max_attempts": 2, "mode": "standard"},
                max_pool_connections=max(10, settings.parallel * s3.max_concurrency),
            ),
        )
        self._transfer_config = TransferConfig(
            multipart_threshold=s3.multipart_threshold,
            multipart_chunksize=s3.multipart_chunksize,
            max_concurrency=s3.max_concurrency,
        )

    @staticmethod
    def _split(uri: Uri) -> tuple[str, str]:
        return uri.authority, uri.path.lstrip("/")

    def list(self, uri: Uri, recursive: bool = False) -> Iterator[RemoteEntry]:
        bucket, key = self._split(uri)
        try:
            if not key:  # s3://bucket: the bucket's root folder
                yield from self._list_prefix(bucket, "", recursive)
                return
            if not uri.is_folder:
                head = self._client.head_object(Bucket=bucket, Key=key)
                yield RemoteEntry(
                    uri.name,
                    int(head["ContentLength"]),
                    _md5(head.get("ETag")),
                    head["LastModified"].timestamp(),
                )
                return
            yield from self._list_prefix(bucket, key, recursive)
        except Exception as exc:
            raise translate(exc, uri, "list") from exc

    def _list_prefix(self, bucket: str, prefix: str, recursive: bool) -> Iterator[RemoteEntry]:
        arguments: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        if not recursive:
            arguments["Delimiter"] = "/"
        for page in self._client.get_paginator("list_objects_v2").paginate(**arguments):
            for common in page.get("CommonPrefixes", ()):
                name = common["Prefix"][len(prefix) :].rstrip("/")
                yield RemoteEntry(name, 0, is_dir=True)
            for item in page.get("Contents", ()):
                relative = item["Key"][len(prefix) :]
                if not relative or relative.endswith("/"):
                    continue  # folder markers made by some tools
                yield RemoteEntry(
                    relative,
                    int(item["Size"]),
                    _md5(item.get("ETag")),
                    item["LastModified"].timestamp(),
                )

    def download(self, uri: Uri, dest_dir: Path, progress: Progress | None = None) -> int:
        bucket, key = self._split(uri)
        try:
            if not uri.is_folder:
                return self._get(bucket, key, dest_dir / uri.name, progress)
            entries = list(self._list_prefix(bucket, key, recursive=True))
            if not entries:
                raise TransferError(uri.text, "no object under this prefix", retryable=False)
            dest_dir.mkdir(parents=True, exist_ok=True)
            return sum(
                self._get(bucket, key + e.path, safe_join(dest_dir, e.path, uri.text), progress)
                for e in entries
            )
        except Exception as exc:
            raise translate(exc, uri, "download") from exc

    def _get(self, bucket: str, key: str, target: Path, progress: Progress | None) -> int:
        with atomic_path(target) as temporary:
            self._client.download_file(
                bucket, key, str(temporary), Callback=progress, Config=self._transfer_config
            )
            return temporary.stat().st_size

    def upload(self, src: Path, uri: Uri, progress: Progress | None = None) -> int:
        bucket, key = self._split(uri)
        try:
            if src.is_dir():
                prefix = key if not key or key.endswith("/") else key + "/"
                return sum(
                    self._put(file, bucket, prefix + relative, progress)
                    for file, relative in walk_files(src)
                )
            if uri.is_folder:
                key += src.name
            return self._put(src, bucket, key, progress)
        except Exception as exc:
            raise translate(exc, uri, "upload") from exc

    def _put(self, src: Path, bucket: str, key: str, progress: Progress | None) -> int:
        # an S3 object appears only once complete (multipart uploads included)
        self._client.upload_file(
            str(src), bucket, key, Callback=progress, Config=self._transfer_config
        )
        return src.stat().st_size

    def delete(self, uri: Uri) -> tuple[str, ...]:
        """Delete the object ``uri``, or every object below the folder ``uri``; returns the
        relative paths deleted (a missing object is an error, an empty folder is not)."""
        bucket, key = self._split(uri)
        try:
            if key and not uri.is_folder:
                self._client.head_object(Bucket=bucket, Key=key)
                self._client.delete_object(Bucket=bucket, Key=key)
                return (uri.name,)
            entries = tuple(e.path for e in self._list_prefix(bucket, key, recursive=True))
            for start in range(0, len(entries), 1000):  # the most one request may delete
                chunk = [{"Key": key + path} for path in entries[start : start + 1000]]
                answer = self._client.delete_objects(Bucket=bucket, Delete={"Objects": chunk})
                for error in answer.get("Errors", ()):
                    raise TransferError(
                        uri.child(error["Key"][len(key) :]).text,
                        error.get("Message") or error.get("Code", "not deleted"),
                        direction="delete",
                    )
            return entries
        except Exception as exc:
            raise translate(exc, uri, "delete") from exc


def _md5(etag: str | None) -> str | None:
    """The MD5 of a single-part object (multipart ETags are not MD5s)."""
    if not etag:
        return None
    value = etag.strip('"')
    return value if len(value) == 32 and "-" not in value else None

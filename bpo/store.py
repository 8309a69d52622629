"""The artifact store: every input, intermediate and deliverable kept in S3 (or an S3-compatible store)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from bpo.settings import Settings


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    sha256: str


class ArtifactStore:
    """A small interface over one bucket and prefix; the client is made on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.bucket = settings.s3_bucket
        self.prefix = settings.s3_prefix.strip("/")

    @cached_property
    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        s = self.settings
        return boto3.client(
            "s3",
            endpoint_url=s.s3_endpoint_url,
            region_name=s.s3_region,
            aws_access_key_id=s.s3_access_key_id,
            aws_secret_access_key=s.s3_secret_access_key.get_secret_value() if s.s3_secret_access_key else None,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5, "mode": "standard"},
                          max_pool_connections=32,  # one client serves a process's threads
                          connect_timeout=10, read_timeout=120),
        )

    def key(self, *parts: str) -> str:
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def run_prefix(self, process: str, flow_run_id: str, started: datetime) -> str:
        return self.key("runs", process, f"{started:%Y/%m/%d}", flow_run_id)

    def _sse(self) -> dict[str, str]:
        s = self.settings
        if not s.s3_sse:
            return {}
        extra: dict[str, str] = {"ServerSideEncryption": s.s3_sse}
        if s.s3_sse == "aws:kms" and s.s3_sse_kms_key_id:
            extra["SSEKMSKeyId"] = s.s3_sse_kms_key_id
        return extra

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> StoredObject:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type, **self._sse())
        return StoredObject(key, len(data), hashlib.sha256(data).hexdigest())

    def get_bytes(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def list_keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
        return sorted(keys)

    def list_dirs(self, prefix: str) -> list[str]:
        """The immediate 'folders' under ``prefix`` (which ends with a slash)."""
        out: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix,
                                                                           Delimiter="/"):
            out.extend(p["Prefix"] for p in page.get("CommonPrefixes", []))
        return sorted(out)

    def newest_modified(self, prefix: str) -> datetime | None:
        """When the newest object under ``prefix`` was written, or None if there is none."""
        newest = None
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                newest = obj["LastModified"] if newest is None else max(newest, obj["LastModified"])
        return newest

    def presigned_url(self, key: str, hours: float) -> str:
        """A link that reads ``key`` without credentials until it expires (S3's limit: 7 days)."""
        return str(self.client.generate_presigned_url("get_object", Params={"Bucket": self.bucket, "Key": key},
                                                      ExpiresIn=int(hours * 3600)))

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)

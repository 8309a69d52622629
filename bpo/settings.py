"""One Settings class for the whole product; every value can be set as ``BPO_<NAME>``.

Values come from the environment, then ``.env``, then ``.bpo/stack.env`` (written by
``bpo stack up`` with the local stack's generated S3 credentials).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PLACEHOLDERS = {"changeme", "change-me", "secret", "password", "xxx", "todo", "your-secret-here"}


def _env_files() -> tuple[str, ...]:
    home = Path(os.environ.get("BPO_HOME", ".bpo"))
    return (".env", str(home / "stack.env"))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BPO_", env_file=_env_files(), extra="ignore")

    # local data folder: service data, pid and log files, SQLite databases
    home: Path = Path(".bpo")
    # ops database (review items, runs, audit); default SQLite under home
    ops_database_url: str | None = None
    # where data-entry processes load their records; default SQLite under home
    target_database_url: str | None = None

    s3_bucket: str = "bpo-artifacts"
    s3_prefix: str = "bpo"
    # S3-compatible endpoint; None means AWS S3
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    # explicit keys (the local stack's); None means the standard AWS credential chain
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    # server-side encryption requested on every put: "" (none), "AES256" or "aws:kms"
    s3_sse: Literal["", "AES256", "aws:kms"] = ""
    s3_sse_kms_key_id: str | None = None

    prefect_api_url: str = "http://127.0.0.1:4200/api"
    prefect_port: int = 4200
    # the review console (bpo console; bpo stack up starts it) on 127.0.0.1
    console_port: int = 8700
    # where `bpo review` finds the console's API when it has a token; None means http://127.0.0.1:<console_port>
    console_url: str | None = None
    # an API token (`bpo users token NAME`): with it `bpo review` works through the console, as that user
    token: SecretStr | None = None
    s3_port: int = 8333
    # the mail server notifications by email go through (bpo.notify); None: email notifications fail, logged
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str = "nonvoice-bpo@localhost"
    smtp_starttls: bool = False
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    # named client databases for the cleanup (JSON: {"crm": "postgresql+psycopg://…"}); a run names one instead
    # of a URL, so that the password stays out of parameters, logs and the ops database
    connections: dict[str, SecretStr] = {}
    work_pool: str = "bpo-process"
    result_storage_block: str = "bpo-results"

    # how often a paused run checks whether its review was resolved
    review_poll_seconds: int = 1
    # how long one pause of a waiting run lasts before it counts its open items and pauses again: the
    # review service's timeouts (escalate, reject) decide how long a review may take, never this timer
    review_pause_seconds: int = 86_400
    # an inbox batch is taken once its newest file is this old (its upload has finished)
    inbox_settle_seconds: int = 30
    # records per chunk (one task run per chunk, one transaction per chunk on load)
    chunk_rows: int = 200_000
    # a workbook (a zip) whose parts declare more bytes than this, inflated, is refused before it is opened
    max_decompressed_bytes: int = 500_000_000
    # worker processes for the CPU-bound steps (intake, normalize, validate); 0 means one per CPU
    workers: int = 0
    # folders searched, in order, for process specs (<name>.yaml) and suites (<suite>.json), separated
    # like PATH; empty means the shipped flows/specs and expectations
    process_dirs: Annotated[list[Path], NoDecode] = []
    # the key that signs gate links (approval by a named person without an account); None: a random key
    # made once into <home>/link.key, so that links outlive a restart of the console
    link_secret: SecretStr | None = None

    @field_validator("process_dirs", mode="before")
    @classmethod
    def _split_dirs(cls, v: object) -> object:
        if isinstance(v, str):
            return [Path(part) for part in v.split(os.pathsep) if part.strip()]
        return v

    @field_validator("process_dirs")
    @classmethod
    def _dirs_exist(cls, v: list[Path]) -> list[Path]:
        missing = [str(p) for p in v if not p.is_dir()]
        if missing:
            raise ValueError(f"BPO_PROCESS_DIRS: not a folder: {', '.join(missing)}")
        return [p.resolve() for p in v]

    @field_validator("s3_secret_access_key")
    @classmethod
    def _no_placeholder(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and v.get_secret_value().strip().lower() in PLACEHOLDERS | {""}:
            raise ValueError("BPO_S3_SECRET_ACCESS_KEY is a placeholder; set the real key or unset it")
        return v

    @field_validator("token")
    @classmethod
    def _blank_is_none(cls, v: SecretStr | None) -> SecretStr | None:
        # BPO_TOKEN= (set but empty) means no token, as if it were unset
        return v if v is not None and v.get_secret_value().strip() else None

    @field_validator("link_secret")
    @classmethod
    def _strong_link_secret(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None:
            secret = v.get_secret_value().strip()
            if secret.lower() in PLACEHOLDERS or len(secret) < 32:
                raise ValueError("BPO_LINK_SECRET must be a random value of at least 32 characters "
                                 "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`), or unset")
        return v

    @model_validator(mode="after")
    def _defaults(self) -> Settings:
        if self.console_url is None:
            self.console_url = f"http://127.0.0.1:{self.console_port}"
        if self.ops_database_url is None:
            self.ops_database_url = f"sqlite:///{(self.home / 'ops.db').resolve()}"
        if self.target_database_url is None:
            self.target_database_url = f"sqlite:///{(self.home / 'target.db').resolve()}"
        if bool(self.s3_access_key_id) != bool(self.s3_secret_access_key):
            raise ValueError("set both BPO_S3_ACCESS_KEY_ID and BPO_S3_SECRET_ACCESS_KEY, or neither")
        if self.s3_sse == "aws:kms" and not self.s3_sse_kms_key_id:
            raise ValueError("BPO_S3_SSE=aws:kms needs BPO_S3_SSE_KMS_KEY_ID")
        return self

    @property
    def prefect_ui_url(self) -> str:
        return self.prefect_api_url.removesuffix("/api")


_given: Settings | None = None


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once (or the ones ``use_settings`` gave)."""
    return _given or Settings()


def use_settings(settings: Settings) -> None:
    """Make ``settings`` this process's settings: a worker process takes its flow's."""
    global _given
    _given = settings
    get_settings.cache_clear()

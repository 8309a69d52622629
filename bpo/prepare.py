"""Prepare one chunk: normalize its raw records, number them batch-wide, check the row-local expectations."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pyarrow as pa

from bpo.normalizers import normalize_frame
from bpo.quality import ROW, Checked, check_part
from bpo.run import Part, RunContext, get_store, put_parquet_table, read_parquet
from bpo.spec import ProcessSpec


def _normalized_key(raw_key: str) -> str:
    return raw_key.replace("/records/raw/", "/records/normalized/")


def _normalize(spec: ProcessSpec, file: str, raw_key: str, rows: int, row_offset: int,
               puts: ThreadPoolExecutor) -> tuple[pd.DataFrame, Callable[[], Part]]:
    """Normalize one chunk of raw records, numbered batch-wide so every later check maps back to a record.

    The normalized records and their issues are uploaded on ``puts``, beside what the caller does next;
    the second value waits for both uploads and returns the stored part.
    """
    store = get_store()
    raw = read_parquet(store, raw_key)
    raw.index = pd.RangeIndex(row_offset, row_offset + len(raw))
    result = normalize_frame(raw, spec)
    data = result.data.assign(**{ROW: raw.index.to_numpy()})
    issues = result.issues.astype({"row": "int64"})
    normalized = _normalized_key(raw_key)
    uploads = [puts.submit(put_parquet_table, store, key, pa.Table.from_pandas(frame, preserve_index=False))
               for key, frame in [(normalized, data), (normalized.replace(".parquet", ".issues.parquet"), issues)]]

    def stored() -> Part:
        objects = [u.result() for u in uploads]
        return Part(file=file, raw=raw_key, normalized=objects[0].key, issues=objects[1].key, rows=rows,
                    objects=objects)

    return data, stored


def prepare_part(run: RunContext, spec: ProcessSpec, file: str, raw_key: str, rows: int,
                 row_offset: int) -> tuple[Part, Checked]:
    """Normalize one chunk, then validate it against the suite's row-local expectations while it is at hand
    (and while the normalized chunk is being uploaded)."""
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="bpo-prepare-put") as puts:
        data, stored = _normalize(spec, file, raw_key, rows, row_offset, puts)
        checked = check_part(run, spec, _normalized_key(raw_key), data)
        return stored(), checked


def normalize_chunk(run: RunContext, spec: ProcessSpec, file: str, raw_key: str, rows: int, row_offset: int) -> Part:
    """The normalizing half of ``prepare_part``, for a step whose checks run in another process (they read
    the part from S3)."""
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="bpo-prepare-put") as puts:
        return _normalize(spec, file, raw_key, rows, row_offset, puts)[1]()


def check_stored_part(run: RunContext, spec: ProcessSpec, part: Part) -> Checked:
    """Validate one normalized chunk, as stored, against the row-local expectations (as ``prepare_part`` does)."""
    return check_part(run, spec, part.normalized, read_parquet(get_store(), part.normalized))

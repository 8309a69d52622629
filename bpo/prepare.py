"""Prepare one chunk: normalize its raw records, number them batch-wide, check the row-local expectations."""

from __future__ import annotations

import pandas as pd

from bpo.normalizers import normalize_frame
from bpo.quality import ROW, Checked, check_part
from bpo.run import Part, RunContext, get_store, put_parquet, read_parquet
from bpo.spec import ProcessSpec


def normalize_part(run: RunContext, spec: ProcessSpec, file: str, raw_key: str, rows: int,
                   row_offset: int) -> tuple[Part, pd.DataFrame]:
    """Normalize one chunk of raw records; number them batch-wide so every later check maps back to a record."""
    store = get_store()
    raw = read_parquet(store, raw_key)
    raw.index = pd.RangeIndex(row_offset, row_offset + len(raw))
    result = normalize_frame(raw, spec)
    data = result.data.assign(**{ROW: raw.index.to_numpy()})
    issues = result.issues.astype({"row": "int64"})
    base = raw_key.replace("/records/raw/", "/records/normalized/")
    objects = [put_parquet(store, base, data),
               put_parquet(store, base.replace(".parquet", ".issues.parquet"), issues)]
    part = Part(file=file, raw=raw_key, normalized=objects[0].key, issues=objects[1].key, rows=rows, objects=objects)
    return part, data


def prepare_part(run: RunContext, spec: ProcessSpec, file: str, raw_key: str, rows: int,
                 row_offset: int) -> tuple[Part, Checked]:
    """Normalize one chunk, then validate it against the suite's row-local expectations while it is at hand."""
    part, data = normalize_part(run, spec, file, raw_key, rows, row_offset)
    return part, check_part(run, spec, part, data)


def normalize_chunk(run: RunContext, spec: ProcessSpec, file: str, raw_key: str, rows: int, row_offset: int) -> Part:
    """``normalize_part`` for a step whose checks run in another process: the part only (they read it from S3)."""
    return normalize_part(run, spec, file, raw_key, rows, row_offset)[0]


def check_stored_part(run: RunContext, spec: ProcessSpec, part: Part) -> Checked:
    """Validate one normalized chunk, as stored, against the row-local expectations (as ``prepare_part`` does)."""
    return check_part(run, spec, part, read_parquet(get_store(), part.normalized))

"""Synthetic customer-onboarding batches for the demo, the tests and the benchmark (seeded, repeatable)."""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path
from typing import Any

FIRST = ["james", "MARY", "José", "Zoë", "li", "ahmed", "olivia", "Noah", "fatima", "liam", "chloé", "DeAndre"]
LAST = ["smith", "O'NEIL", "Müller", "garcía", "nguyen", "khan", "brown", "mary-jane", "Rossi", "kowalski"]
PLANS = ["basic", "Standard", "PREMIUM", "pro", "starter", "gold", "std"]
COUNTRIES = [("US", "United States", "{:05d}"), ("GB", "UK", None), ("CA", "canada", None), ("DE", "Germany", "{:05d}")]
GB_POSTCODES = ["SW1A 1AA", "ec1a1bb", "M1 1AE", "B33 8TH"]
CA_POSTCODES = ["K1A 0B1", "m5v3l9", "H3Z 2Y7"]
PHONES = {"US": ["(415) 555-{:04d}", "415.555.{:04d}", "+1 415 555 {:04d}"], "GB": ["+44 20 7946 {:04d}"],
          "CA": ["613-555-{:04d}"], "DE": ["+49 30 {:04d}567"]}
HEADERS = {"customer_id": "Customer ID", "first_name": "First Name", "last_name": "Surname", "email": "E-mail Address",
           "phone": "Phone Number", "date_of_birth": "DOB", "signup_date": "Signup Date", "country": "Country",
           "postal_code": "Zip", "plan": "Plan", "opening_balance": "Opening Deposit"}

# each kind of problem a record may carry, and how it shows in the raw values
PROBLEMS = ["bad_email", "ambiguous_date", "duplicate_key", "unknown_plan", "missing_required"]


def _date(rng: random.Random, year_lo: int, year_hi: int) -> tuple[int, int, int]:
    return rng.randint(year_lo, year_hi), rng.randint(1, 12), rng.randint(13, 28)


def _written(y: int, m: int, d: int, rng: random.Random) -> str:
    months = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
              "November", "December"]
    return rng.choice([f"{y:04d}-{m:02d}-{d:02d}", f"{m:02d}/{d:02d}/{y:04d}", f"{d} {months[m - 1]} {y}",
                       f"{months[m - 1][:3]} {d}, {y}", f"{d:02d}.{m:02d}.{y:04d}"])


def make_records(n: int, *, seed: int = 7, review_fraction: float = 0.02, start: int = 1) -> list[dict[str, Any]]:
    """``n`` raw records keyed by field name; about ``review_fraction`` of them carry one problem each."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    problems = int(round(n * review_fraction))
    # every kind of problem in turn, on rows spread over the batch
    bad_rows = {row: PROBLEMS[k % len(PROBLEMS)] for k, row in enumerate(sorted(rng.sample(range(n), problems)))}
    for i in range(n):
        code, name, postal_fmt = rng.choice(COUNTRIES)
        first, last = rng.choice(FIRST), rng.choice(LAST)
        cid = f"C{start + i:07d}"
        if postal_fmt:
            postal = postal_fmt.format(rng.randint(10000, 99999))
        else:
            postal = rng.choice(GB_POSTCODES if code == "GB" else CA_POSTCODES)
        rec: dict[str, Any] = {
            "customer_id": cid, "first_name": f"  {first} ", "last_name": last,
            "email": f"{first.lower()}.{i}@Example.COM".replace("é", "e").replace("ë", "e"),
            "phone": rng.choice(PHONES[code]).format(rng.randint(0, 9999)),
            "date_of_birth": _written(*_date(rng, 1950, 2004), rng),
            "signup_date": _written(*_date(rng, 2019, 2025), rng),
            "country": rng.choice([code, name]), "postal_code": postal, "plan": rng.choice(PLANS),
            "opening_balance": rng.choice(["${:,}.{:02d}", "{}.{:02d}", "USD {}.{:02d}"]).format(
                rng.randint(0, 20000), rng.randint(0, 99)),
        }
        if i in bad_rows:
            problem = bad_rows[i]
            if problem == "bad_email":
                rec["email"] = f"{first.lower()}.{i}-at-example.com"
            elif problem == "ambiguous_date":
                month, day = rng.sample(range(1, 13), 2)
                rec["signup_date"] = f"{month:02d}/{day:02d}/2024"
            elif problem == "duplicate_key":
                rec["customer_id"] = f"C{start + i - 1:07d}" if i else cid
            elif problem == "unknown_plan":
                rec["plan"] = "platinum deluxe"
            else:
                rec["last_name"] = ""
        out.append(rec)
    return out


def to_csv(records: list[dict[str, Any]], *, encoding: str = "utf-8") -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[HEADERS[k] for k in HEADERS], lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow({HEADERS[k]: r.get(k, "") for k in HEADERS})
    return buf.getvalue().encode(encoding, errors="replace")


def to_jsonl(records: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()


def to_xlsx(records: list[dict[str, Any]]) -> bytes:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.append([HEADERS[k] for k in HEADERS])
    for r in records:
        ws.append([r.get(k, "") for k in HEADERS])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def write_batch(folder: Path, n: int = 200, *, seed: int = 7, review_fraction: float = 0.02,
                with_unreadable: bool = True) -> dict[str, int]:
    """A demo batch: CSV (cp1252), XLSX, JSON Lines, and one unreadable file; returns records per file."""
    folder.mkdir(parents=True, exist_ok=True)
    records = make_records(n, seed=seed, review_fraction=review_fraction)
    third = max(n // 3, 1)
    parts = {"customers-east.csv": records[:third], "customers-west.xlsx": records[third:2 * third],
             "customers-web.jsonl": records[2 * third:]}
    (folder / "customers-east.csv").write_bytes(to_csv(parts["customers-east.csv"], encoding="cp1252"))
    (folder / "customers-west.xlsx").write_bytes(to_xlsx(parts["customers-west.xlsx"]))
    (folder / "customers-web.jsonl").write_bytes(to_jsonl(parts["customers-web.jsonl"]))
    counts = {name: len(recs) for name, recs in parts.items()}
    if with_unreadable:
        (folder / "scan-0042.csv").write_bytes(bytes(range(256)) * 4)
        counts["scan-0042.csv"] = 0
    return counts

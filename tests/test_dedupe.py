"""Record matching (bpo.cleanup.dedupe): a Splink model from the column roles, trained without labels."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bpo.cleanup import dedupe
from bpo.cleanup.spec import CleanupSpec, load_cleanup_spec

ROOT = Path(__file__).resolve().parent.parent
FIRST = ["anna", "bruno", "clara", "david", "elena", "felix", "greta", "hugo", "ines", "jonas", "karla", "lukas",
         "maria", "niko", "olga", "paul", "rosa", "simon", "tina", "viktor", "wanda", "xaver", "yara", "zeno"]
LAST = ["adler", "bauer", "conrad", "dietz", "engel", "fuchs", "graf", "hahn", "illing", "jung", "keller", "lang",
        "mayer", "nagel", "otto", "pohl", "quast", "roth", "sauer", "thiel", "ulrich", "vogel", "weber", "zeller",
        "brandt", "koch", "lorenz", "schulz", "wolff", "kraus"]
CITIES = ["berlin", "hamburg", "munich", "cologne", "frankfurt", "stuttgart", "leipzig", "dresden"]


def _typo(word: str, rng: np.random.Generator) -> str:
    i = int(rng.integers(1, len(word) - 1))
    return word[:i] + word[i + 1] + word[i] + word[i + 2:]


def _people(n: int, rng: np.random.Generator) -> pd.DataFrame:
    first = rng.choice(FIRST, n)
    last = rng.choice(LAST, n)
    city_idx = rng.integers(0, len(CITIES), n)
    return pd.DataFrame({
        "first_name": first, "last_name": last,
        "email": [f"{f}.{s}{i}@example.org" for i, (f, s) in enumerate(zip(first, last, strict=True))],
        "phone": [f"+4915{x:08d}" for x in rng.choice(10**8, n, replace=False)],
        "date_of_birth": (np.datetime64("1950-01-01") + rng.integers(0, 50 * 365, n)).astype("datetime64[D]")
        .astype(str),
        "street": [f"{s}strasse {k}" for s, k in zip(rng.choice(LAST, n), rng.integers(1, 200, n), strict=True)],
        "city": np.array(CITIES)[city_idx],
        "postal_code": [f"{10000 + c * 1000 + k:05d}" for c, k in zip(city_idx, rng.integers(0, 100, n), strict=True)],
        "country": "DE",
    })


@pytest.fixture(scope="module")
def table() -> tuple[pd.DataFrame, dict[str, str]]:
    """400 people, 60 extra records of them (known), one household member who is someone else."""
    rng = np.random.default_rng(7)
    people = _people(400, rng)
    people["entity"] = np.arange(400)
    extra = []
    named: dict[str, str] = {}
    for k in range(60):
        row = people.iloc[k].to_dict()
        kind = ["typo", "swap", "missing", "moved"][k % 4]
        if kind == "typo":
            row["last_name"] = _typo(row["last_name"], rng)
        elif kind == "swap":
            row["first_name"], row["last_name"] = row["last_name"], row["first_name"]
        elif kind == "missing":
            row["email"] = row["phone"] = None
        else:
            row.update(street="neue strasse 1", city="bonn", postal_code="53111")
        extra.append(row)
        named.setdefault(kind, str(k))
    household = people.iloc[100].to_dict()
    household.update(first_name="zeno" if household["first_name"] != "zeno" else "yara", date_of_birth="2001-02-03",
                     email="someone.else@example.org", entity=10_000)
    frame = pd.concat([people, pd.DataFrame(extra), pd.DataFrame([household])], ignore_index=True)
    frame.insert(0, "unique_id", [f"r{i:04d}" for i in range(len(frame))])
    named = {kind: frame.loc[400 + int(k), "unique_id"] for kind, k in named.items()}
    named["household"] = frame["unique_id"].iloc[-1]
    return frame, named


@pytest.fixture(scope="module")
def spec() -> CleanupSpec:
    return load_cleanup_spec(ROOT / "flows" / "specs" / "customers_cleanup.yaml")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, table: tuple[pd.DataFrame, dict[str, str]],
            spec: CleanupSpec) -> tuple[Path, dict, pd.DataFrame]:
    frame, _ = table
    folder = tmp_path_factory.mktemp("dedupe")
    path = folder / "match.parquet"
    frame.drop(columns=["entity"]).to_parquet(path)
    model = dedupe.train(spec, [path], seed=1)
    pairs = pd.read_parquet(dedupe.predict(spec, model, [path], folder / "pairs.parquet", threshold=0.01))
    return path, model, pairs


def _probability(pairs: pd.DataFrame, a: str, b: str) -> float:
    lo, hi = sorted((a, b))
    hit = pairs[(pairs["unique_id_l"] == lo) & (pairs["unique_id_r"] == hi)]
    return float(hit["match_probability"].iloc[0]) if len(hit) else 0.0


def test_known_duplicates_found_and_others_not(table: tuple[pd.DataFrame, dict[str, str]],
                                               trained: tuple[Path, dict, pd.DataFrame]) -> None:
    frame, named = table
    _, _, pairs = trained
    original = frame.set_index("unique_id")["entity"]
    for kind in ("typo", "swap", "missing", "moved"):
        twin = frame.loc[frame["entity"] == original[named[kind]], "unique_id"].iloc[0]
        assert _probability(pairs, twin, named[kind]) >= 0.95, kind
    host = frame.loc[frame["entity"] == 100, "unique_id"].iloc[0]
    assert _probability(pairs, host, named["household"]) < 0.5
    # over all pairs: the extra records are found, and almost nothing else is
    entity = original.to_dict()
    sure = pairs[pairs["match_probability"] >= 0.99]
    same = [entity[a] == entity[b] for a, b in zip(sure["unique_id_l"], sure["unique_id_r"], strict=True)]
    assert sum(same) >= 57 and len(same) - sum(same) <= 1
    assert (pairs["unique_id_l"] < pairs["unique_id_r"]).all()
    for column in ("match_weight", "gamma_forename_surname", "mw_forename_surname", "mw_contact", "email_l"):
        assert column in pairs.columns


def test_model_round_trip_gives_same_predictions(tmp_path: Path, spec: CleanupSpec,
                                                 trained: tuple[Path, dict, pd.DataFrame]) -> None:
    path, model, pairs = trained
    stored = json.loads(json.dumps(model))
    again = pd.read_parquet(dedupe.predict(spec, stored, [path], tmp_path / "again.parquet", threshold=0.01))
    key = ["unique_id_l", "unique_id_r"]
    left, right = pairs.sort_values(key).reset_index(drop=True), again.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(left[[*key, "match_weight"]], right[[*key, "match_weight"]])


def test_predict_between_links_a_new_record_to_the_clean_table(
        tmp_path: Path, table: tuple[pd.DataFrame, dict[str, str]], spec: CleanupSpec,
        trained: tuple[Path, dict, pd.DataFrame]) -> None:
    frame, _ = table
    _, model, _ = trained
    clean = frame.iloc[:400].drop(columns=["entity"])
    clean.to_parquet(tmp_path / "clean.parquet")
    target = clean.iloc[250].to_dict()
    new = pd.DataFrame([
        {**target, "unique_id": "n1", "first_name": _typo(target["first_name"], np.random.default_rng(1)),
         "phone": None},
        {**clean.iloc[251].to_dict(), "unique_id": "n2", "email": None},
        {**clean.iloc[251].to_dict(), "unique_id": "n3", "street": None},
    ])
    new.to_parquet(tmp_path / "new.parquet")
    out = dedupe.predict_between(spec, model, [tmp_path / "new.parquet"], [tmp_path / "clean.parquet"],
                                 tmp_path / "pairs.parquet", threshold=0.5)
    pairs = pd.read_parquet(out)
    assert _probability(pairs, "n1", target["unique_id"]) >= 0.95
    assert _probability(pairs, "n2", "n3") >= 0.95  # two new rows among themselves
    assert _probability(pairs, "n2", clean.iloc[251]["unique_id"]) >= 0.95
    # only pairs that involve a new row: the clean table is not compared with itself again
    assert ((pairs["unique_id_l"].str.startswith("n")) | (pairs["unique_id_r"].str.startswith("n"))).all()
    assert (pairs["unique_id_l"] < pairs["unique_id_r"]).all()


def test_explain_steps_sum_to_the_match_weight(trained: tuple[Path, dict, pd.DataFrame]) -> None:
    _, model, pairs = trained
    for _, row in pairs.sort_values("match_weight").iloc[[0, len(pairs) // 2, -1]].iterrows():
        waterfall = dedupe.explain(model, row.to_dict())
        total = waterfall["prior_weight"] + sum(step["log2_bf"] for step in waterfall["steps"])
        assert math.isclose(total, waterfall["match_weight"], abs_tol=1e-6)
        assert math.isclose(2 ** total / (1 + 2 ** total), waterfall["match_probability"], abs_tol=1e-6)
        names = [step["column"] for step in waterfall["steps"]]
        assert "first_name, last_name" in names and "email" in names
        assert all(isinstance(step["level"], str) and step["level"] for step in waterfall["steps"])


def test_clusters_are_transitive_and_keep_cannot_link_apart() -> None:
    pairs = pd.DataFrame({"unique_id_l": ["a", "b", "d", "x", "p"], "unique_id_r": ["b", "c", "e", "y", "q"],
                          "match_probability": [0.999, 0.995, 0.999, 0.5, 0.999]})
    plain = dedupe.clusters(pairs, 0.99, set())
    assert plain.cluster_of == {"a": "a", "b": "a", "c": "a", "d": "d", "e": "d", "p": "p", "q": "p"}
    assert plain.held == []
    kept = dedupe.clusters(pairs, 0.99, {("d", "e"), ("a", "c")})
    # d-e: the edge is dropped; a-c: still joined through b, so the cluster waits for a person
    assert kept.cluster_of == {"p": "p", "q": "p"}
    assert kept.held == [{"a", "b", "c"}]


def test_roles_subset_still_gives_a_model(tmp_path: Path) -> None:
    spec = CleanupSpec.model_validate({"name": "suppliers", "key": "id", "columns": {
        "company": {"role": "organisation_name"}, "town": {"role": "city"}}})
    rng = np.random.default_rng(3)
    names = [f"{a} {b} {c} gmbh" for a, b, c in zip(rng.choice(LAST, 300), rng.choice(FIRST, 300),
                                                    rng.choice(CITIES, 300), strict=True)]
    frame = pd.DataFrame({"unique_id": [str(i) for i in range(300)], "company": names,
                          "town": rng.choice(CITIES, 300)})
    dupes = frame.iloc[:20].copy()
    dupes["unique_id"] = [f"d{i}" for i in range(20)]
    # half written the same, half with a slip
    dupes["company"] = [_typo(n, rng) if i % 2 else n for i, n in enumerate(dupes["company"])]
    pd.concat([frame, dupes]).to_parquet(tmp_path / "m.parquet", index=False)
    settings = dedupe.model_settings(spec, ["company", "town"])
    assert settings["link_type"] == "dedupe_only" and settings["blocking_rules_to_generate_predictions"]
    model = dedupe.train(spec, [tmp_path / "m.parquet"])
    pairs = pd.read_parquet(dedupe.predict(spec, model, [tmp_path / "m.parquet"], tmp_path / "p.parquet",
                                           threshold=0.05))
    # two columns are little evidence: the known pairs come first, well apart from the rest, but not certain
    found = {(a, b) for a, b in zip(pairs["unique_id_l"], pairs["unique_id_r"], strict=True)}
    assert sum((str(i), f"d{i}") in found for i in range(20)) >= 18
    assert len(found) <= 24


def test_bad_match_frames_are_refused(tmp_path: Path, spec: CleanupSpec) -> None:
    pd.DataFrame({"id": ["1", "2"], "email": ["a@b.c", "d@e.f"]}).to_parquet(tmp_path / "nokey.parquet")
    with pytest.raises(dedupe.DedupeError, match="no 'unique_id' column"):
        dedupe.train(spec, [tmp_path / "nokey.parquet"])
    pd.DataFrame({"unique_id": ["1", "1"], "email": ["a@b.c", "d@e.f"]}).to_parquet(tmp_path / "twice.parquet")
    with pytest.raises(dedupe.DedupeError, match="repeated unique_id"):
        dedupe.train(spec, [tmp_path / "twice.parquet"])
    pd.DataFrame({"unique_id": ["1", "2"], "shoe_size": ["4", "5"]}).to_parquet(tmp_path / "alien.parquet")
    with pytest.raises(dedupe.DedupeError, match="not columns of spec"):
        dedupe.train(spec, [tmp_path / "alien.parquet"])
    with pytest.raises(dedupe.DedupeError, match="not found"):
        dedupe.train(spec, [tmp_path / "missing.parquet"])

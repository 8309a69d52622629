"""A customer table with known duplicates, for the cleanup benchmark; deterministic per seed.

``make_customers(n, seed)`` returns the table as a client would hand it over (raw formats) and, apart from
it, the true entity of each row. About ``dup_share`` of the rows are extra records of an entity already in
the table, each with one to three of: a typo in a name, first and last name swapped, a missing email,
phone or date of birth, the phone or the date written another way, a moved address, another email.
Some distinct people share a household (surname, address, phone) so that precision is put to the test.
``standardize`` is the bench's stand-in for the flow's standardize step: the match frame Splink reads.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

FIRST = """james mary robert patricia john jennifer michael linda david elizabeth william barbara richard susan
joseph jessica thomas sarah charles karen christopher lisa daniel nancy matthew betty anthony sandra mark
margaret donald ashley steven kimberly andrew emily paul donna joshua michelle kenneth carol kevin amanda brian
melissa george deborah timothy stephanie ronald dorothy jason rebecca edward sharon jeffrey laura ryan cynthia
jacob amy gary kathleen nicholas angela eric shirley jonathan brenda stephen emma larry anna justin pamela
scott nicole brandon samantha benjamin katherine samuel christine gregory helen alexander debra frank rachel
patrick carolyn raymond janet jack maria dennis olivia jerry heather tyler diane aaron julie jose joyce adam
victoria nathan ruth henry virginia zachary lauren douglas kelly peter christina kyle joan noah evelyn ethan
judith jeremy andrea walter hannah christian megan keith cheryl roger jacqueline terry martha austin madison
sean teresa gerald gloria carl sara harold janice dylan ann arthur kathryn lawrence abigail jordan sophia
jesse frances bryan jean billy alice bruce judy gabriel isabella joe julia logan grace albert amber willie
denise alan danielle eugene marilyn russell beverly vincent charlotte bobby natalie johnny theresa bradley
diana roy brittany ralph doris louis kayla philip alexis randy lori wayne marie""".split()
LAST = """smith johnson williams brown jones garcia miller davis rodriguez martinez hernandez lopez gonzalez
wilson anderson thomas taylor moore jackson martin lee perez thompson white harris sanchez clark ramirez lewis
robinson walker young allen king wright scott torres nguyen hill flores green adams nelson baker hall rivera
campbell mitchell carter roberts gomez phillips evans turner diaz parker cruz edwards collins reyes stewart
morris morales murphy cook rogers gutierrez ortiz morgan cooper peterson bailey reed kelly howard ramos kim cox
ward richardson watson brooks chavez wood james bennett gray mendoza ruiz hughes price alvarez castillo sanders
patel myers long ross foster jimenez powell jenkins perry russell sullivan bell coleman butler henderson barnes
gonzales fisher vasquez simmons romero jordan patterson alexander hamilton graham reynolds griffin wallace
moreno west cole hayes bryant herrera gibson ellis tran medina aguilar stevens murray ford castro marshall owens
harrison fernandez mcdonald woods washington kennedy wells vargas henry chen freeman webb tucker guzman burns
crawford olson simpson porter hunter gordon mendez silva shaw snyder mason dixon munoz hunt hicks holmes palmer
wagner black robertson boyd rose stone salazar fox warren mills meyer rice schmidt garza daniels ferguson nichols
stephens soto weaver ryan gardner payne grant dunn kelley spencer hawkins arnold pierce vazquez hansen peters
santos hart bradley knight elliott cunningham duncan armstrong hudson carroll lane riley andrews alvarado ray
delgado berry perkins hoffman johnston matthews pena richards contreras willis carpenter lawrence sandoval""".split()
SYL_A = """ab al an ar ba be bo ca co da de do el fa fe ga go ha he ho ja ka ke la le lo ma me mo na ne no pa pe
ra re ro sa se so ta te to va ve wa we ya za""".split()
SYL_B = """ber bert burg by dale den der don field ford gan gate ham hart ker land ley lin lock low man mer mond
more ner ney ridge rick ring ron sen ser son stead ston ter ton vall well wick win wood worth""".split()
CITIES = """new_york los_angeles chicago houston phoenix philadelphia san_antonio san_diego dallas san_jose austin
jacksonville fort_worth columbus charlotte indianapolis san_francisco seattle denver washington boston el_paso
nashville detroit oklahoma_city portland las_vegas memphis louisville baltimore milwaukee albuquerque tucson
fresno sacramento mesa kansas_city atlanta omaha colorado_springs raleigh long_beach virginia_beach miami
oakland minneapolis tulsa bakersfield wichita arlington aurora tampa new_orleans cleveland honolulu anaheim
lexington stockton corpus_christi henderson riverside newark saint_paul santa_ana cincinnati irvine orlando
pittsburgh st_louis greensboro jersey_city anchorage lincoln plano durham buffalo chandler chula_vista toledo
madison gilbert reno fort_wayne north_las_vegas st_petersburg lubbock irving laredo winston_salem chesapeake
glendale garland scottsdale norfolk boise fremont spokane santa_clarita baton_rouge richmond""".split()
STREETS = """main oak pine maple cedar elm washington lake hill park view sunset river spring church north south
ridge mill forest meadow highland jackson lincoln madison franklin center walnut willow cherry chestnut
prospect valley dogwood hickory locust birch sycamore laurel poplar magnolia""".split()
SUFFIX = ["St", "Ave", "Rd", "Ln", "Dr", "Ct", "Blvd", "Way", "Pl"]
DOMAINS = ["gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "aol.com", "icloud.com", "mail.com", "proton.me"]
AREA = [201, 202, 203, 205, 206, 207, 208, 209, 210, 212, 213, 214, 215, 216, 217, 218, 219, 224, 225, 228, 229,
        231, 234, 239, 240, 248, 251, 252, 253, 254, 256, 260, 262, 267, 269, 270, 272, 276, 281, 301, 302, 303,
        304, 305, 307, 308, 309, 310, 312, 313, 314, 315, 316, 317, 318, 319, 320, 321, 323, 325, 330, 331, 334,
        336, 337, 339, 347, 351, 352, 360, 361, 385, 386, 401, 402, 404, 405, 406, 407, 408, 409, 410, 412, 413,
        414, 415, 417, 419, 423, 424, 425, 430, 432, 434, 435, 440, 442, 443, 469, 470, 475, 478, 479, 480, 484]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
LETTERS = np.array(list("abcdefghijklmnopqrstuvwxyz"))


def _zipf_choice(rng: np.random.Generator, pool: list[str], n: int, a: float = 1.0) -> np.ndarray:
    weights = 1.0 / np.arange(1, len(pool) + 1) ** a
    return np.asarray(pool, dtype=object)[rng.choice(len(pool), size=n, p=weights / weights.sum())]


def _surnames() -> list[str]:
    made = [a + b for a in SYL_A for b in SYL_B]
    return LAST + made[::3]


def _typo(rng: np.random.Generator, word: str) -> str:
    if len(word) < 3:
        return word + str(LETTERS[rng.integers(26)])
    i = int(rng.integers(1, len(word) - 1))
    kind = int(rng.integers(4))
    if kind == 0:  # substitution
        return word[:i] + str(LETTERS[rng.integers(26)]) + word[i + 1:]
    if kind == 1:  # deletion
        return word[:i] + word[i + 1:]
    if kind == 2:  # insertion
        return word[:i] + str(LETTERS[rng.integers(26)]) + word[i:]
    return word[:i - 1] + word[i] + word[i - 1] + word[i + 1:]  # transposition


def _phone_formats(digits: str, style: int) -> str:
    a, e, n = digits[2:5], digits[5:8], digits[8:]
    return [f"({a}) {e}-{n}", f"{a}-{e}-{n}", f"{a}.{e}.{n}", f"+1 {a} {e} {n}", f"{a}{e}{n}", f"1-{a}-{e}-{n}"][style]


def _date_formats(iso: str, style: int) -> str:
    y, m, d = iso[:4], iso[5:7], iso[8:10]
    return [iso, f"{m}/{d}/{y}", f"{MONTHS[int(m) - 1]} {int(d)}, {y}", f"{int(m)}/{int(d)}/{y}"][style]


def make_customers(n: int, seed: int = 1, dup_share: float = 0.2) -> tuple[pd.DataFrame, pd.Series]:
    """(raw customer table keyed by ``customer_id``, true entity per row aligned to it), shuffled."""
    rng = np.random.default_rng(seed)
    n_dup = int(round(n * dup_share))
    n_base = n - n_dup
    surnames = _surnames()
    first = _zipf_choice(rng, FIRST, n_base, 0.7)
    last = _zipf_choice(rng, surnames, n_base, 0.6)
    dob = (np.datetime64("1940-01-01") + rng.integers(0, 65 * 365, n_base)).astype("datetime64[D]").astype(str)
    city_idx = np.minimum(rng.zipf(1.3, n_base) - 1, len(CITIES) - 1)
    city = np.array([c.replace("_", " ").title() for c in CITIES], dtype=object)[city_idx]
    postal = np.char.zfill((10000 + city_idx * 900 + rng.integers(0, 60, n_base)).astype(str), 5).astype(object)
    street = np.array([f"{int(no)} {s.title()} {suf}" for no, s, suf in zip(
        rng.integers(1, 9999, n_base), _zipf_choice(rng, STREETS, n_base, 0.5),
        rng.choice(SUFFIX, n_base), strict=True)], dtype=object)
    phone = np.array([f"+1{a}{e}{x:04d}" for a, e, x in zip(
        rng.choice(AREA, n_base), rng.integers(200, 999, n_base), rng.integers(0, 10000, n_base), strict=True)],
        dtype=object)
    num = rng.integers(1, 999, n_base)
    style = rng.integers(0, 4, n_base)
    email = np.array([
        [f"{f}.{sn}", f"{f[0]}{sn}{k}", f"{f}{sn}{k}", f"{f}_{sn}"][s] + "@" + DOMAINS[int(k) % len(DOMAINS)]
        for f, sn, k, s in zip(first, last, num, style, strict=True)], dtype=object)
    # households: another person at an existing address, same surname and landline
    household = rng.random(n_base) < 0.04
    host = rng.integers(0, n_base, n_base)
    for col in (last, street, city, postal, phone):
        col[household] = col[host[household]]
    email[household] = np.array([f"{f}.{sn}{k}@{DOMAINS[int(k) % len(DOMAINS)]}" for f, sn, k in zip(
        first[household], last[household], num[household] + 7, strict=True)], dtype=object)
    # an address is one person's: a second person whose name gives the same one gets a number in it
    taken = pd.Series(email).duplicated(keep="first").to_numpy()
    email[taken] = [e.replace("@", f"{i}@") for e, i in zip(email[taken], np.flatnonzero(taken), strict=True)]
    base = pd.DataFrame({"first_name": first, "last_name": last, "email": email, "phone": phone,
                         "date_of_birth": dob, "street": street, "city": city, "postal_code": postal})
    base.loc[rng.random(n_base) < 0.10, "email"] = None
    base.loc[rng.random(n_base) < 0.08, "phone"] = None
    base.loc[rng.random(n_base) < 0.05, "date_of_birth"] = None
    base["entity"] = np.arange(n_base)
    base["phone_style"] = rng.integers(0, 6, n_base)
    base["date_style"] = rng.choice([0, 0, 1, 2], n_base)

    dup = base.iloc[rng.integers(0, n_base, n_dup)].copy().reset_index(drop=True)
    edits = ["typo_first", "typo_last", "swap", "no_email", "no_phone", "no_dob", "phone_format", "date_format",
             "moved", "new_email"]
    weights = np.array([0.15, 0.15, 0.08, 0.08, 0.08, 0.06, 0.14, 0.12, 0.08, 0.06])
    records = dup.to_dict("records")
    for row in records:
        for edit in rng.choice(edits, size=int(rng.integers(1, 4)), replace=False, p=weights / weights.sum()):
            if edit == "typo_first":
                row["first_name"] = _typo(rng, row["first_name"])
            elif edit == "typo_last":
                row["last_name"] = _typo(rng, row["last_name"])
            elif edit == "swap":
                row["first_name"], row["last_name"] = row["last_name"], row["first_name"]
            elif edit == "no_email":
                row["email"] = None
            elif edit == "no_phone":
                row["phone"] = None
            elif edit == "no_dob":
                row["date_of_birth"] = None
            elif edit == "phone_format":
                row["phone_style"] = (row["phone_style"] + int(rng.integers(1, 6))) % 6
            elif edit == "date_format":
                row["date_style"] = (row["date_style"] + int(rng.integers(1, 4))) % 4
            elif edit == "moved":
                k = int(min(rng.zipf(1.3) - 1, len(CITIES) - 1))
                row["city"] = CITIES[k].replace("_", " ").title()
                row["postal_code"] = f"{10000 + k * 900 + int(rng.integers(0, 60)):05d}"
                row["street"] = f"{int(rng.integers(1, 9999))} {STREETS[int(rng.integers(len(STREETS)))].title()} " \
                                f"{SUFFIX[int(rng.integers(len(SUFFIX)))]}"
            elif edit == "new_email":
                row["email"] = (f"{row['first_name']}{row['last_name']}{int(rng.integers(1000, 100000))}"
                                f"@{DOMAINS[int(rng.integers(len(DOMAINS)))]}")
    table = pd.concat([base, pd.DataFrame(records, columns=base.columns)], ignore_index=True)
    table = table.iloc[rng.permutation(len(table))].reset_index(drop=True)
    table["phone"] = [None if not isinstance(p, str) else _phone_formats(p, int(s))
                      for p, s in zip(table["phone"], table["phone_style"], strict=True)]
    table["date_of_birth"] = [None if not isinstance(d, str) else _date_formats(d, int(s))
                              for d, s in zip(table["date_of_birth"], table["date_style"], strict=True)]
    table["first_name"] = table["first_name"].str.title()
    table["last_name"] = table["last_name"].str.title()
    table["country"] = rng.choice(["US", "USA", "United States", "US"], len(table))
    table["updated_at"] = (np.datetime64("2024-01-01T00:00:00")
                           + rng.integers(0, 700 * 86400, len(table)).astype("timedelta64[s]")).astype(str)
    table.insert(0, "customer_id", np.arange(1, len(table) + 1))
    truth = table.pop("entity").astype(np.int64)
    table = table.drop(columns=["phone_style", "date_style"])
    return table, truth


def _iso_dates(raw: pd.Series) -> pd.Series:
    """ISO, M/D/Y and 'Mon D, YYYY' dates as YYYY-MM-DD (the bench's dates are MDY)."""
    out = pd.to_datetime(raw, format="%Y-%m-%d", errors="coerce")
    for fmt in ("%m/%d/%Y", "%b %d, %Y"):
        out = out.fillna(pd.to_datetime(raw, format=fmt, errors="coerce"))
    return out.dt.strftime("%Y-%m-%d").where(out.notna(), None)


def standardize(table: pd.DataFrame, key: str = "customer_id") -> pd.DataFrame:
    """The match frame of the bench's table: ``unique_id`` and standardized compared columns."""
    digits = table["phone"].str.replace(r"\D", "", regex=True)
    phone = ("+1" + digits.str[-10:]).where(digits.str.len().isin([10, 11]), None)
    return pd.DataFrame({
        "unique_id": table[key].astype(str),
        "first_name": table["first_name"].str.strip().str.lower(),
        "last_name": table["last_name"].str.strip().str.lower(),
        "email": table["email"].str.strip().str.lower(),
        "phone": phone,
        "date_of_birth": _iso_dates(table["date_of_birth"]),
        "street": table["street"].str.strip().str.lower(),
        "city": table["city"].str.strip().str.lower(),
        "postal_code": table["postal_code"].astype("string").str.strip(),
        "country": "US",
    }).astype(object).where(lambda f: f.notna(), None)

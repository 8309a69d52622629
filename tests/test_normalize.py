"""Tests for bpo.normalizers: one block per field type, then normalize_frame on the onboarding spec."""

from __future__ import annotations

import random
import typing
from decimal import Decimal

import numpy as np
import pandas as pd
import phonenumbers
import pytest
from email_validator import EmailNotValidError, validate_email
from phonenumbers import PhoneNumberFormat

from bpo.normalizers import NORMALIZERS, Normalized, normalize_frame
from bpo.normalizers.phone import canonical_phone, fast_e164, library_e164, normalize_phone
from bpo.normalizers.postal_code import normalize_postal_code
from bpo.normalizers.text import normalize_text
from bpo.spec import FieldSpec, FieldType, ProcessSpec, load_spec


@pytest.fixture(scope="module")
def spec() -> ProcessSpec:
    return load_spec("customer_onboarding")


def run(type_: str, inputs: list, spec: ProcessSpec, frame: pd.DataFrame | None = None, **field: object) -> Normalized:
    """Apply the normalizer for ``type_`` to ``inputs`` with a throwaway field."""
    fs = FieldSpec(name="f", type=type_, **field)
    raw = pd.Series(inputs, dtype=object)
    return NORMALIZERS[type_](raw, fs, pd.DataFrame(index=raw.index) if frame is None else frame, spec)


def one(type_: str, value: object, spec: ProcessSpec, **field: object) -> tuple[object, str | None, str | None]:
    """(value, reason, flag) for a single input."""
    result = run(type_, [value], spec, **field)
    return result.values.iloc[0], result.reasons.iloc[0], result.flags.iloc[0]


# Field settings each type needs to be usable on its own.
FIELD_SETTINGS: dict[str, dict] = {
    "enum": {"values": {"basic": ["starter"], "premium": ["pro"]}},
    "postal_code": {"country": "US"},
    "money": {"default_currency": "USD"},
}


def test_registry_covers_every_field_type():
    assert set(NORMALIZERS) == set(typing.get_args(FieldType))


@pytest.mark.parametrize("type_", sorted(NORMALIZERS))
@pytest.mark.parametrize("dtype", [object, "string"])
def test_blank_values_are_na_without_reason(type_: str, dtype: object, spec: ProcessSpec):
    raw = pd.Series([None, np.nan, pd.NA, "", "   ", "\t\u00a0 \n"], dtype=dtype, index=list("abcdef"))
    result = NORMALIZERS[type_](
        raw, FieldSpec(name="f", type=type_, **FIELD_SETTINGS.get(type_, {})), pd.DataFrame(index=raw.index), spec
    )
    assert result.values.isna().all()
    assert list(result.values.index) == list("abcdef")
    assert result.reasons.tolist() == [None] * 6
    assert result.flags.tolist() == [None] * 6
    assert result.reasons.dtype == object and result.flags.dtype == object
    for extra in result.extra.values():
        assert extra.isna().all()


@pytest.mark.parametrize("dtype", [object, "string"])
def test_input_dtype_does_not_matter(dtype: object, spec: ProcessSpec):
    raw = pd.Series(["  Ann   LEE ", None], dtype=dtype)
    result = normalize_text(raw, FieldSpec(name="f"), pd.DataFrame(index=raw.index), spec)
    assert result.values.iloc[0] == "Ann LEE"
    assert result.values.isna().iloc[1]


# ---------------------------------------------------------------------------------------------
# text, name, integer


def test_text_collapses_whitespace_and_checks_length(spec: ProcessSpec):
    result = run("text", ["  a \t b  ", "abcdef", "abcde"], spec, max_length=5)
    assert result.values.iloc[0] == "a b"
    assert pd.isna(result.values.iloc[1])
    assert "longer than 5" in result.reasons.iloc[1]
    assert result.values.iloc[2] == "abcde" and result.reasons.iloc[2] is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("JOHN o'neil", "John O'Neil"),
        ("mary-jane", "Mary-Jane"),
        ("DeAndre", "DeAndre"),
        ("mcdonald", "Mcdonald"),
        ("  ANNE   marie ", "Anne Marie"),
        ("JOSÉ", "José"),
        ("McDONALD smith", "McDONALD Smith"),
        # a combining accent belongs to its letter (str.title would give "GarcíA"), and is composed
        ("jose\u0301 GARCI\u0301A", "Jos\u00e9 Garc\u00eda"),
        ("ZO\u0308E", "Z\u00f6e"),
    ],
)
def test_name_casing(raw: str, expected: str, spec: ProcessSpec):
    assert one("name", raw, spec) == (expected, None, None)


@pytest.mark.parametrize(
    ("raw", "word"),
    [
        ("<b>Ann</b>", "markup"),
        ("Ann[/b]", "markup"),
        ("[b]Ann", "markup"),
        ("[url=http://x.example]Ann[/url]", "markup"),
        ("Ann <script>x</script>", "markup"),
        ("Ann&nbsp;Lee", "markup"),
        ("=1+2", "formula"),
        ("=HYPERLINK(\"http://x.example\")", "formula"),
        ("+SUM(A1:A2)", "formula"),
        ("@SUM(A1)", "formula"),
        ("-2+3", "formula"),
        ("-HYPERLINK(x)", "formula"),
        ("J0hn", "digits"),
        ("Ann 2", "digits"),
        ("Lee ٣", "digits"),
    ],
)
def test_name_refuses_what_no_name_holds(raw: str, word: str, spec: ProcessSpec):
    value, reason, flag = one("name", raw, spec)
    assert pd.isna(value)
    assert word in reason and raw not in reason  # the reason names the problem, not the value
    assert flag is None


@pytest.mark.parametrize(
    "raw",
    ["O'Neil", "D’Angelo", "Mary-Jane", "Jean-Luc Picard", "José", "Zoë", "Ó Briain", "St. John", "Smith Jr.",
     "李小龍", "Владимир", "محمد", "Nguyễn Văn An", "Αλέξανδρος", "Henry VIII", "al-Sayed", "N'Golo"],
)
def test_name_keeps_real_names(raw: str, spec: ProcessSpec):
    value, reason, flag = one("name", raw, spec)
    assert (reason, flag) == (None, None)
    assert value.casefold() == raw.casefold()


def test_name_refusal_is_an_issue_that_sends_the_record_to_review(spec: ProcessSpec):
    raw = pd.DataFrame({"customer_id": ["C1", "C2"], "first_name": ["[/b]", "Ann"], "last_name": ["Lee", "=1+2"]})
    issues = normalize_frame(raw, spec).issues
    assert list(issues[["row", "field", "check"]].itertuples(index=False, name=None)) == [
        (0, "first_name", "normalize_name"), (1, "last_name", "normalize_name")]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1,234", 1234), ("-12", -12), ("+7", 7), ("0", 0), ("12.0", 12), (" 1,234,567 ", 1234567),
     ("1 234 567", 1234567), ("1\u202f250", 1250)],
)
def test_integer_good(raw: str, expected: int, spec: ProcessSpec):
    result = run("integer", [raw], spec)
    assert result.values.dtype == "Int64"
    assert result.values.iloc[0] == expected
    assert result.reasons.iloc[0] is None


@pytest.mark.parametrize(
    ("raw", "word"),
    [
        ("1.5", "not an integer"),
        ("abc", "not an integer"),
        ("1,23", "not an integer"),
        ("1 23", "not an integer"),
        ("1,234 567", "not an integer"),
        ("12345678901234567890", "too large"),
    ],
)
def test_integer_bad(raw: str, word: str, spec: ProcessSpec):
    value, reason, _ = one("integer", raw, spec)
    assert pd.isna(value)
    assert word in reason


# ---------------------------------------------------------------------------------------------
# email


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("John.Doe@Example.COM", "john.doe@example.com"),
        (" a+tag@gmail.com ", "a+tag@gmail.com"),
        ("A@XN--EXMPLE-CUA.COM", "a@exämple.com"),
        ("Ü@exämple.com", "ü@exämple.com"),
    ],
)
def test_email_good(raw: str, expected: str, spec: ProcessSpec):
    assert one("email", raw, spec) == (expected, None, None)


@pytest.mark.parametrize(
    ("raw", "word"),
    [
        ("john.doe.example.com", "@-sign"),
        ("a@b", "period"),
        ("a..b@example.com", "two periods"),
        ('"q r"@example.com', "Quoting"),
        ("a@localhost.test", "special-use"),
        ("a b@example.com", "invalid character"),
    ],
)
def test_email_bad(raw: str, word: str, spec: ProcessSpec):
    value, reason, _ = one("email", raw, spec)
    assert pd.isna(value)
    assert word in reason


def test_email_agrees_with_the_library(spec: ProcessSpec):
    """The per-domain shortcut must give exactly what validate_email gives per address."""
    addresses = [
        "a@gmail.com",
        "b@gmail.com",
        "x" * 64 + "@" + "d" * 60 + ".com",
        "x" * 65 + "@example.com",
        "y" * 200 + "@" + "e" * 50 + ".com",
        "c@-bad.com",
        "d@bad-.com",
        "e@ab--cd.com",
        "f@xn--exmple-cua.com",
        "g@123.456",
        "h@example.com.",
        ".i@example.com",
        "j@[127.0.0.1]",
        "postmaster@example.com",
        "k@example.invalid",
        "l@exa_mple.com",
    ]
    result = run("email", addresses, spec)
    for address, value, reason in zip(addresses, result.values, result.reasons, strict=True):
        try:
            expected, expected_reason = validate_email(address, check_deliverability=False).normalized.lower(), None
        except EmailNotValidError as exc:
            expected, expected_reason = None, str(exc)
        assert (None if pd.isna(value) else value, reason) == (expected, expected_reason), address


# ---------------------------------------------------------------------------------------------
# phone


@pytest.mark.parametrize(
    "raw",
    ["(415) 555-2671", "415.555.2671", "415 555 2671", "1-415-555-2671", "+1 415 555 2671", "001 415 555 2671"],
)
def test_phone_us_formats(raw: str, spec: ProcessSpec):
    assert one("phone", raw, spec) == ("+14155552671", None, None)


def test_phone_international_and_other_regions(spec: ProcessSpec):
    assert one("phone", "+44 20 7946 0958", spec)[0] == "+442079460958"
    assert one("phone", "0044 20 7946 0958", spec)[0] == "+442079460958"
    gb = spec.model_copy(update={"default_region": "GB"})
    assert one("phone", "020 7946 0958", gb)[0] == "+442079460958"


def test_phone_is_read_in_its_rows_country_or_the_fields_fixed_one(spec: ProcessSpec):
    # the same national digits are another country's number in each row; an unknown or missing country is the
    # spec's default region (US here); a fixed country on the field replaces the default
    frame = pd.DataFrame({"country": pd.array(["FR", "gb", "DE", None, "Narnia", "US"], dtype=pd.StringDtype())})
    raw = ["06 12 34 56 78", "020 7946 0958", "030 123456", "(415) 555-2671", "(415) 555-2671", "06 12 34 56 78"]
    result = run("phone", raw, spec, frame=frame, country_field="country")
    assert result.values.tolist()[:5] == ["+33612345678", "+442079460958", "+4930123456", "+14155552671",
                                          "+14155552671"]
    assert pd.isna(result.values.iloc[5]) and result.reasons.iloc[5] == "not a valid US phone number"
    # a country written as its (English) name or alpha-3 code, as people key it in, is that country
    names = pd.DataFrame({"country": pd.array(["France", "United Kingdom", "DEU", " u.s.a. "],
                                              dtype=pd.StringDtype())})
    named = run("phone", raw[:3] + ["(415) 555-2671"], spec, frame=names, country_field="country")
    assert named.values.tolist() == ["+33612345678", "+442079460958", "+4930123456", "+14155552671"]
    fixed = run("phone", ["020 7946 0958", "+1 415 555 2671"], spec, country="GB")
    assert fixed.values.tolist() == ["+442079460958", "+14155552671"]
    # through the frame normalizer, the country field normalized first
    fields = {"country": FieldSpec(type="text"), "phone": FieldSpec(type="phone", country_field="country")}
    two = spec.model_copy(update={"fields": {n: f.model_copy(update={"name": n}) for n, f in fields.items()}})
    data = normalize_frame(pd.DataFrame({"country": [" FR "], "phone": ["06 12 34 56 78"]}, dtype=object), two).data
    assert data.loc[0, "phone"] == "+33612345678"


@pytest.mark.parametrize(
    ("raw", "word"),
    [
        ("123", "not a valid US phone number"),
        ("abc", "US phone"),
        ("(123) 456-7890", "US phone"),
        ("+999 123", "international"),
    ],
)
def test_phone_bad(raw: str, word: str, spec: ProcessSpec):
    value, reason, _ = one("phone", raw, spec)
    assert pd.isna(value)
    assert word in reason


def test_phone_formats_of_one_number_share_one_library_call(spec: ProcessSpec, monkeypatch: pytest.MonkeyPatch):
    calls: list[str] = []
    parse = phonenumbers.parse

    def counting_parse(number: str, region: str | None = None) -> phonenumbers.PhoneNumber:
        calls.append(number)
        return parse(number, region)

    monkeypatch.setattr(phonenumbers, "parse", counting_parse)
    # an extension is for the library to read
    result = run("phone", ["+1 (415) 555-2671 x5", "+1.415.555.2671 x5", "+1 415-555-2671 x5", "00 1 415 555 2671 x5"],
                 spec)
    assert result.values.tolist() == ["+14155552671"] * 4
    assert calls == ["+14155552671x5"]
    # plain international numbers are settled by the fast path, with no call
    calls.clear()
    result = run("phone", ["+1 (415) 555-2671", "+44 20 7946 0123", "+49 30 1234567"], spec)
    assert result.values.tolist() == ["+14155552671", "+442079460123", "+49301234567"]
    assert calls == []


def _region_examples(region: str) -> tuple[dict[str, str], set[str]]:
    """The library's example number of every type in ``region``: {written form: E.164}, and near misses.

    Written forms are the national and international formats and the bare national significant
    number; near misses (a digit changed, dropped or added), bare and after ``+`` and the country
    code, are mostly invalid numbers.
    """
    rng = random.Random(region)
    forms: dict[str, str] = {}
    misses: set[str] = set()
    for number_type in NUMBER_TYPES:
        example = phonenumbers.example_number_for_type(region, number_type)
        if example is None:
            continue
        e164 = phonenumbers.format_number(example, PhoneNumberFormat.E164)
        nsn = phonenumbers.national_significant_number(example)
        for form in (PhoneNumberFormat.NATIONAL, PhoneNumberFormat.INTERNATIONAL):
            forms[phonenumbers.format_number(example, form)] = e164
        forms.setdefault(nsn, e164)
        i = rng.randrange(len(nsn))
        near = {nsn[:i] + str(rng.randrange(10)) + nsn[i + 1 :], nsn[:-1], nsn + str(rng.randrange(10))}
        misses |= near | {f"+{example.country_code}{m}" for m in near}
    return forms, misses


NUMBER_TYPES = [v for k, v in vars(phonenumbers.PhoneNumberType).items() if k.isupper() and k != "UNKNOWN"]


def test_phone_fast_path_agrees_with_the_library_in_every_region():
    """The vectorized replay of parse + is_valid_number must match phonenumbers, valid or not, everywhere.

    Over the library's own example numbers of every type in every supported region, each written
    nationally, internationally and bare, plus near misses of each, in the canonical form the
    normalizer hands the fast path.
    """
    decided_total = bare_total = 0
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        forms, misses = _region_examples(region)
        u = canonical_phone(pd.Series(sorted(forms.keys() | misses), dtype=object)).drop_duplicates()
        u = u.reset_index(drop=True)
        decided, values = fast_e164(u, region)
        for number, done, value in zip(u, decided, values, strict=True):
            if done:
                assert value == library_e164(number, region), (region, number)
        decided_total += int(decided.sum())
        bare_total += int(u.str.fullmatch(r"\+?[1-9]\d+").sum())
    assert decided_total > 0.6 * bare_total  # the shortcut must actually carry most plain numbers


def test_phone_national_and_international_forms_give_the_example_number(spec: ProcessSpec):
    """Every region's example numbers, as the library writes them, normalize to their E.164 form."""
    wrong = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        forms, _ = _region_examples(region)
        texts = sorted(t for t in forms if not t.isdigit())
        got = normalize_phone(pd.Series(texts, dtype=object), FieldSpec(name="f", type="phone"),
                              pd.DataFrame(), spec.model_copy(update={"default_region": region}))
        wrong += [(region, t, v) for t, v in zip(texts, got.values, strict=True) if v != forms[t]]
    assert not wrong


# ---------------------------------------------------------------------------------------------
# date


@pytest.mark.parametrize(
    "raw",
    [
        "2024-03-05",
        "2024/03/05",
        "2024.3.5",
        "20240305",
        "2024-03-05 00:00:00",
        "5 March 2024",
        "5 Mar 2024",
        "5th march 2024",
        "March 5, 2024",
        "Mar 5 2024",
        "MARCH 5TH, 2024",
        "5-Mar-2024",
        "05-MAR-24",
        "Tuesday, March 5, 2024",
        "Tue 5 Mar 2024",
        "2024-3-5",
    ],
)
def test_date_forms(raw: str, spec: ProcessSpec):
    assert one("date", raw, spec) == ("2024-03-05", None, None)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("13/03/2024", "2024-03-13"),
        ("03/13/2024", "2024-03-13"),
        ("13.3.24", "2024-03-13"),
        ("04/04/2024", "2024-04-04"),
        ("12/31/69", "2069-12-31"),
        ("31/12/70", "1970-12-31"),
        ("Sept 5 1999", "1999-09-05"),
        ("2024-02-29", "2024-02-29"),
    ],
)
def test_date_unambiguous(raw: str, expected: str, spec: ProcessSpec):
    assert one("date", raw, spec) == (expected, None, None)


@pytest.mark.parametrize(
    ("raw", "word"),
    [
        ("2024-02-30", "no such day"),
        ("2023-02-29", "no such day"),
        ("31/31/2024", "not a date"),
        ("hello", "not a date: 'hello'"),
        ("5 Foo 2024", "not a date"),
        ("2024-13-01", "no such day"),
        ("1st of never", "not a date"),
    ],
)
def test_date_bad(raw: str, word: str, spec: ProcessSpec):
    value, reason, flag = one("date", raw, spec)
    assert pd.isna(value)
    assert word in reason
    assert flag is None


@pytest.mark.parametrize(
    ("raw", "readings"),
    [
        ("03/04/2024", ("2024-03-04", "2024-04-03")),
        ("3/5/24", ("2024-03-05", "2024-05-03")),
        ("05.03.2024", ("2024-05-03", "2024-03-05")),
        ("01-02-75", ("1975-01-02", "1975-02-01")),
    ],
)
def test_date_ambiguous_is_flagged_not_guessed(raw: str, readings: tuple[str, str], spec: ProcessSpec):
    value, reason, flag = one("date", raw, spec)
    assert pd.isna(value)
    assert flag == "ambiguous_date"
    assert reason.startswith("ambiguous day/month")
    assert all(r in reason for r in readings)


@pytest.mark.parametrize(
    ("order", "raw", "expected"),
    [
        ("DMY", "03/04/2024", "2024-04-03"),
        ("MDY", "03/04/2024", "2024-03-04"),
        ("DMY", "13/03/2024", "2024-03-13"),
        ("MDY", "13/03/2024", "2024-03-13"),
        ("DMY", "5.3.24", "2024-03-05"),
    ],
)
def test_date_order_settles_numeric_dates(order: str, raw: str, expected: str, spec: ProcessSpec):
    assert one("date", raw, spec, date_order=order) == (expected, None, None)


def test_date_repeated_values_share_results(spec: ProcessSpec):
    result = run("date", ["03/04/2024", None, "03/04/2024", "2024-01-02"] * 3, spec)
    assert result.flags.tolist() == ["ambiguous_date", None, "ambiguous_date", None] * 3
    assert result.values.iloc[3::4].tolist() == ["2024-01-02"] * 3


# ---------------------------------------------------------------------------------------------
# money


@pytest.mark.parametrize(
    ("raw", "amount", "currency"),
    [
        ("$1,234.50", "1234.50", "USD"),
        ("1234.5", "1234.50", "USD"),
        ("USD 1,234.50", "1234.50", "USD"),
        ("usd1234.5", "1234.50", "USD"),
        ("1.234,50 €", "1234.50", "EUR"),
        ("1.234.567,89 EUR", "1234567.89", "EUR"),
        ("12,50", "12.50", "USD"),
        ("1,234", "1234.00", "USD"),
        ("(12.00)", "-12.00", "USD"),
        ("-12.00", "-12.00", "USD"),
        ("-$12", "-12.00", "USD"),
        ("$ -12", "-12.00", "USD"),
        ("12.00-", "-12.00", "USD"),
        ("(£10)", "-10.00", "GBP"),
        ("£10", "10.00", "GBP"),
        ("€10", "10.00", "EUR"),
        ("10 EUR", "10.00", "EUR"),
        ("¥500", "500.00", "JPY"),
        ("₹ 1,00", "1.00", "INR"),
        ("$10 USD", "10.00", "USD"),
        ("0", "0.00", "USD"),
    ],
)
def test_money_good(raw: str, amount: str, currency: str, spec: ProcessSpec):
    result = run("money", [raw], spec, default_currency="USD")
    value = result.values.iloc[0]
    assert isinstance(value, Decimal)
    assert value == Decimal(amount) and value.as_tuple().exponent == -2
    assert result.extra["f_currency"].iloc[0] == currency
    assert result.reasons.iloc[0] is None


@pytest.mark.parametrize(
    ("raw", "word"),
    [
        ("abc", "not an amount"),
        ("1.234", "not an amount"),
        ("12.345,6", "not an amount"),
        ("(12", "not an amount"),
        ("--12", "not an amount"),
        ("$1 2", "not an amount"),
        ("$10 EUR", "conflicting currencies"),
    ],
)
def test_money_bad(raw: str, word: str, spec: ProcessSpec):
    result = run("money", [raw], spec, default_currency="USD")
    assert pd.isna(result.values.iloc[0])
    assert pd.isna(result.extra["f_currency"].iloc[0])
    assert word in result.reasons.iloc[0]


@pytest.mark.parametrize(
    ("raw", "default", "currency"),
    [
        ("$10", "CAD", "CAD"),
        ("$10", "AUD", "AUD"),
        ("$10", "MXN", "MXN"),
        ("$10", "USD", "USD"),
        ("$10", "EUR", "USD"),  # the euro is not written "$": English's reading
        ("¥500", "CNY", "CNY"),
        ("¥500", "JPY", "JPY"),
        ("￥500", "CNY", "CNY"),  # fullwidth yen sign, as Chinese and Japanese keyboards type it
        ("¥500", "USD", "JPY"),
        ("kr 10", "SEK", "SEK"),
        ("10 kr", "NOK", "NOK"),
        ("10 kr.", "DKK", "DKK"),
        ("kr10", "ISK", "ISK"),
        ("€10", "USD", "EUR"),
        ("£10", "CAD", "GBP"),
        ("₹10", "USD", "INR"),
        ("CA$10", "USD", "CAD"),
        ("$10 CAD", "USD", "CAD"),  # the code beside a symbol settles it
        ("$10 AUD", "EUR", "AUD"),
        ("10 zł", "PLN", "PLN"),
        ("R$ 10", "USD", "BRL"),
    ],
)
def test_money_ambiguous_symbol_means_the_default_currency(raw: str, default: str, currency: str, spec: ProcessSpec):
    result = run("money", [raw], spec, default_currency=default)
    assert result.reasons.iloc[0] is None, result.reasons.iloc[0]
    assert result.values.iloc[0] == Decimal("".join(ch for ch in raw if ch.isdigit()))
    assert result.extra["f_currency"].iloc[0] == currency


@pytest.mark.parametrize(
    ("raw", "default"), [("kr 10", "USD"), ("kr 10", None), ("₽10", "USD"), ("10 XYZ", "USD"), ("€10 USD", "USD")]
)
def test_money_symbol_nothing_settles_is_refused(raw: str, default: str | None, spec: ProcessSpec):
    result = run("money", [raw], spec, default_currency=default)
    assert pd.isna(result.values.iloc[0]) and pd.isna(result.extra["f_currency"].iloc[0])
    assert "currenc" in result.reasons.iloc[0]


def test_money_without_currency_or_default(spec: ProcessSpec):
    result = run("money", ["10", "10 gbp"], spec)
    assert pd.isna(result.values.iloc[0])
    assert "no currency" in result.reasons.iloc[0]
    assert result.values.iloc[1] == Decimal("10.00")
    assert result.extra["f_currency"].tolist() == [pd.NA, "GBP"]


# ---------------------------------------------------------------------------------------------
# postal code


@pytest.mark.parametrize(
    ("country", "raw", "expected"),
    [
        ("US", "12345", "12345"),
        ("US", "12345-6789", "12345-6789"),
        ("US", "123456789", "12345-6789"),
        ("US", "12345 6789", "12345-6789"),
        ("CA", "k1a0b1", "K1A 0B1"),
        ("CA", "K1A 0B1", "K1A 0B1"),
        ("GB", "sw1a1aa", "SW1A 1AA"),
        ("GB", "M1 1AE", "M1 1AE"),
        ("GB", "ec1a 1bb", "EC1A 1BB"),
        ("DE", "10115", "10115"),
        ("FR", "75008", "75008"),
        ("IN", "110001", "110001"),
        ("IN", "110 001", "110001"),
        ("AU", "2000", "2000"),
        ("NL", "1234ab", "1234 AB"),
        ("JP", "100-0001", "100-0001"),
        ("JP", "1000001", "100-0001"),
        ("hk", "abc 12", "ABC 12"),  # no postal codes in Hong Kong: kept as written
    ],
)
def test_postal_good(country: str, raw: str, expected: str, spec: ProcessSpec):
    assert one("postal_code", raw, spec, country=country) == (expected, None, None)


@pytest.mark.parametrize(
    ("country", "raw"),
    [
        ("US", "1234"),
        ("US", "1234-5678"),
        ("CA", "123 456"),
        ("GB", "12345"),
        ("DE", "1011"),
        ("IN", "11001"),
        ("AU", "20000"),
        ("NL", "AB 1234"),
    ],
)
def test_postal_bad(country: str, raw: str, spec: ProcessSpec):
    value, reason, _ = one("postal_code", raw, spec, country=country)
    assert pd.isna(value)
    assert reason == f"{raw!r} is not a {country} postal code"


@pytest.mark.parametrize(
    ("country", "raw", "expected"),
    [
        ("BR", "01310100", "01310-100"),
        ("BR", "01310-100", "01310-100"),
        ("PL", "00950", "00-950"),
        ("IE", "a65f4e2", "A65 F4E2"),
        ("JP", "100 0001", "100-0001"),
        ("SE", "114 55", "11455"),  # written as the address data writes its examples
        ("CH", "8001", "8001"),
        ("AR", "c1425dba", "C1425DBA"),
    ],
)
def test_postal_every_country_from_the_address_data(country: str, raw: str, expected: str, spec: ProcessSpec):
    assert one("postal_code", raw, spec, country=country) == (expected, None, None)


@pytest.mark.parametrize(("country", "raw"), [("BR", "0131010"), ("PL", "00 95"), ("SE", "1145"), ("CH", "80011")])
def test_postal_bad_in_other_countries(country: str, raw: str, spec: ProcessSpec):
    value, reason, _ = one("postal_code", raw, spec, country=country)
    assert pd.isna(value)
    assert reason == f"{raw!r} is not a {country} postal code"


@pytest.mark.parametrize("country", ["XX", "ZZ", "USA", "Frnace"])
def test_postal_unknown_country_is_refused_with_its_reason(country: str, spec: ProcessSpec):
    value, reason, _ = one("postal_code", "12345", spec, country=country)
    assert pd.isna(value)
    assert reason == f"unknown country {country.upper()!r}: its postal codes cannot be checked"


def test_postal_codes_checked_once_per_distinct_country_and_code(spec: ProcessSpec):
    countries = ["US", "CA", "US", "BR", "US", "XX"] * 1000
    codes = ["123456789", "k1a0b1", "12345", "01310100", "1234", "1"] * 1000
    frame = pd.DataFrame({"country": pd.array(countries, dtype="string")})
    field = FieldSpec(name="postal_code", type="postal_code", country_field="country")
    result = normalize_postal_code(pd.Series(codes), field, frame, spec)
    assert result.values.iloc[:6].tolist() == ["12345-6789", "K1A 0B1", "12345", "01310-100", pd.NA, pd.NA]
    assert result.values.iloc[6:12].tolist() == result.values.iloc[:6].tolist()


def test_postal_country_comes_from_the_frame(spec: ProcessSpec):
    frame = pd.DataFrame({"country": pd.array(["US", "CA", None, "GB", "US"], dtype="string")}, index=[5, 6, 7, 8, 9])
    raw = pd.Series(["123456789", "k1a0b1", "k1a0b1", "12345", "1234"], index=frame.index)
    field = FieldSpec(name="postal_code", type="postal_code", country_field="country")
    result = normalize_postal_code(raw, field, frame, spec)
    assert result.values.tolist() == ["12345-6789", "K1A 0B1", "K1A0B1", pd.NA, pd.NA]
    assert result.reasons.tolist() == [
        None,
        None,
        None,
        "'12345' is not a GB postal code",
        "'1234' is not a US postal code",
    ]
    assert list(result.values.index) == [5, 6, 7, 8, 9]


# ---------------------------------------------------------------------------------------------
# enum

PLAN = {"values": {"basic": ["starter", "free"], "standard": ["std", "regular"], "premium": ["pro", "gold", "plus"]}}
COUNTRY = {"values": {"US": ["usa", "united states", "u.s.a."], "GB": ["uk", "united kingdom"]}}


@pytest.mark.parametrize(
    ("raw", "expected", "settings"),
    [
        ("premium", "premium", PLAN),
        ("PRO", "premium", PLAN),
        ("  Std ", "standard", PLAN),
        ("U.S.A.", "US", COUNTRY),
        ("usa", "US", COUNTRY),
        ("united-states", "US", COUNTRY),
        ("gb", "GB", COUNTRY),
        ("United Kingdom", "GB", COUNTRY),
    ],
)
def test_enum_exact(raw: str, expected: str, settings: dict, spec: ProcessSpec):
    assert one("enum", raw, spec, **settings) == (expected, None, None)


@pytest.mark.parametrize(("raw", "expected"), [("Premum", "premium"), ("standrd", "standard"), ("Starterr", "basic")])
def test_enum_fuzzy_is_mapped_and_flagged(raw: str, expected: str, spec: ProcessSpec):
    value, reason, flag = one("enum", raw, spec, **PLAN)
    assert value == expected
    assert flag == "low_confidence_mapping"
    assert reason == f"{raw!r} mapped to {expected!r} with low confidence"


def test_enum_near_miss_between_two_spellings_goes_to_the_first_declared(spec: ProcessSpec):
    settings = {"values": {"first": ["standard"], "second": ["standart"]}}
    assert one("enum", "standarx", spec, **settings) == (
        "first", "'standarx' mapped to 'first' with low confidence", "low_confidence_mapping")


def test_enum_exact_and_near_misses_mixed(spec: ProcessSpec):
    result = run("enum", ["Premum", "pro", "Standrd", "platinum", None] * 3, spec, **PLAN)
    assert result.values.tolist() == ["premium", "premium", "standard", pd.NA, pd.NA] * 3
    assert result.flags.tolist() == ["low_confidence_mapping", None, "low_confidence_mapping", None, None] * 3
    assert result.reasons.iloc[3] == "'platinum' is not one of the allowed values: basic, standard, premium"


def test_enum_no_match(spec: ProcessSpec):
    value, reason, flag = one("enum", "platinum", spec, **PLAN)
    assert pd.isna(value)
    assert flag is None
    assert "'platinum'" in reason and "basic, standard, premium" in reason


# ---------------------------------------------------------------------------------------------
# normalize_frame


def onboarding_raw() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [" C-001 ", "C-002", "C-003"],
            "first_name": ["JOHN", "mary-jane", "DeAndre"],
            "last_name": ["o'neil", "SMITH", None],
            "email": ["John@Example.COM", "mary.example.com", "d@example.org"],
            "date_of_birth": ["03/04/1990", "1985-07-21", "21 July 1985"],
            "signup_date": ["2024-03-05", "March 5, 2024", "2024-02-30"],
            "country": ["U.S.A.", "Canada", "Frnace"],
            "postal_code": ["123456789", "k1a0b1", "75008"],
            "plan": ["pro", "Premum", "platinum"],
            "opening_balance": ["$1,234.50", "1.234,50 €", "(12.00)"],
            "_source_row": ["2", "3", "4"],
            "_batch": ["b1", "b1", "b1"],
        },
        index=[10, 11, 12],
    )  # no "phone" column: an absent field is all blank


def test_normalize_frame_columns_and_values(spec: ProcessSpec):
    out = normalize_frame(onboarding_raw(), spec)
    data = out.data
    assert list(data.columns) == [
        "customer_id",
        "first_name",
        "last_name",
        "email",
        "phone",
        "date_of_birth",
        "signup_date",
        "country",
        "postal_code",
        "plan",
        "opening_balance",
        "opening_balance_currency",
        "_source_row",
        "_batch",
    ]
    assert list(data.index) == [10, 11, 12]
    assert data["customer_id"].tolist() == ["C-001", "C-002", "C-003"]
    assert data["first_name"].tolist() == ["John", "Mary-Jane", "DeAndre"]
    assert data["last_name"].tolist() == ["O'Neil", "Smith", pd.NA]
    assert data["email"].tolist() == ["john@example.com", pd.NA, "d@example.org"]
    assert data["phone"].isna().all()
    assert data["date_of_birth"].tolist() == [pd.NA, "1985-07-21", "1985-07-21"]
    assert data["signup_date"].tolist() == ["2024-03-05", "2024-03-05", pd.NA]
    assert data["country"].tolist() == ["US", "CA", "FR"]
    # postal codes are checked against the normalized country, not the raw "U.S.A."
    assert data["postal_code"].tolist() == ["12345-6789", "K1A 0B1", "75008"]
    assert data["plan"].tolist() == ["premium", "premium", pd.NA]
    assert data["opening_balance"].tolist() == [Decimal("1234.50"), Decimal("1234.50"), Decimal("-12.00")]
    assert data["opening_balance_currency"].tolist() == ["USD", "EUR", "USD"]
    assert data["_source_row"].tolist() == ["2", "3", "4"]
    assert data["_batch"].tolist() == ["b1", "b1", "b1"]


def test_normalize_frame_issues(spec: ProcessSpec):
    issues = normalize_frame(onboarding_raw(), spec).issues
    assert list(issues.columns) == ["row", "field", "check", "reason"]
    got = list(issues[["row", "field", "check"]].itertuples(index=False, name=None))
    assert got == [
        (10, "date_of_birth", "ambiguous_date"),
        (11, "email", "normalize_email"),
        (11, "plan", "low_confidence_mapping"),
        (12, "signup_date", "normalize_date"),
        (12, "country", "low_confidence_mapping"),
        (12, "plan", "normalize_enum"),
    ]
    reasons = issues["reason"].tolist()
    assert "1990-03-04" in reasons[0] and "1990-04-03" in reasons[0]
    assert "@-sign" in reasons[1]
    assert reasons[2] == "'Premum' mapped to 'premium' with low confidence"
    assert reasons[3] == "not a date: '2024-02-30' (no such day)"
    assert reasons[4] == "'Frnace' mapped to 'FR' with low confidence"
    assert "'platinum'" in reasons[5]


def test_normalize_frame_clean_input_has_empty_issues(spec: ProcessSpec):
    raw = pd.DataFrame({"customer_id": ["C1"], "email": ["a@example.com"], "country": ["us"], "plan": ["basic"]})
    out = normalize_frame(raw, spec)
    assert out.issues.empty
    assert list(out.issues.columns) == ["row", "field", "check", "reason"]
    assert out.data.loc[0, "country"] == "US"
    assert pd.isna(out.data.loc[0, "opening_balance"])

"""Text encodings: which code page a text file is in, and whether its bytes are text at all."""

from __future__ import annotations

import codecs
import re

from charset_normalizer import from_bytes

from bpo.readers.common import UnreadableFile

_SAMPLE_BYTES = 64 * 1024
_GUESS_BYTES = 1024 * 1024
_CHUNK_BYTES = 1024 * 1024

# C0 control bytes that never appear in real text files (tab, newlines, form feed, VT and Ctrl-Z do).
# A stray NUL among text is a bad row, not a binary file: only many of them make the bytes binary.
_CONTROL = re.compile(rb"[\x00-\x08\x0e-\x19\x1b-\x1f]")
_HIGH_RUN = re.compile(rb"[\x80-\xff]{3,}")
# cp1252 bytes that are letters, and symbols that never sit inside a word of Western European text;
# a symbol between two letters means the bytes are really another code page (cp1250's "ł" is cp1252's "³").
_CP1252_LETTER = rb"[A-Za-z\x83\x8a\x8c\x8e\x9a\x9c\x9e\x9f\xaa\xb5\xba\xc0-\xd6\xd8-\xf6\xf8-\xff]"
_CP1252_SYMBOL = rb"[\x80\x86-\x89\x98\xa2-\xa8\xac\xaf\xb1-\xb3\xb6\xb8\xb9\xbc-\xbe\xd7\xf7]"
_SYMBOL_IN_WORD = re.compile(_CP1252_LETTER + _CP1252_SYMBOL + _CP1252_LETTER)
_CP1252_LIKE = frozenset({"cp1252", "latin_1", "iso8859_15"})
_BLANK = re.compile(rb"(?:\xef\xbb\xbf)?\s*")

_UTF_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def binary(kind: str) -> UnreadableFile:
    """The error for bytes that are not text: they hold no record a person could count."""
    return UnreadableFile(f"binary content, not a text {kind} file", records=0)


def _decodes(data: bytes, codec: str) -> bool:
    """Whether all of data decodes strictly, checked in chunks so no full copy of the text is made."""
    if codec in ("utf-8", "utf-8-sig", "cp1252") and data.isascii():
        return True
    decoder = codecs.getincrementaldecoder(codec)("strict")
    view = memoryview(data)
    try:
        for start in range(0, len(view), _CHUNK_BYTES):
            decoder.decode(view[start : start + _CHUNK_BYTES], final=False)
        decoder.decode(b"", final=True)
    except (UnicodeDecodeError, LookupError):
        return False
    return True


def _western(data: bytes) -> bool:
    """Whether data reads as Western European text in cp1252 (short samples fool charset-normalizer)."""
    sample = data[:_GUESS_BYTES]
    if _HIGH_RUN.search(sample) or _SYMBOL_IN_WORD.search(sample):
        return False
    return _decodes(data, "cp1252")


def _guess_encoding(data: bytes, kind: str) -> str:
    """charset-normalizer's best guess, passing over cp1252 look-alikes: the bytes already failed as cp1252."""
    guesses = [match.encoding for match in from_bytes(data[:_GUESS_BYTES])]
    ranked = [g for g in guesses if g not in _CP1252_LIKE] + [g for g in guesses if g in _CP1252_LIKE]
    for encoding in ranked:
        if _decodes(data, encoding):
            return encoding
    raise binary(kind)


def text_plan(data: bytes, kind: str) -> tuple[str, str, bytes]:
    """Pick the text encoding: (encoding to report, codec to parse with, bytes to parse)."""
    for bom, encoding in _UTF_BOMS:
        if data.startswith(bom):
            try:
                text = data.decode(encoding)
            except UnicodeDecodeError as exc:
                raise binary(kind) from exc
            utf8 = text.encode("utf-8")
            check_text_bytes(utf8, kind)
            return encoding, "utf-8", utf8
    if data.startswith(codecs.BOM_UTF8) and _decodes(data, "utf-8"):
        encoding = "utf-8-sig"
    elif _decodes(data, "utf-8"):
        encoding = "utf-8"
    elif _western(data):
        encoding = "cp1252"
    else:
        encoding = _guess_encoding(data, kind)
    check_text_bytes(data, kind)
    return encoding, encoding, data


def check_text_bytes(data: bytes, kind: str) -> None:
    """Refuse empty text and text full of control bytes."""
    if _BLANK.fullmatch(data):
        raise UnreadableFile("empty file: no header row and no records", records=0)
    sample = data[:_SAMPLE_BYTES]
    if len(_CONTROL.findall(sample)) > 2 + len(sample) // 100:
        raise binary(kind)


def text_sample(data: bytes, codec: str) -> str:
    """The first few KB of the file as text (a character cut at the end is left out)."""
    return codecs.getincrementaldecoder(codec)("replace").decode(data[:_SAMPLE_BYTES], final=False)



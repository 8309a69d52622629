"""HTML pages: schema.org JSON-LD, microdata, RDFa and OpenGraph (extruct), tables, definition lists, text.

Nothing on a page runs: the page is parsed by lxml, scripts and styles are skipped as content (a
JSON-LD script is read as data, never as text), and every value is cited by the CSS path of the
element it was read from (``html > body > table:nth-of-type(2) > tr:nth-of-type(3) > td``).
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urljoin

import lxml.etree
import lxml.html
from extruct.jsonld import JsonLdExtractor
from extruct.opengraph import OpenGraphExtractor
from extruct.rdfa import RDFaExtractor
from extruct.w3cmicrodata import MicrodataExtractor

from bpo.research.extractors.common import Finding, Vocabulary, decode, snippet, squash
from bpo.research.extractors.tabular import Cell, read_table
from bpo.research.model import Method

log = logging.getLogger(__name__)

# never content: code, styling, and what a browser does not show as text
_SKIP = frozenset({"script", "style", "noscript", "template", "head", "title", "svg", "iframe", "object", "select"})
_BLOCKS = frozenset({
    "html", "body", "p", "div", "li", "ul", "ol", "dl", "dt", "dd", "td", "th", "tr", "table", "thead", "tbody",
    "tfoot", "caption", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "header", "footer", "main",
    "aside", "nav", "address", "blockquote", "pre", "form", "fieldset", "figure", "figcaption", "details",
    "summary",
})
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
# items that describe the page, not what the page is about
_PAGE_TYPES = frozenset({"WebPage", "WebSite", "BreadcrumbList", "SearchAction", "ImageObject", "ListItem",
                         "SiteNavigationElement", "ItemList", "EntryPoint"})
_NAMING = ("name", "legalName", "alternateName", "leiCode", "taxID", "vatID", "duns", "identifier", "url")
_NOT_SCHEMA = ("http://ogp.me/ns", "http://www.w3.org/ns/rdfa", "http://www.w3.org/1999/xhtml/vocab")


def css_path(element: Any) -> str:
    """``html > body > div:nth-of-type(2) > p``: a tag is numbered only where it has siblings of its kind."""
    parts = []
    while element is not None:
        parent = element.getparent()
        tag = element.tag
        if parent is not None:
            same = [c for c in parent.iterchildren(tag)]
            if len(same) > 1:
                tag = f"{tag}:nth-of-type({same.index(element) + 1})"
        parts.append(tag)
        element = parent
    return " > ".join(reversed(parts))


def _text(element: Any) -> str:
    """The visible text of an element and everything inside it; <br> is a line break."""
    out: list[str] = []

    def walk(node: Any) -> None:
        if not isinstance(node.tag, str) or node.tag in _SKIP:
            return
        block = node.tag in _BLOCKS or node.tag == "br"
        if block:  # blocks and cells stand apart in the text ("Phone" | "+44 …" is not "Phone+44 …")
            out.append("\n")
        out.append(node.text or "")
        for child in node:
            walk(child)
            out.append(child.tail or "")
        if block:
            out.append("\n")

    walk(element)
    return "".join(out)


def _block_texts(root: Any) -> list[tuple[Any, str]]:
    """(block, its own text) for every block outside scripts, styles and the head, in document order.

    A block's own text is its inline content; each block inside it stands on its own line and is
    read on its own, so "Founded in 1999<div>…</div>" is never one run of text with what follows.
    """
    out: list[tuple[Any, str]] = []

    def visit(block: Any) -> None:
        parts: list[str] = []
        nested: list[Any] = []

        def inline(node: Any) -> None:
            parts.append(node.text or "")
            for child in node:
                if isinstance(child.tag, str) and child.tag not in _SKIP:
                    if child.tag in _BLOCKS:
                        nested.append(child)
                        parts.append("\n")
                    elif child.tag == "br":
                        parts.append("\n")
                    else:
                        inline(child)
                parts.append(child.tail or "")

        inline(block)
        out.append((block, "".join(parts)))
        for child in nested:
            visit(child)

    visit(root)
    return out


def _labelled_text(blocks: list[tuple[Any, str]], vocab: Vocabulary) -> list[Finding]:
    findings = []
    for block, text in blocks:
        if not vocab.mentions(text):  # most blocks name no field at all
            continue
        for line in text.splitlines():
            for field, value in vocab.labelled(line):
                findings.append(Finding(field, value, "text", css_path(block), snippet(line, value)))
    return findings


def _tables(root: Any, vocab: Vocabulary) -> list[Finding]:
    findings = []
    for table in root.iter("table"):
        rows = []
        for tr in table.iter("tr"):
            if next(tr.iterancestors("table")) is not table:  # a nested table is read on its own
                continue
            head = tr.getparent().tag == "thead"
            rows.append([Cell(_text(c), functools.partial(css_path, c), header=head or c.tag == "th")
                         for c in tr if c.tag in ("td", "th")])
        findings += read_table(rows, vocab, "table")
    return findings


def _definition_lists(root: Any, vocab: Vocabulary) -> list[Finding]:
    findings = []
    for dl in root.iter("dl"):
        field = None
        for child in dl.iter("dt", "dd"):
            if child.tag == "dt":
                field = vocab.field_of(_text(child))
            elif field and squash(_text(child)):
                value = squash(_text(child))
                term = child.getprevious()
                label = _text(term) if term is not None and term.tag == "dt" else ""
                findings.append(Finding(field, value, "definition_list", css_path(child),
                                        snippet(f"{label} {_text(child)}", value)))
    return findings


def _scalar(value: Any) -> str | None:
    """A property's value as text: a literal, or the value/name of a nested value object."""
    if isinstance(value, dict):
        for key in ("@value", "value", "name", "@id"):
            if key in value and not isinstance(value[key], dict | list):
                return _scalar(value[key])
        return None
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        text = squash(str(value))
        for scheme in ("mailto:", "tel:"):
            if text.lower().startswith(scheme):
                text = text[len(scheme):]
        return text or None
    return None


def _values(item: Mapping[str, Any], path: str) -> list[str]:
    """The values at a dotted property path (``address.addressLocality``), lists flattened."""
    current: list[Any] = [item]
    for key in path.split("."):
        step = []
        for node in current:
            if isinstance(node, dict) and key in node:
                got = node[key]
                step += got if isinstance(got, list) else [got]
        current = step
    return [v for v in (_scalar(c) for c in current) if v]


def _types(item: Mapping[str, Any]) -> set[str]:
    kinds = item.get("@type", [])
    kinds = kinds if isinstance(kinds, list) else [kinds]
    return {str(k).rsplit("/", 1)[-1].rsplit("#", 1)[-1] for k in kinds}


def _item_findings(item: Mapping[str, Any], vocab: Vocabulary, method: Method, locate: Any) -> list[Finding]:
    """Findings of one structured item; ``locate(path, value)`` gives (where, snippet) for a value."""
    if _types(item) & _PAGE_TYPES:
        return []
    naming = tuple(v for key in _NAMING for v in _values(item, key))
    findings = []
    for field, paths in vocab.properties.items():
        for path in paths:
            if path.startswith("og:"):
                continue
            for value in _values(item, path):
                where, text = locate(path, value)
                findings.append(Finding(field, value, method, where, snippet(text, value), item=naming))
    return findings


def _jsonld(root: Any, vocab: Vocabulary) -> list[Finding]:
    findings = []
    for script in root.iter("script"):
        if (script.get("type") or "").strip().lower() != "application/ld+json":
            continue
        source = script.text or ""
        try:
            items = JsonLdExtractor().extract_items(script)
        except (ValueError, RecursionError):
            log.info("a JSON-LD script at %s is not JSON; skipped", css_path(script))
            continue
        where = css_path(script)
        for item in _flatten(items):
            findings += _item_findings(item, vocab, "jsonld", lambda path, value, w=where, s=source:
                                       (w, _around(s, value)))
    return findings


def _flatten(items: list[Any]) -> Iterator[dict[str, Any]]:
    for item in items:
        if isinstance(item, dict):
            graph = item.get("@graph")
            if isinstance(graph, list):
                yield from _flatten(graph)
            else:
                yield item


def _around(source: str, value: str) -> str:
    """A value's surroundings in raw text (a JSON-LD script), or the value alone where it is escaped."""
    at = source.find(value)
    if at < 0:
        at = source.find(json.dumps(value)[1:-1])
    if at < 0:
        return value
    line_start = source.rfind("\n", 0, at) + 1
    line_end = source.find("\n", at)
    return source[line_start:line_end if line_end >= 0 else len(source)]


def _element_value(element: Any) -> str:
    for attribute in ("content", "datetime", "href", "src", "value"):
        if element.get(attribute):
            return squash(element.get(attribute))
    return squash(_text(element))


def _surroundings(element: Any) -> str:
    """The text of the block an element sits in; a <meta> is shown as its property and content."""
    if element.tag == "meta":
        name = element.get("itemprop") or element.get("property") or element.get("name") or ""
        return f"{name}: {element.get('content', '')}"
    block = element
    while block.getparent() is not None and block.tag not in _BLOCKS:
        block = block.getparent()
    return _text(block)


def _locate(candidates: list[Any], fallback: Any, value: str, base_url: str | None = None) -> tuple[str, str]:
    """The first element among ``candidates`` holding ``value`` (a link as written or resolved against
    ``base_url``, as extruct gives it); else the fallback element."""
    for element in candidates:
        held = _element_value(element)
        forms = {held, held.lower().removeprefix("mailto:").removeprefix("tel:")}
        if base_url and element.get("href"):
            forms.add(urljoin(base_url, held))
        if value in forms or value.lower() in forms:
            return css_path(element), _surroundings(element)
    return css_path(fallback), _surroundings(fallback)


def _microdata(root: Any, base_url: str | None, vocab: Vocabulary) -> list[Finding]:
    findings = []
    for raw in MicrodataExtractor(add_html_node=True).extract_items(root, base_url):
        node = raw.pop("htmlNode")
        item = _plain_microdata(raw)

        def locate(path: str, value: str, node: Any = node) -> tuple[str, str]:
            prop = path.rsplit(".", 1)[-1]
            props = [e for e in node.iter() if prop in (e.get("itemprop") or "").split()]
            return _locate(props, node, value, base_url)

        findings += _item_findings(item, vocab, "microdata", locate)
    return findings


def _plain_microdata(raw: Any) -> Any:
    """extruct's {"type", "properties"} microdata as plain JSON-LD-like dicts."""
    if isinstance(raw, list):
        return [_plain_microdata(v) for v in raw]
    if isinstance(raw, dict) and "properties" in raw:
        return {"@type": raw.get("type", []), **{k: _plain_microdata(v) for k, v in raw["properties"].items()}}
    if isinstance(raw, dict) and "value" in raw:
        return raw["value"]
    return raw


def _local(iri: str) -> str:
    return re.split(r"[/#:]", iri)[-1]


def _rdfa(markup: bytes, base_url: str | None, root: Any, vocab: Vocabulary) -> list[Finding]:
    # pyRdfa costs more than all else on a page: run it only where RDFa markup is (OpenGraph's <meta
    # property> is read on its own)
    if not root.xpath("//*[@typeof or @vocab or @about or (@property and not(self::meta))]"):
        return []
    try:
        nodes = RDFaExtractor().extract(markup, base_url=base_url or "", encoding="utf-8")
    except Exception as exc:  # pyRdfa raises whatever its parser met; RDFa is one syntax of several
        log.info("RDFa not read (%s)", exc.__class__.__name__)
        return []
    by_id = {n.get("@id"): n for n in nodes if isinstance(n, dict)}
    referenced = {v.get("@id") for n in nodes for vs in n.values() if isinstance(vs, list)
                  for v in vs if isinstance(v, dict)}

    def plain(node: dict[str, Any], depth: int = 0) -> dict[str, Any]:
        out: dict[str, Any] = {"@type": node.get("@type", [])}
        for key, values in node.items():
            if key.startswith("@") or key.startswith(_NOT_SCHEMA) or not isinstance(values, list):
                continue
            out[_local(key)] = [plain(by_id[v["@id"]], depth + 1) if isinstance(v, dict) and v.get("@id") in by_id
                                and depth < 5 else v for v in values]
        return out

    properties = [e for e in root.iter() if isinstance(e.tag, str) and e.get("property")]
    findings = []
    for node in nodes:
        if not isinstance(node, dict) or node.get("@id") in referenced:
            continue
        item = plain(node)
        if set(item) == {"@type"}:
            continue

        def locate(path: str, value: str) -> tuple[str, str]:
            prop = path.rsplit(".", 1)[-1]
            named = [e for e in properties if prop in {_local(p) for p in e.get("property").split()}]
            return _locate(named, root, value, base_url)

        findings += _item_findings(item, vocab, "rdfa", locate)
    return findings


def _opengraph(root: Any, vocab: Vocabulary) -> list[Finding]:
    wanted = {p: f for f, paths in vocab.properties.items() for p in paths if p.startswith("og:")}
    findings = []
    for item in OpenGraphExtractor().extract_items(root):
        for prop, value in item["properties"]:
            field = wanted.get(prop)
            value = _scalar(value)
            if field and value:
                metas = [m for m in root.iter("meta") if m.get("property") == prop]
                where, text = _locate(metas, root, value)
                findings.append(Finding(field, value, "opengraph", where, snippet(text, value)))
    return findings


def read_html(raw: bytes, content_type: str | None, base_url: str | None,
              vocab: Vocabulary) -> tuple[list[Finding], str, str]:
    """Every finding on a page, its visible text and its title (the <title> and first <h1>), for naming its subject."""
    text = _XML_DECLARATION.sub("", decode(raw, content_type))
    markup = text.encode("utf-8")
    try:
        root = lxml.html.fromstring(markup, parser=lxml.html.HTMLParser(encoding="utf-8"))
    except lxml.etree.ParserError:  # an empty page: nothing on it, nothing wrong with it
        return [], "", ""
    root = root.getroottree().getroot()
    title = " ".join(squash(_text(e) if e.tag != "title" else e.text_content()) for e in
                     [next(root.iter("title"), None), next(root.iter("h1"), None)] if e is not None)
    blocks = _block_texts(root)
    findings = [*_jsonld(root, vocab), *_microdata(root, base_url, vocab), *_rdfa(markup, base_url, root, vocab),
                *_opengraph(root, vocab), *_tables(root, vocab), *_definition_lists(root, vocab),
                *_labelled_text(blocks, vocab)]
    return findings, "\n".join(text for _, text in blocks), title

"""MediaWiki wikitext -> clean plain text, in the layout of `wikimedia/wikipedia` (pt) rows.

Lead and sections become paragraphs separated by one blank line; a heading becomes a line of its own.
Templates, infoboxes, <ref>s, tables, file embeds and categories are dropped, links become their label,
and back-matter sections ("Referências", "Ligações externas", …) are cut. Uses mwparserfromhell.
"""
from __future__ import annotations

import re
import unicodedata

import mwparserfromhell
from mwparserfromhell.nodes import (Argument, Comment, ExternalLink, Heading, HTMLEntity, Tag, Template, Text,
                                    Wikilink)

# Sections that hold no article prose; compared after `_fold` (lowercase, no accents).
DROPPED_SECTIONS = {
    "referencias", "referencias bibliograficas", "notas", "notas e referencias", "referencias e notas",
    "notas de rodape", "ligacoes externas", "links externos", "ver tambem", "bibliografia", "fontes",
    "leitura adicional", "leituras adicionais", "outras leituras", "galeria", "galeria de imagens",
}
# Link namespaces that embed media or tag the page instead of showing text (pt and en spellings).
HIDDEN_LINK_NAMESPACES = {"ficheiro", "arquivo", "imagem", "file", "image", "media", "categoria", "category"}
# Tags whose content is not prose (citations, tables, formulas, media).
DROPPED_TAGS = {
    "ref", "references", "table", "gallery", "math", "chem", "ce", "timeline", "imagemap", "score", "graph",
    "mapframe", "maplink", "templatestyles", "syntaxhighlight", "source", "hiero", "inputbox", "categorytree",
}
# Of those, the block-level ones: like in the rendered page, removing one ends the paragraph.
BLOCK_TAGS = {"table", "gallery", "references", "timeline", "imagemap", "graph", "mapframe"}
# The few inline templates whose argument is prose; every other template (infoboxes, citations,
# navboxes, maintenance tags) renders nothing. Value = which positional argument holds the text.
INLINE_TEMPLATES = {"lang": 2, "nowrap": 1, "nobr": 1}
DISAMBIGUATION_TEMPLATES = {"desambiguação", "desambiguacao", "desambig", "disambig", "dab", "disambiguation"}

# Marks where something was removed, so a line that only held removed markup can vanish without
# leaving a spurious paragraph break, and "Lisboa {{nota}}." does not become "Lisboa .".
_GONE = "\x00"
_BREAK = "\x01"  # marks a removed block (see BLOCK_TAGS)
_MAGIC_WORD = re.compile(r"__[A-ZÀ-Ý]+__")
_SPACE_BEFORE_PUNCT = re.compile(r"[ \t]*\x00[\x00 \t]*(?=[.,;:!?)\]])")
_DISAMBIGUATION_HINT = re.compile(r"\{\{\s*(desambig|disambig|dab\s*[|}])", re.IGNORECASE)
_SPACES = re.compile(r"[ \t\u00a0\u2002-\u200a\u202f\u3000]+")


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text.casefold())
    return " ".join("".join(c for c in text if not unicodedata.combining(c)).split())


def _template_name(template: Template) -> str:
    return " ".join(str(template.name).replace("_", " ").split()).casefold()


def is_disambiguation(wikitext: str) -> bool:
    """True for disambiguation pages ({{Desambiguação}}, {{desambig}}, {{disambig}}, __DISAMBIG__)."""
    if "__DISAMBIG__" in wikitext or "__DESAMBIGUAÇÃO__" in wikitext:
        return True
    if not _DISAMBIGUATION_HINT.search(wikitext):
        return False  # cheap pre-check: parsing every page twice would double the dump's load time
    code = mwparserfromhell.parse(wikitext)
    return any(_template_name(t) in DISAMBIGUATION_TEMPLATES for t in code.filter_templates(recursive=False))


def _render(nodes) -> str:
    return "".join(_render_node(node) for node in nodes)


def _render_node(node) -> str:
    if isinstance(node, Text):
        return node.value
    if isinstance(node, Wikilink):
        title = str(node.title).strip()
        shown_as_link = title.startswith(":")  # [[:Categoria:X]] links to a category instead of tagging
        title = title.lstrip(":").strip()
        namespace = title.split(":", 1)[0].strip().casefold() if ":" in title else ""
        if namespace in HIDDEN_LINK_NAMESPACES and not shown_as_link:
            return _GONE
        if node.text is not None:
            return _render(node.text.nodes)
        return title
    if isinstance(node, Tag):
        tag = str(node.tag).strip().casefold()
        if tag in BLOCK_TAGS:
            return _BREAK
        if tag in DROPPED_TAGS:
            return _GONE
        if tag == "br":
            return "\n"
        if tag in ("li", "dt", "dd") and node.wiki_markup:
            return ""  # list/indent marker: the item text follows on the same line
        if node.self_closing or node.contents is None:
            return _GONE
        return _render(node.contents.nodes)
    if isinstance(node, Template):
        index = INLINE_TEMPLATES.get(_template_name(node))
        if index is not None and node.has(index):
            return _render(node.get(index).value.nodes)
        return _GONE
    if isinstance(node, ExternalLink):
        if node.title is not None:
            return _render(node.title.nodes)
        return str(node.url) if not node.brackets else _GONE
    if isinstance(node, HTMLEntity):
        return node.normalize()
    if isinstance(node, (Comment, Argument)):
        return _GONE
    if isinstance(node, Heading):  # only reached for headings nested in tags: keep as text
        return "\n" + _render(node.title.nodes).strip() + "\n"
    return _GONE


def _paragraphs(raw: str) -> list[str]:
    raw = _MAGIC_WORD.sub(_GONE, raw)
    raw = _SPACE_BEFORE_PUNCT.sub("", raw)
    raw = raw.replace(_BREAK, "\n\n")
    paragraphs, current = [], []
    for line in raw.split("\n"):
        if not line.replace(_GONE, "").strip():
            if _GONE in line:
                continue  # the line held only removed inline markup (an image, a category): not a break
            if current:
                paragraphs.append("\n".join(current))
                current = []
            continue
        current.append(_SPACES.sub(" ", line.replace(_GONE, "")).strip())
    if current:
        paragraphs.append("\n".join(current))
    return paragraphs


def _drop_empty_headings(blocks: list[tuple[int, str]]) -> list[str]:
    """Keep a heading only if some paragraph follows it before a heading of the same or higher level."""
    kept = []
    for i, (level, text) in enumerate(blocks):
        if level:
            has_body = False
            for next_level, _ in blocks[i + 1:]:
                if next_level and next_level <= level:
                    break
                if not next_level:
                    has_body = True
                    break
            if not has_body:
                continue
        kept.append(text)
    return kept


def wikitext_to_text(wikitext: str) -> str:
    """Plain text of an article's wikitext: paragraphs and headings separated by blank lines."""
    code = mwparserfromhell.parse(wikitext)
    blocks: list[tuple[int, str]] = []  # (heading level or 0 for a paragraph, text)
    buffer: list[str] = []
    skip_level = 0  # > 0 while inside a dropped section and its subsections

    def flush():
        if buffer:
            blocks.extend((0, p) for p in _paragraphs("".join(buffer)))
            buffer.clear()

    for node in code.nodes:
        if isinstance(node, Heading):
            if skip_level and node.level > skip_level:
                continue
            skip_level = 0
            flush()
            title = " ".join(_render(node.title.nodes).replace(_GONE, " ").split())
            if _fold(title) in DROPPED_SECTIONS:
                skip_level = node.level
            elif title:
                blocks.append((node.level, title))
            continue
        if not skip_level:
            buffer.append(_render_node(node))
    flush()
    return "\n\n".join(_drop_empty_headings(blocks))

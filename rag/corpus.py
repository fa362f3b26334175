"""Stream Portuguese Wikipedia articles as `{id, url, title, text}` dicts from any of the usual formats.

Accepted sources (`iter_articles(source)`): parquet shards of `wikimedia/wikipedia` (a file or a directory),
JSONL (ours or wikiextractor's `--json`, optionally .gz/.bz2), a Hugging Face dataset name
(`wikimedia/wikipedia:20231101.pt`, streamed, online only) and the official MediaWiki dump
`ptwiki-*-pages-articles*.xml[.bz2]`. Every reader works in constant memory.
"""
from __future__ import annotations

import bz2
import gzip
import json
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from xml.etree.ElementTree import ParseError, iterparse
from xml.parsers import expat

from models.errors import ProjectError

from .wikitext import is_disambiguation, wikitext_to_text

COLUMNS = ("id", "url", "title", "text")
WIKI_BASE = "https://pt.wikipedia.org/wiki/"
MAX_BAD_LINES = 100
PARQUET_BATCH_ROWS = 1024

_JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson", ".jsonl.gz", ".jsonl.bz2", ".json.gz", ".json.bz2")
_XML_NAME = re.compile(r"\.xml(-p\d+p\d+)?(\.bz2|\.gz)?$")  # also the split dumps: …articles1.xml-p1p105695.bz2
_WIKIEXTRACTOR_NAME = re.compile(r"^wiki_\d+(\.bz2|\.gz)?$")  # wikiextractor writes AA/wiki_00 without extension
# org/name:config; the config is required so a mistyped local path ("data/wiki_ptt") is not sent to the Hub.
_HF_NAME = re.compile(r"^[\w.-]+/[\w.-]+:[\w.-]+$")
_CURID_URL = re.compile(r"^(https?://[^/]+)/wiki/?\?curid=\d+$")
# A dump cut off mid-file ends the XML early; these expat errors only happen at the end of the input.
_XML_TRUNCATION_CODES = {expat.errors.codes[m] for m in (expat.errors.XML_ERROR_NO_ELEMENTS,
                                                           expat.errors.XML_ERROR_UNCLOSED_TOKEN,
                                                           expat.errors.XML_ERROR_PARTIAL_CHAR)}


class CorpusWarning(UserWarning):
    """Something the user should know about but that does not stop reading (e.g. a truncated dump)."""


@dataclass
class CorpusStats:
    """What a pass over a source saw; pass one to `iter_articles(stats=…)` to have it filled in."""

    articles: int = 0
    words: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason -> count (redirect, namespace, empty, …)
    truncated: bool = False
    bad_lines: list = field(default_factory=list)  # (file, line or row group, error), at most MAX_BAD_LINES

    def record_bad(self, file, where, error) -> None:
        self.skipped["malformed"] += 1
        if len(self.bad_lines) < MAX_BAD_LINES:
            self.bad_lines.append((str(file), where, str(error)))


def article_url(title: str, base: str = WIKI_BASE) -> str:
    return base + title.replace(" ", "_")


# ---------------------------------------------------------------------------------------------- dispatch

def iter_articles(source, *, skip_bad: bool = False, stats: CorpusStats | None = None,
                  limit: int | None = None) -> Iterator[dict]:
    """Yield `{id, url, title, text}` (all str) from `source`; see the module docstring for formats.

    Articles with empty text are skipped (reason "empty"); the XML dump also skips redirects,
    non-article namespaces and disambiguation pages. Malformed input raises ProjectError naming the
    file and line, unless `skip_bad`, which counts it under `stats.skipped["malformed"]`.
    """
    stats = stats if stats is not None else CorpusStats()
    if limit is not None and limit <= 0:
        return
    for article in _iter_raw(source, skip_bad, stats):
        if not article["text"].strip():
            stats.skipped["empty"] += 1
            continue
        stats.articles += 1
        stats.words += len(article["text"].split())
        yield article
        if limit is not None and stats.articles >= limit:
            return


def load_articles(source, **kw) -> list[dict]:
    """All articles of `source` in a list (for small corpora; use `iter_articles` for a dump)."""
    return list(iter_articles(source, **kw))


def corpus_summary(source, **kw) -> dict:
    """`{"articles", "skipped", "words", "truncated"}` after one pass over `source`."""
    stats = kw.pop("stats", None) or CorpusStats()
    for _ in iter_articles(source, stats=stats, **kw):
        pass
    return {"articles": stats.articles, "skipped": dict(sorted(stats.skipped.items())), "words": stats.words,
            "truncated": stats.truncated}


def _iter_raw(source, skip_bad: bool, stats: CorpusStats) -> Iterator[dict]:
    text = str(source)
    path = Path(text).expanduser()
    if not path.exists():
        name = _hf_dataset_name(text)
        if name:
            yield from _iter_hf(*name)
            return
        raise ProjectError(f"fonte do corpus não encontrada: {text}",
                           hint="passe um .parquet, .jsonl, dump .xml.bz2, um diretório ou org/dataset:config")
    files = _files_in(path) if path.is_dir() else [(path, _kind_of(path))]
    for file, kind in files:
        if kind == "parquet":
            yield from _iter_parquet(file, skip_bad, stats)
        elif kind == "jsonl":
            yield from _iter_jsonl(file, skip_bad, stats)
        elif kind == "xml":
            yield from _iter_xml(file, skip_bad, stats)
        else:
            raise ProjectError(f"formato não reconhecido: {file}",
                               hint="use .parquet, .jsonl(.gz/.bz2) ou pages-articles .xml(.bz2)")


def _kind_of(path: Path) -> str | None:
    return _kind_by_name(path) or _sniff(path)


def _sniff(path: Path) -> str | None:
    """Guess an extensionless file's format from its first non-blank byte."""
    try:
        with _open_binary(path) as fh:
            head = fh.read(512).lstrip()
    except (OSError, EOFError):
        return None
    return {b"{": "jsonl", b"<": "xml"}.get(head[:1])


def _files_in(directory: Path) -> list[tuple[Path, str]]:
    """Supported files directly in `directory`, by name; else wikiextractor's AA/wiki_00 layout."""
    candidates = sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))
    found = [(p, k) for p in candidates if (k := _kind_by_name(p))]
    if not found:
        found = [(p, "jsonl") for p in sorted(directory.glob("*/wiki_*"))
                 if p.is_file() and _WIKIEXTRACTOR_NAME.match(p.name)]
    if not found:
        raise ProjectError(f"nenhum arquivo de corpus em {directory}",
                           hint="o diretório deve ter shards .parquet, arquivos .jsonl ou um dump .xml.bz2")
    return found


def _kind_by_name(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(_JSONL_SUFFIXES) or _WIKIEXTRACTOR_NAME.match(name):
        return "jsonl"
    if _XML_NAME.search(name):
        return "xml"
    return None


def _open_binary(path: Path):
    name = path.name.lower()
    if name.endswith(".bz2"):
        return bz2.open(path, "rb")
    if name.endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")


class _SingleReads:
    """File wrapper whose read() is one read1(): a truncated .bz2/.gz then raises only after every complete
    chunk was handed over (BufferedReader.read(n) would discard what it had gathered for n)."""

    def __init__(self, fh):
        self._fh = fh

    def read(self, size: int = -1) -> bytes:
        return self._fh.read1(size if size and size > 0 else 1 << 16)


def _lines(fh) -> Iterator[bytes]:
    """Complete lines of a binary file, read with single reads (see `_SingleReads`)."""
    reader, pending = _SingleReads(fh), b""
    while chunk := reader.read(1 << 16):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from complete
    if pending:
        yield pending


def _warn_truncated(path: Path, stats: CorpusStats, detail: str) -> None:
    stats.truncated = True
    warnings.warn(f"{path} termina no meio ({detail}); lidos os {stats.articles} artigos completos anteriores "
                  f"— baixe o arquivo de novo se quiser o resto", CorpusWarning, stacklevel=3)


# ---------------------------------------------------------------------------------------------- parquet

def _iter_parquet(path: Path, skip_bad: bool, stats: CorpusStats) -> Iterator[dict]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        shard = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        if not skip_bad:
            raise ProjectError(f"{path} não é um parquet legível: {exc}",
                               hint="baixe o shard de novo ou use --skip-bad para ignorá-lo") from None
        stats.record_bad(path, None, exc)
        return
    schema = shard.schema_arrow
    missing = [c for c in COLUMNS if c not in schema.names]
    if missing:
        raise ProjectError(f"{path} não tem as colunas {', '.join(missing)} (tem: {', '.join(schema.names)})",
                           hint="o esquema esperado é o de wikimedia/wikipedia: id, url, title, text")
    # Row group by row group so a corrupt group costs only its own rows and memory stays one batch.
    for group in range(shard.num_row_groups):
        try:
            for batch in shard.iter_batches(batch_size=PARQUET_BATCH_ROWS, row_groups=[group], columns=list(COLUMNS)):
                columns = [batch.column(c).to_pylist() for c in COLUMNS]
                for ident, url, title, text in zip(*columns):
                    yield {"id": _as_str(ident), "url": url or article_url(title or ""),
                           "title": title or "", "text": text or ""}
        except (pa.ArrowException, OSError) as exc:
            if not skip_bad:
                raise ProjectError(f"{path}, grupo de linhas {group}: parquet corrompido ({exc})",
                                   hint="baixe o shard de novo ou use --skip-bad para ignorar o grupo") from None
            stats.record_bad(path, f"grupo {group}", exc)


def _as_str(value) -> str:
    return "" if value is None else str(value)


# ---------------------------------------------------------------------------------------------- JSONL

def _iter_jsonl(path: Path, skip_bad: bool, stats: CorpusStats) -> Iterator[dict]:
    line_no = 0
    try:
        with _open_binary(path) as fh:
            for line_no, raw in enumerate(_lines(fh), start=1):
                if not raw.strip():
                    continue
                try:
                    article = _article_from_record(json.loads(raw))
                except (ValueError, TypeError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
                    if not skip_bad:
                        raise ProjectError(f"linha {line_no} de {path} não é um artigo válido: {exc}",
                                           hint="corrija a linha ou use --skip-bad") from None
                    stats.record_bad(path, line_no, exc)
                    continue
                yield article
    except EOFError:  # a .gz/.bz2 cut off mid-stream
        _warn_truncated(path, stats, f"compressão interrompida depois da linha {line_no}")
    except OSError as exc:
        raise ProjectError(f"não foi possível ler {path}: {exc}", hint="o arquivo está corrompido?") from None


def _article_from_record(record) -> dict:
    """Our schema or wikiextractor's {"id","revid","url","title","text"}; extra keys are ignored."""
    if not isinstance(record, dict):
        raise ValueError(f"esperado um objeto JSON, veio {type(record).__name__}")
    for key in ("id", "title", "text"):
        if key not in record or record[key] is None:
            raise ValueError(f"falta o campo '{key}'")
    title, text = record["title"], record["text"]
    if not isinstance(title, str) or not isinstance(text, str):
        raise ValueError("'title' e 'text' devem ser strings")
    url = record.get("url") or ""
    curid = _CURID_URL.match(url)
    if curid:  # wikiextractor writes …/wiki?curid=N; the hub dataset uses the title URL
        url = article_url(title, curid.group(1) + "/wiki/")
    return {"id": str(record["id"]), "url": url or article_url(title), "title": title, "text": text}


# ---------------------------------------------------------------------------------------------- Hugging Face

def _hf_dataset_name(text: str) -> tuple[str, str | None] | None:
    """`org/name:config` or `hf://[datasets/]org/name[/config]` -> (name, config)."""
    if text.startswith("hf://"):
        parts = [p for p in text[len("hf://"):].split("/") if p]
        if parts and parts[0] == "datasets":
            parts = parts[1:]
        if len(parts) < 2:
            return None
        return "/".join(parts[:2]), ("/".join(parts[2:]) or None)
    if _HF_NAME.match(text):
        name, _, config = text.partition(":")
        return name, config or None
    return None


def _iter_hf(name: str, config: str | None) -> Iterator[dict]:
    label = f"{name}:{config}" if config else name
    hint = "sem internet, baixe os shards .parquet do dataset e passe o diretório"
    try:
        import datasets
    except ImportError:
        raise ProjectError("o pacote 'datasets' não está instalado", hint="pip install datasets") from None
    try:
        rows = datasets.load_dataset(name, config, split="train", streaming=True)
        rows = iter(rows)
    except Exception as exc:  # offline mode, unknown dataset, network errors: all end the same way for the user
        raise ProjectError(f"não foi possível abrir o dataset {label} do Hugging Face Hub: "
                           f"{type(exc).__name__}: {exc}".splitlines()[0], hint=hint) from None
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except Exception as exc:
            raise ProjectError(f"leitura do dataset {label} interrompida: {type(exc).__name__}: {exc}".splitlines()[0],
                               hint=hint) from None
        yield {"id": _as_str(row.get("id")), "url": row.get("url") or article_url(row.get("title") or ""),
               "title": row.get("title") or "", "text": row.get("text") or ""}


# ---------------------------------------------------------------------------------------------- XML dump

def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _iter_xml(path: Path, skip_bad: bool, stats: CorpusStats) -> Iterator[dict]:
    """Pages of a MediaWiki export, one at a time: each <page> is cleared once read, so memory stays flat.

    iterparse (not mwxml) because it hands over every complete page before a cut-off tail raises.
    """
    base = WIKI_BASE
    root = None
    try:
        with _open_binary(path) as fh:
            for event, elem in iterparse(_SingleReads(fh), events=("start", "end")):
                if root is None:
                    root = elem
                if event != "end":
                    continue
                tag = _local(elem.tag)
                if tag == "base" and elem.text and "/wiki/" in elem.text:
                    base = elem.text.split("/wiki/", 1)[0] + "/wiki/"
                elif tag == "page":
                    article = _article_from_page(elem, base, stats, path, skip_bad)
                    # Drop the page and every finished sibling the root still holds.
                    elem.clear()
                    root.clear()
                    if article:
                        yield article
    except EOFError:
        _warn_truncated(path, stats, "compressão interrompida")
    except ParseError as exc:
        line, column = exc.position
        if exc.code in _XML_TRUNCATION_CODES:
            _warn_truncated(path, stats, f"XML incompleto na linha {line}")
        elif skip_bad:
            stats.record_bad(path, line, exc)
            warnings.warn(f"{path}: XML inválido na linha {line}, coluna {column}; leitura parada ali",
                          CorpusWarning, stacklevel=2)
        else:
            raise ProjectError(f"{path}: XML inválido na linha {line}, coluna {column} ({exc})",
                               hint="baixe o dump de novo ou use --skip-bad para parar ali") from None
    except OSError as exc:
        raise ProjectError(f"não foi possível ler {path}: {exc}",
                           hint="o arquivo está corrompido? baixe o dump de novo") from None


def _article_from_page(page, base: str, stats: CorpusStats, path: Path, skip_bad: bool) -> dict | None:
    title = ns = page_id = wikitext = None
    redirect = False
    for child in page:
        tag = _local(child.tag)
        if tag == "title":
            title = child.text or ""
        elif tag == "ns":
            ns = (child.text or "").strip()
        elif tag == "id":
            page_id = (child.text or "").strip()
        elif tag == "redirect":
            redirect = True
        elif tag == "revision":
            for part in child:
                if _local(part.tag) == "text":
                    wikitext = part.text or ""
    if ns is not None and ns != "0":
        stats.skipped["namespace"] += 1
        return None
    wikitext = wikitext or ""
    if redirect or re.match(r"\s*#(redirect|redirecionamento)", wikitext, re.IGNORECASE):
        stats.skipped["redirect"] += 1
        return None
    if is_disambiguation(wikitext):
        stats.skipped["disambiguation"] += 1
        return None
    title = title or ""
    try:
        text = wikitext_to_text(wikitext)
    except Exception as exc:  # mwparserfromhell gives up on some pathological markup; one page must not end a dump
        if not skip_bad:
            raise ProjectError(f"{path}: não foi possível converter a página {page_id} ({title}): {exc}",
                               hint="use --skip-bad para ignorá-la") from None
        stats.record_bad(path, f"página {page_id}", exc)
        return None
    return {"id": page_id or "", "url": article_url(title, base), "title": title, "text": text}

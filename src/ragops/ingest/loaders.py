"""Turn one input (file bytes or a structured row) into documents, or into a rejection.

Each loader returns a :class:`LoadResult`: the documents it could read and the reasons for
what it could not. Nothing here touches storage; :mod:`ragops.ingest.ingest` decides what
to write. A rejection names what is wrong so a person can fix the file:

====================  ============================================================
reason_code           meaning
====================  ============================================================
empty                 0 bytes, or nothing but whitespace after text extraction
too_short             fewer characters of text than ``min_document_chars``
too_large             bigger than ``max_document_bytes``
binary                NUL bytes / control characters: not a text document
encoding              not UTF-8 and no confident guess at another encoding
parse_error           broken PDF / JSON / HTML, or a malformed JSONL line
no_text               a PDF without extractable text (scanned; needs OCR)
missing_field         a JSON record or table row without the id / text field
unsupported           a file type ragops does not load
bad_allowed_groups    an ``allowed_groups`` value or ``.acl.json`` sidecar that is not a list
                      of group names (see :mod:`ragops.ingest.access`)
orphan_sidecar        an ``.acl.json`` sidecar without the document it is named after
====================  ============================================================
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import PurePosixPath
from typing import Any

from ragops.errors import RagopsError

SUPPORTED_SUFFIXES = (".md", ".markdown", ".txt", ".html", ".htm", ".pdf", ".json", ".jsonl", ".csv", ".parquet")


@dataclass
class Document:
    doc_id: str
    source_uri: str
    format: str
    title: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def content_hash(self) -> str:
        return content_hash(self.title, self.text)


@dataclass
class Rejection:
    source_uri: str
    format: str
    reason_code: str
    reason: str


@dataclass
class LoadResult:
    documents: list[Document] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


class LoadError(RagopsError, ValueError):
    def __init__(self, reason_code: str, reason: str) -> None:
        super().__init__(reason)
        self.reason_code = reason_code
        self.reason = reason


def content_hash(title: str, text: str) -> str:
    return hashlib.sha256(f"{title}\x00{text}".encode()).hexdigest()


# --- text decoding ------------------------------------------------------------------------

def decode_text(data: bytes) -> tuple[str, str]:
    """Decode bytes to text: UTF-8 (BOM allowed), else a confident charset guess.

    Returns ``(text, encoding)``. Raises :class:`LoadError` for binary data or text whose
    encoding cannot be determined.
    """
    head = data[:8192]
    if b"\x00" in head:
        raise LoadError("binary", "contains NUL bytes: this is a binary file, not a text document")
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError as exc:
        first_bad = exc.start
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None or best.encoding is None:
        raise LoadError(
            "encoding",
            f"not valid UTF-8 (first bad byte at offset {first_bad}) and no other encoding fits; "
            "re-save the file as UTF-8",
        )
    text, encoding = str(best), best.encoding
    if _LATIN_FAMILY.match(encoding or ""):
        # Detectors confuse the single-byte Latin code pages (cp1250 read 'naïve' as 'naďve' here);
        # like browsers (WHATWG), read such bytes as windows-1252 when they are valid there.
        try:
            western = data.decode("cp1252")
            if not re.search(r"[\x80-\x9f]", western):
                text, encoding = western, "cp1252"
        except UnicodeDecodeError:
            pass
    if _control_ratio(text) > 0.05:
        raise LoadError("binary", "mostly control characters after decoding: not a text document")
    return text, encoding


_LATIN_FAMILY = re.compile(r"^(cp125[0-8]|iso8859_\d+|latin_?\d|mac_\w+|windows_125\d)$", re.I)


def _control_ratio(text: str) -> float:
    if not text:
        return 0.0
    sample = text[:8192]
    bad = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\n\r\t\f")
    return bad / len(sample)


def _clean(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def _title_from_stem(rel: str) -> str:
    stem = PurePosixPath(rel).stem
    return re.sub(r"[-_]+", " ", stem).strip().capitalize() or rel


# --- per-format loaders -------------------------------------------------------------------

_FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.S)


def load_markdown(data: bytes, rel: str) -> LoadResult:
    text, enc = decode_text(data)
    text = _clean(text)
    meta: dict[str, Any] = {"encoding": enc} if enc != "utf-8" else {}
    m = _FRONT_MATTER.match(text + "\n")
    if m:
        import yaml

        try:
            fm = yaml.safe_load(m.group(1)) or {}
            if isinstance(fm, dict):
                meta.update({str(k): v for k, v in fm.items()})
        except yaml.YAMLError:
            pass
        text = text[m.end() :].strip()
    h1 = re.search(r"^#\s+(.+?)\s*#*\s*$", text, re.M)
    title = str(meta.pop("title", "")) or (h1.group(1).strip() if h1 else _title_from_stem(rel))
    return _single(rel, "md", title, text, meta)


def load_text(data: bytes, rel: str) -> LoadResult:
    text, enc = decode_text(data)
    text = _clean(text)
    meta = {"encoding": enc} if enc != "utf-8" else {}
    first, _, rest = text.partition("\n")
    title = first.strip() if first.strip() and len(first) <= 120 and rest.startswith("\n") else _title_from_stem(rel)
    return _single(rel, "txt", title, text, meta)


class _HTMLText(HTMLParser):
    """Readable text from HTML: drops script/style/nav chrome, keeps headings as markdown."""

    SKIP = {"script", "style", "nav", "noscript", "svg", "template", "footer", "header", "form", "button"}
    BLOCK = {"p", "div", "section", "article", "main", "li", "tr", "table", "ul", "ol", "pre", "blockquote",
             "br", "hr", "dd", "dt", "figcaption"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self._skip = 0
        self._in_title = False
        self._heading: int | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self._skip += 1
        elif self._skip:
            return
        elif tag == "title":
            self._in_title = True
        elif re.fullmatch(r"h[1-6]", tag):
            self._heading = int(tag[1])
            self.parts.append("\n\n" + "#" * self._heading + " ")
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag in ("td", "th"):
            self.parts.append(" | ")
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self._skip = max(0, self._skip - 1)
        elif self._skip:
            return
        elif tag == "title":
            self._in_title = False
        elif re.fullmatch(r"h[1-6]", tag):
            self._heading = None
            self.parts.append("\n\n")
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif not self._skip:
            self.parts.append(re.sub(r"\s+", " ", data) if self._heading is None else data.strip())


def load_html(data: bytes, rel: str) -> LoadResult:
    text, enc = decode_text(data)
    parser = _HTMLText()
    try:
        parser.feed(text)
        parser.close()
    except Exception as exc:  # html.parser is lenient; this is for truly broken input
        raise LoadError("parse_error", f"HTML could not be parsed: {exc}") from exc
    body = _clean("\n".join(line.strip() for line in "".join(parser.parts).split("\n")))
    h1 = re.search(r"^#\s+(.+)$", body, re.M)
    title = parser.title.strip() or (h1.group(1).strip() if h1 else _title_from_stem(rel))
    meta = {"encoding": enc} if enc != "utf-8" else {}
    return _single(rel, "html", title, body, meta)


def load_pdf(data: bytes, rel: str) -> LoadResult:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    if not data.lstrip().startswith(b"%PDF-"):
        raise LoadError("parse_error", "not a PDF: the file does not start with a %PDF- header")
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        pages = [page.extract_text() or "" for page in reader.pages]
        info = reader.metadata or {}
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise LoadError("parse_error", f"broken or truncated PDF: {exc}") from exc
    except Exception as exc:  # pypdf raises assorted errors on damaged files
        raise LoadError("parse_error", f"broken or truncated PDF ({type(exc).__name__}: {exc})") from exc
    text = _clean("\n\n".join(pages))
    if not text:
        raise LoadError("no_text", f"PDF has {len(pages)} page(s) but no extractable text (scanned? needs OCR)")
    title = str(info.get("/Title") or "").strip() or text.split("\n", 1)[0].strip()[:120]
    return _single(rel, "pdf", title, text, {"pages": len(pages)})


def _record_doc(rec: Any, rel: str, fmt: str, where: str, cols: tuple[str, str, str]) -> Document:
    id_col, title_col, text_col = cols
    if not isinstance(rec, dict):
        raise LoadError("parse_error", f"{where}: expected a JSON object, got {type(rec).__name__}")
    rid = rec.get("_id", rec.get(id_col))
    if rid is None or str(rid).strip() == "":
        raise LoadError("missing_field", f"{where}: no '_id' or '{id_col}' field")
    text = rec.get(text_col)
    if not isinstance(text, str):
        raise LoadError("missing_field", f"{where}: no string '{text_col}' field")
    text = _clean(text)
    if not text:
        raise LoadError("empty", f"{where}: '{text_col}' is empty")
    title = str(rec.get(title_col) or "").strip()
    extra = {k: v for k, v in rec.items() if k not in {"_id", id_col, text_col, title_col}}
    meta = extra.pop("metadata", {}) if isinstance(extra.get("metadata"), dict) else {}
    meta.update(extra)
    meta["external_id"] = str(rid)
    from ragops.ingest.access import TEXT_CELL_FORMATS, take_groups  # access imports LoadError from here

    take_groups(meta, where, text_cell=fmt in TEXT_CELL_FORMATS)
    return Document(f"{rel}#{rid}", f"{rel}#{rid}", fmt, title or str(rid), text, meta)


def load_json(data: bytes, rel: str, cols: tuple[str, str, str] = ("id", "title", "text")) -> LoadResult:
    text, _ = decode_text(data)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LoadError("parse_error", f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    if isinstance(obj, dict) and not isinstance(obj.get(cols[2]), str) and isinstance(obj.get("documents"), list):
        obj = obj["documents"]
    if isinstance(obj, dict):  # one document per file: its id is the file path
        doc = _record_doc({**obj, "_id": obj.get("_id", obj.get(cols[0], "x"))}, rel, "json", rel, cols)
        doc.doc_id = doc.source_uri = rel
        return LoadResult([doc])
    if isinstance(obj, list):
        return _records(((i, rec) for i, rec in enumerate(obj)), rel, "json", cols, lambda i: f"{rel}[{i}]")
    raise LoadError("parse_error", f"expected a JSON object or list of objects, got {type(obj).__name__}")


def load_jsonl(data: bytes, rel: str, cols: tuple[str, str, str] = ("id", "title", "text")) -> LoadResult:
    text, _ = decode_text(data)
    rows: list[tuple[int, Any]] = []
    result = LoadResult()
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((lineno, json.loads(line)))
        except json.JSONDecodeError as exc:
            result.rejections.append(
                Rejection(f"{rel}:{lineno}", "jsonl", "parse_error", f"line {lineno}: invalid JSON ({exc.msg})")
            )
    sub = _records(iter(rows), rel, "jsonl", cols, lambda n: f"{rel}:{n}", line_label=True)
    result.documents += sub.documents
    result.rejections += sub.rejections
    return result


def load_csv(data: bytes, rel: str, cols: tuple[str, str, str] = ("id", "title", "text")) -> LoadResult:
    text, _ = decode_text(data)
    reader = csv.DictReader(io.StringIO(text))
    _require_columns(reader.fieldnames or [], rel, cols)
    return _records(((i + 2, row) for i, row in enumerate(reader)), rel, "csv", cols, lambda n: f"{rel}:{n}", True)


def load_parquet(data: bytes, rel: str, cols: tuple[str, str, str] = ("id", "title", "text")) -> LoadResult:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(data))
    except Exception as exc:
        raise LoadError("parse_error", f"unreadable Parquet file: {exc}") from exc
    return records_from_table(table.to_pylist(), table.column_names, rel, "parquet", cols)


def records_from_table(
    rows: list[dict[str, Any]], columns: list[str], rel: str, fmt: str, cols: tuple[str, str, str]
) -> LoadResult:
    """Documents from rows of a structured source (Parquet, a Delta table, a DataFrame)."""
    _require_columns(columns, rel, cols)
    return _records(((i, row) for i, row in enumerate(rows)), rel, fmt, cols, lambda i: f"{rel}[row {i}]")


def _require_columns(columns: list[str], rel: str, cols: tuple[str, str, str]) -> None:
    missing = [c for c in (cols[0], cols[2]) if c not in columns]
    if missing:
        raise LoadError(
            "missing_field",
            f"columns {missing} not found (has {columns}); set --var id_column=… / --var text_column=…",
        )


def _records(rows, rel: str, fmt: str, cols: tuple[str, str, str], label, line_label: bool = False) -> LoadResult:
    result = LoadResult()
    seen: set[str] = set()
    for pos, rec in rows:
        where = label(pos)
        try:
            if isinstance(rec, dict) and cols[0] != "id" and "_id" not in rec and cols[0] in rec:
                rec = {**rec, "_id": rec[cols[0]]}
            doc = _record_doc(rec, rel, fmt, where, cols)
        except LoadError as exc:
            result.rejections.append(Rejection(where, fmt, exc.reason_code, exc.reason))
            continue
        if doc.doc_id in seen:
            result.rejections.append(
                Rejection(where, fmt, "duplicate_id", f"{where}: id {doc.metadata['external_id']!r} repeats")
            )
            continue
        seen.add(doc.doc_id)
        result.documents.append(doc)
    return result


def _single(rel: str, fmt: str, title: str, text: str, meta: dict[str, Any]) -> LoadResult:
    if not text.strip():
        raise LoadError("empty", "no text after extraction (the file is empty or whitespace only)")
    from ragops.ingest.access import take_groups  # access imports LoadError from here

    take_groups(meta, rel)  # Markdown front matter may name the groups
    return LoadResult([Document(rel, rel, fmt, title, text, meta)])


LOADERS = {
    ".md": load_markdown,
    ".markdown": load_markdown,
    ".txt": load_text,
    ".html": load_html,
    ".htm": load_html,
    ".pdf": load_pdf,
    ".json": load_json,
    ".jsonl": load_jsonl,
    ".csv": load_csv,
    ".parquet": load_parquet,
}
STRUCTURED = {".json", ".jsonl", ".csv", ".parquet"}


def drop_short(result: LoadResult, min_chars: int) -> LoadResult:
    """Move documents with fewer than ``min_chars`` characters of text into the rejections."""
    if min_chars <= 1:
        return result
    keep, short = [], []
    for doc in result.documents:
        (keep if len(doc.text.strip()) >= min_chars else short).append(doc)
    result.documents = keep
    result.rejections += [
        Rejection(d.source_uri, d.format, "too_short",
                  f"{d.source_uri}: {len(d.text.strip())} characters of text, fewer than "
                  f"{min_chars} (--var min_document_chars)") for d in short]
    return result


def load_bytes(
    data: bytes, rel: str, *, max_bytes: int, columns: tuple[str, str, str] = ("id", "title", "text"),
    min_chars: int = 1, allowed_groups: list[str] | None = None,
) -> LoadResult:
    """Load one file's bytes (``rel`` is its POSIX path relative to the source root).

    ``allowed_groups`` (from the file's ``.acl.json`` sidecar) applies to each document that names
    no groups of its own."""
    suffix = PurePosixPath(rel).suffix.lower()
    fmt = suffix.lstrip(".") or "unknown"
    loader = LOADERS.get(suffix)
    try:
        if loader is None:
            raise LoadError(
                "unsupported", f"unsupported file type {suffix or '(none)'}; supported: {', '.join(SUPPORTED_SUFFIXES)}"
            )
        if len(data) == 0:
            raise LoadError("empty", "the file is empty (0 bytes)")
        if len(data) > max_bytes:
            raise LoadError(
                "too_large", f"{len(data):,} bytes is over the limit of {max_bytes:,} (--var max_document_bytes)"
            )
        result = loader(data, rel, columns) if suffix in STRUCTURED else loader(data, rel)
    except LoadError as exc:
        return LoadResult(rejections=[Rejection(rel, fmt, exc.reason_code, exc.reason)])
    if not result.documents and not result.rejections:
        result.rejections.append(Rejection(rel, fmt, "empty", "no documents in the file"))
    if allowed_groups:
        for doc in result.documents:
            doc.metadata.setdefault("allowed_groups", sorted(set(allowed_groups)))
    return drop_short(result, min_chars)

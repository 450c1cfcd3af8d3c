"""Documents in (files, folders, globs, Delta tables) → ``raw_documents`` / ``rejected_documents``."""

from ragops.ingest.ingest import IngestSummary, SourceError, list_source_files, load_files, run_ingest
from ragops.ingest.loaders import Document, LoadResult, Rejection, load_bytes

__all__ = [
    "Document",
    "IngestSummary",
    "LoadResult",
    "Rejection",
    "SourceError",
    "list_source_files",
    "load_bytes",
    "load_files",
    "run_ingest",
]

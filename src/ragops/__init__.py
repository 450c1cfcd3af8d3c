"""ragops: take a retrieval-augmented LLM application from a notebook to production.

The package is organised one sub-package per concern; dependencies point downward:
``config`` ← ``lakehouse`` ← pipeline stages (``ingest``, ``chunking``, ``embedding``, ``index``)
← ``jobs`` ← ``bundle`` / ``cli``.
"""

__version__ = "0.1.0"

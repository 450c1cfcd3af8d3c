"""Guardrails: pure checks, text in → verdict out, run offline by the gateway and the evaluation."""

from __future__ import annotations

# PII detection and redaction (pii.py); explicit re-exports so each check's names stay on its own lines.
from ragops.guardrails.pii import PII_ENTITIES as PII_ENTITIES
from ragops.guardrails.pii import PiiSpan as PiiSpan
from ragops.guardrails.pii import UnknownPiiEntity as UnknownPiiEntity
from ragops.guardrails.pii import detect_pii as detect_pii
from ragops.guardrails.pii import redact as redact

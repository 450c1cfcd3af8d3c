"""Guardrails: pure checks, text in → verdict out, run offline by the gateway and the evaluation."""

from __future__ import annotations

# PII detection and redaction (pii.py); explicit re-exports so each check's names stay on its own lines.
from ragops.guardrails.pii import PII_ENTITIES as PII_ENTITIES
from ragops.guardrails.pii import PiiSpan as PiiSpan
from ragops.guardrails.pii import UnknownPiiEntity as UnknownPiiEntity
from ragops.guardrails.pii import detect_pii as detect_pii
from ragops.guardrails.pii import redact as redact

# isort: split
# Prompt injection, topic block lists, grounded answers, and the per-route policy the gateway runs.
from ragops.guardrails.grounded import GroundedVerdict as GroundedVerdict
from ragops.guardrails.grounded import check_grounded as check_grounded
from ragops.guardrails.injection import InjectionVerdict as InjectionVerdict
from ragops.guardrails.injection import detect_injection as detect_injection
from ragops.guardrails.policy import DEFAULT_POLICY as DEFAULT_POLICY
from ragops.guardrails.policy import GuardrailChecks as GuardrailChecks
from ragops.guardrails.policy import GuardrailPolicy as GuardrailPolicy
from ragops.guardrails.policy import evaluate_text as evaluate_text
from ragops.guardrails.policy import parse_policy as parse_policy
from ragops.guardrails.topics import TopicBlocklist as TopicBlocklist
from ragops.guardrails.topics import check_topics as check_topics

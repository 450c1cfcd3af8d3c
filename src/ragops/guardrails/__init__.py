"""Guardrails: pure checks, text in → verdict out, run offline by the gateway and the evaluation."""

from __future__ import annotations

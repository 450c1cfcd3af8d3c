"""Prompt-injection / jailbreak detection: interpretable rules plus a small shipped n-gram model
(or, opt-in, a sentence-embedding head).

``detect_injection(text) -> InjectionVerdict``: pure, offline (nothing is downloaded), ~1 ms.

The detectors' highest score wins:

- **rules** (``RULES``): regular expressions for the classic patterns, each with a name shown in
  the verdict — "ignore/disregard/forget the previous instructions", role-play jailbreak markers
  (DAN / "Do Anything Now", developer mode, "you are going to pretend to be", "stay in
  character", "no restrictions"), and system-prompt extraction ("show me your system prompt",
  "repeat the text above", "your initial instructions"). A rule needs an *instruction-override*
  shape, not a word: "how do I ignore case in Python?" or "what does the system prompt setting
  do?" match nothing. Evasions: the rules also read the text with spaced-out letters joined and
  base64 runs decoded, and the override pattern in French, Spanish, Portuguese, Italian, German
  and Dutch.
- **model** (``injection_model.json``): a logistic regression over hashed character 3–5-grams and
  word 1–2-grams, trained by ``scripts/train_injection_model.py`` on the public development set
  (``../shared/datasets/guardrails/injection_dev.jsonl``), the project's hard negatives
  (``data/guardrails/hard_negatives.jsonl``) and outside corpora of attacks (Tensor Trust, GPTFuzz,
  JailbreakBench's artifacts, promptmap), benign instructions (Self-Instruct, T0) and role-play
  prompts (awesome-chatgpt-prompts); the data itself is not shipped, only the weights. Its 0.5 is
  calibrated to a 1% false-positive rate on benign questions from sources it did not see. It catches
  paraphrases the rules do not spell out; on a whole origin of attacks it was not trained on, rules
  and model together catch about a quarter (BENCHMARKS.md §12). Its weights are a JSON file read with the
  standard library, so scoring needs no scikit-learn at run time.
- **encoder** (opt-in, ``encoder=True``; :mod:`ragops.guardrails.injection_encoder`): a head on the
  project's sentence embeddings, in the n-gram model's place. It generalises better to unseen
  styles, at the cost of an embedding per call.

The verdict's ``score`` is in [0, 1]; ``flagged`` is ``score >= threshold`` (default 0.5).
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

DEFAULT_THRESHOLD = 0.5
MODEL_FILE = "injection_model.json"
#: The model's features (the training script and the scorer must agree).
CHAR_NGRAMS = (3, 5)
WORD_NGRAMS = (1, 2)
N_FEATURES = 1 << 17
#: Long prompts are scored on their first and last characters: jailbreaks put the override at
#: the start or the end, and it bounds the cost (latency budget 15 ms p95 at 128 tokens).
MAX_CHARS = 4000

_PREV = r"(?:previous|prior|preceding|above|earlier|former|foregoing|initial|original|following|all|any|the|your|my|these|those|other)"
_INSTR = r"(?:instructions?|prompts?|directions?|directives?|rules|guidelines|commands?|orders|context|programming|text|constraints|restrictions|guardrails)"

#: (name, score, pattern). Names are stable: they appear in verdicts and the inference log.
RULES: tuple[tuple[str, float, re.Pattern[str]], ...] = tuple(
    (name, score, re.compile(pattern, re.IGNORECASE | re.DOTALL)) for name, score, pattern in (
        ("ignore_previous_instructions", 0.97,
         rf"\b(?:ignore|disregard|forget|skip|override|bypass|drop|abandon|neglect)\b\W+(?:\w+\W+){{0,3}}?{_PREV}\W+(?:\w+\W+){{0,3}}?{_INSTR}\b"),
        ("forget_everything", 0.9,
         r"\b(?:forget|ignore|disregard)\s+(?:everything|all(?: of it| that)?)\s+(?:you(?:'ve| have)? (?:learned|been told|were told|know)|above|before|so far)"),
        ("nevermind_override", 0.9, r"\b(?:never\s?mind|stop everything)\b.{0,60}\b(?:just|only|instead)\s+(?:print|say|output|write|repeat)"),
        ("instead_print", 0.85, r"\b(?:and|then)\s+(?:just|instead|only)\s+(?:print|say|output|write)\s+[\"'“]"),
        ("do_anything_now", 0.97, r"\bdo anything now\b|\bDAN mode\b|\[DAN\]|\bDAN\b[^.]{0,40}\b(?:stands for|jailbreak)"),
        ("developer_mode", 0.95, r"\b(?:developer|god|jailbreak|unrestricted|evil|dev)\s+mode\s+(?:enabled|activated)\b|\bwith\s+(?:developer|dan|god)\s+mode\b"),
        ("roleplay_persona", 0.9,
         r"\byou are (?:going|about) to (?:pretend to be|act as|play the role of|immerse yourself into the role of)\b"
         r"|\bfrom now on,? you (?:are|will|must|shall)\b[^.]{0,80}\b(?:act|pretend|respond|answer|behave|role)"
         r"|\b(?:henceforth|from now on),? you(?:'ll| will) (?:operate|act|function) as\b"),
        ("no_restrictions", 0.9,
         r"\b(?:broken free of|free from) (?:the )?(?:typical |usual )?(?:confines|restrictions|limitations|filters|censorship)\b"
         r"|\bwithout any (?:restrictions|limitations|filters|censorship)\b"
         r"|\b(?:does|do) not have to abide by (?:the|any) rules\b|\bstay in character\b|\bcontent polic(?:y|ies)\b[^.]{0,40}\b(?:ignore|disregard|no longer|bypass)"),
        ("system_prompt_extraction", 0.95,
         r"\b(?:show|reveal|print|output|display|repeat|tell|give|share|leak|dump|disclose|recite|list|write out|translate|encode|spell)\b(?:\s+\w+){0,4}?\s+"
         r"(?:your|the|its|my|all)\s+(?:\w+\s+){0,2}?(?:system\s+(?:prompt|message|instructions?)|initial\s+(?:instructions?|prompt)|"
         r"hidden\s+(?:instructions?|prompt)|(?:original|secret|internal|developer|pre-?prompt)\s+(?:instructions?|prompt)|instructions you (?:were|have been) given)\b"),
        ("your_instructions", 0.9,
         r"\byour\s+(?:own\s+)?(?:system|initial|starting|original|hidden|secret|internal|first|underlying)\s+(?:prompt|instructions?|configuration|message|directives?)\b"
         r"|\b(?:what|which)\s+(?:are|were)\s+your\s+(?:\w+\s+)?instructions\b|\bsystem\s*prompt\b\s*\)|\bsystemPrompt\b"),
        ("system_prompt_request", 0.9,
         r"\b(?:see|show|display|reveal|print|dump|output|need|read|access)\b(?:\s+\w+){0,3}?\s+(?:the|your)\s+(?:full\s+|entire\s+|current\s+)?system\s+(?:prompt|configuration|instructions)\b"
         r"|\b(?:administrator|admin|maintenance|debug)\s+(?:override|mode)\b"),
        ("prior_context_probe", 0.85,
         r"\bwhat (?:were|was) you (?:told|given|instructed)\b|\bI was instructed to\b|\bmy instructions are\b"
         r"|\byou(?:'re| are) not supposed to (?:tell|say|reveal)\b|\b(?:repeat|recite)\s+(?:this|the)\s+(?:entire|whole)\s+conversation\b"
         r"|\b(?:text|instructions|prompt) you were given\b|\bthe system prompt is\s*:"),
        # Other languages (the override verb, "previous", "instructions"): French, Spanish, Portuguese,
        # Italian, German, Dutch.
        ("ignore_previous_multilingual", 0.95,
         r"\b(?:ignore[zr]?|oublie[zr]?|ignora[r]?|olvida[r]?|esquece[r]?|dimentica|ignoriere|vergiss|negeer|vergeet)\b"
         r"\W+(?:\w+\W+){0,3}?(?:pr[ée]c[ée]dentes?|anteriores?|precedenti|vorherigen?|bisherigen?|vorigen?|vorige|eerdere|toutes|todas|tutte|alle)\b"
         r"(?:\W+\w+){0,3}?\W+(?:instructions?|consignes|instrucciones|instru[çc][õo]es|istruzioni|anweisungen|befehle|instructies|regeln|r[èe]gles|reglas)\b"
         # Romance word order: "olvida tus instrucciones anteriores"
         r"|\b(?:oublie[zr]?|ignora[r]?|olvida[r]?|esquece[r]?|dimentica)\b\W+(?:\w+\W+){0,2}?"
         r"(?:instructions|consignes|instrucciones|instru[çc][õo]es|istruzioni|reglas|r[èe]gles)\W+(?:\w+\W+){0,1}?"
         r"(?:pr[ée]c[ée]dentes|anteriores|precedenti)\b"),
        ("rule_free_persona", 0.85,
         r"\b(?:AI|assistant|bot|chatbot|model)\b[^.]{0,30}\bwith(?:out)?\s+(?:no|any)\s+(?:rules|restrictions|limits|filters|guidelines|morals)\b"
         r"|\byou are (?:now )?\w*(?:bot|gpt|ai)\b,? an? (?:AI|assistant|bot|model) (?:with|without)\b"),
        ("override_marker", 0.9, r"\b(?:system|admin|developer|security)\s+override\b|\bnew instructions follow\b"),
        ("developer_mode_output", 0.9, r"\((?:\W\s*)?developer mode output\)|\bin developer mode\b"),
        ("system_prompt_tags", 0.9, r"<\s*/?\s*system[_ ]?prompt\s*>|\binitiali[sz]ation (?:string|prompt|text)\b"),
        ("text_above", 0.9,
         r"\b(?:repeat|output|print|show|copy|rewrite|encode)\b(?:\s+\w+){0,3}?\s+(?:the\s+)?(?:text|words|everything|content|instructions|message)\s+(?:above|before this|preceding)\b"
         r"|\b(?:what|which) were (?:those|the|your) (?:previous |original |initial )?instructions\b(?!\s+(?:for|of|on|in|to)\b)"),
        ("spell_check_instructions", 0.9, r"\b(?:spell[- ]?check|print|repeat|translate)\s+the\s+(?:previous|above|prior)\s+(?:instructions|prompt|text)\b"),
    ))


@dataclass(frozen=True)
class InjectionVerdict:
    flagged: bool
    score: float                        # max(rule score, model probability), in [0, 1]
    rules: tuple[str, ...] = ()         # names of the rules that matched
    model_score: float = 0.0
    threshold: float = DEFAULT_THRESHOLD
    detail: dict[str, Any] = field(default_factory=dict)
    encoder_score: float | None = None  # the semantic check's probability (None: it did not run)

    def as_dict(self) -> dict[str, Any]:
        out = {"flagged": self.flagged, "score": round(self.score, 4), "rules": list(self.rules),
               "model_score": round(self.model_score, 4), "threshold": self.threshold}
        if self.encoder_score is not None:
            out.update(encoder_score=round(self.encoder_score, 4), encoder=self.detail.get("encoder"))
        return out


def normalize(text: str) -> str:
    """NFKC (full-width and styled letters become plain), zero-width characters out, spaces squeezed:
    the same text for the rules and the model."""
    text = unicodedata.normalize("NFKC", text)
    text = re.sub(r"[\u200b-\u200f\u2060\ufeff]", "", text)
    return re.sub(r"\s+", " ", text).strip()


_SPACED = re.compile(r"(?<!\w)\w (?:\w ){2,}\w(?!\w)")
_BASE64 = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")


def _decoded_views(text: str) -> list[str]:
    """What an encoding hides, for the rules: spaced-out letters joined ("i g n o r e" → "ignore"),
    base64 runs decoded when they decode to text."""
    import base64
    import binascii

    views = []
    if _SPACED.search(text):  # letters one space apart, words two or more apart
        views.append(re.sub(r"(?<=(?<!\w)\w) (?=\w(?!\w))", "", re.sub(r"\s{2,}", "  ", text)))
    for m in _BASE64.finditer(text):
        blob = m.group(0)
        try:
            raw = base64.b64decode(blob + "=" * (-len(blob) % 4), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            continue
        if raw.isprintable() and sum(c.isalpha() or c == " " for c in raw) >= 0.8 * len(raw):
            views.append(raw)
    return views


def _clip(text: str) -> str:
    if len(text) <= MAX_CHARS:
        return text
    half = MAX_CHARS // 2
    return text[:half] + " " + text[-half:]


def _bucket(feature: str) -> int:
    return zlib.crc32(feature.encode("utf-8")) % N_FEATURES


def features(text: str) -> dict[int, float]:
    """Hashed char n-grams (within word boundaries, as scikit-learn's ``char_wb``) and word n-grams,
    l2-normalised term frequencies. Shared by the training script and the scorer."""
    low = text.lower()
    counts: dict[int, float] = {}
    for word in low.split():
        padded = f" {word} "
        for n in range(CHAR_NGRAMS[0], CHAR_NGRAMS[1] + 1):
            for i in range(max(1, len(padded) - n + 1)):
                b = _bucket("c" + padded[i:i + n])
                counts[b] = counts.get(b, 0.0) + 1.0
    words = re.findall(r"\w+", low)
    for n in range(WORD_NGRAMS[0], WORD_NGRAMS[1] + 1):
        for i in range(len(words) - n + 1):
            b = _bucket("w" + " ".join(words[i:i + n]))
            counts[b] = counts.get(b, 0.0) + 1.0
    norm = math.sqrt(sum(v * v for v in counts.values())) or 1.0
    return {k: v / norm for k, v in counts.items()}


@dataclass(frozen=True)
class LinearModel:
    weights: dict[int, float]
    bias: float
    meta: dict[str, Any]

    def score(self, text: str) -> float:
        z = self.bias + sum(v * self.weights.get(k, 0.0) for k, v in features(text).items())
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))

    def to_json(self) -> dict[str, Any]:
        return {"format": "ragops-injection-lr/1", "n_features": N_FEATURES, "char_ngrams": list(CHAR_NGRAMS),
                "word_ngrams": list(WORD_NGRAMS), "bias": self.bias, "meta": self.meta,
                "weights": {str(k): round(v, 5) for k, v in self.weights.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LinearModel:
        if data.get("format") != "ragops-injection-lr/1" or data.get("n_features") != N_FEATURES:
            raise ValueError("injection model: unknown format (rebuild it with scripts/train_injection_model.py)")
        return cls({int(k): float(v) for k, v in data["weights"].items()}, float(data["bias"]), dict(data.get("meta", {})))


def package_json(name: str) -> dict[str, Any] | None:
    """A JSON file shipped in ``ragops.guardrails`` (the trained weights), or None when it is absent."""
    try:
        raw = resources.files("ragops.guardrails").joinpath(name).read_text(encoding="utf-8")
    except (FileNotFoundError, OSError):
        return None
    return json.loads(raw)


@lru_cache(maxsize=1)
def shipped_model() -> LinearModel | None:
    """The model shipped in the package (None when it is absent: the rules still run)."""
    data = package_json(MODEL_FILE)
    return LinearModel.from_json(data) if data is not None else None


_NO_MODEL = object()


def detect_injection(text: str, *, threshold: float = DEFAULT_THRESHOLD, model: Any = _NO_MODEL,
                     use_rules: bool = True, encoder: bool = False) -> InjectionVerdict:
    """Score ``text`` for prompt injection / jailbreak. ``model``: a :class:`LinearModel` (default:
    the shipped one; None: rules only). ``use_rules=False``: the model only (for measuring it).
    ``encoder=True``: the semantic check (:mod:`ragops.guardrails.injection_encoder`, an embedding
    per call) takes the n-gram model's place beside the rules: held out by origin, the two together
    caught little more than the encoder and rules alone (0.578 vs 0.558) but flagged 1.16% of benign
    questions instead of 0.80% (BENCHMARKS.md §12). An explicit ``model`` still runs."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"injection threshold must be in (0, 1], got {threshold!r}")
    clean = _clip(normalize(text or ""))
    hits: tuple[str, ...] = ()
    if use_rules:
        views = [clean, *_decoded_views(text[:MAX_CHARS] if text else "")]
        hits = tuple(name for name, _, pattern in RULES if any(pattern.search(v) for v in views))
    rule_score = max((s for name, s, _ in RULES if name in hits), default=0.0)
    lm = (None if encoder else shipped_model()) if model is _NO_MODEL else model
    model_score = lm.score(clean) if lm is not None and clean else 0.0
    score = max(rule_score, model_score)
    enc_score, detail = None, {}
    if encoder and clean:
        from ragops.guardrails.injection_encoder import encoder_score

        enc_score, detail["encoder"] = encoder_score(clean)
        score = max(score, enc_score)
    return InjectionVerdict(flagged=score >= threshold, score=score, rules=hits, model_score=model_score,
                            threshold=threshold, detail=detail, encoder_score=enc_score)


__all__ = ["DEFAULT_THRESHOLD", "RULES", "InjectionVerdict", "LinearModel", "detect_injection", "features",
           "normalize", "shipped_model"]

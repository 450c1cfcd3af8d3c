"""A route's guardrail policy (from its ``guardrails:`` YAML block) and the checks the gateway runs.

The YAML block of a route (every key optional; absent block: :data:`DEFAULT_POLICY`)::

    guardrails:
      injection: {threshold: 0.5}            # block prompt injection / jailbreaks (false: off)
                                             # encoder: true adds the semantic check (~8 ms a request with bf16)
      pii:                                   # PII is always redacted in the inference log (false: off)
        entities: [EMAIL_ADDRESS, CREDIT_CARD, PERSON]   # default: the pattern types (PERSON is opt-in)
        redact_before_model: false           # true: the model sees <EMAIL_ADDRESS>, not the address
        redact_answer: false                 # true: PII in the answer is redacted before it is returned
      topics: [bitcoin, "stock tips"]        # block questions naming these (case-insensitive, whole words)
      grounded: {min_score: 0.5}             # refuse answers the retrieved context does not support (off by default)

``guardrails: false`` turns every check off for the route (nothing redacted in the log either).

:class:`GuardrailChecks` is the gateway's ``RequestChecks`` for one policy: ``before`` blocks a
question (HTTP 400, ``{"error": {"type": "guardrail", "code": "<check>", ...}}``, never passed to
the model) and optionally redacts it; ``after`` refuses an ungrounded answer (its text replaced by a
refusal, the sources kept) and optionally redacts it; ``redact_for_log`` is what the gateway applies
to the question and answer before they are logged. Every check appends its outcome to
``request.guardrails`` (``{"check", "stage", "action", ...}``; action ``pass``, ``blocked``,
``redacted``, ``refused``, ``skipped``), which the inference log stores.

:func:`evaluate_text` runs the same input checks on one text (``ragops guardrails check``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ragops.guardrails.grounded import DEFAULT_MIN_SCORE, REFUSAL, check_grounded
from ragops.guardrails.injection import DEFAULT_THRESHOLD, detect_injection
from ragops.guardrails.topics import TopicBlocklist

if TYPE_CHECKING:
    from ragops.serving.gateway.backends import Answer
    from ragops.serving.gateway.config import GatewayConfig

CHECKS = ("injection", "pii", "topics", "grounded")
#: What the default policy redacts: the pattern types (validated by checksums where they have one).
#: PERSON is opt-in (``pii: {entities: [..., PERSON]}``): the name model also flags capitalised
#: ordinary words ("Which", product names), which would garble the logged questions of every route.
DEFAULT_PII_ENTITIES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "US_SSN", "IP_ADDRESS")


@dataclass(frozen=True)
class InjectionPolicy:
    enabled: bool = True
    threshold: float = DEFAULT_THRESHOLD
    encoder: bool = False   # also the sentence-embedding check (ragops.guardrails.injection_encoder)


@dataclass(frozen=True)
class PiiPolicy:
    enabled: bool = True
    entities: tuple[str, ...] = DEFAULT_PII_ENTITIES
    redact_before_model: bool = False
    redact_answer: bool = False


@dataclass(frozen=True)
class GroundedPolicy:
    enabled: bool = False
    min_score: float = DEFAULT_MIN_SCORE
    claim_threshold: float = 0.6                # the groundedness metric's per-claim threshold


@dataclass(frozen=True)
class GuardrailPolicy:
    injection: InjectionPolicy = field(default_factory=InjectionPolicy)
    pii: PiiPolicy = field(default_factory=PiiPolicy)
    topics: tuple[str, ...] = ()
    grounded: GroundedPolicy = field(default_factory=GroundedPolicy)

    @property
    def output_checks(self) -> bool:
        """Whether an answer may be changed or refused (then a streamed answer must be buffered)."""
        return self.grounded.enabled or (self.pii.enabled and self.pii.redact_answer)


#: What a route without a ``guardrails:`` block runs: injection blocked at 0.5, PII redacted in the log.
DEFAULT_POLICY = GuardrailPolicy()
#: ``guardrails: false``.
NO_POLICY = GuardrailPolicy(injection=InjectionPolicy(enabled=False), pii=PiiPolicy(enabled=False))


# --- parsing ----------------------------------------------------------------------------------------

def parse_policy(raw: Any, at: str = "guardrails") -> tuple[GuardrailPolicy, list[tuple[str, str]]]:
    """The policy of a ``guardrails:`` value and the (field path, problem) pairs found (empty: valid)."""
    problems: list[tuple[str, str]] = []

    def bad(path: str, problem: str) -> None:
        problems.append((path, problem))

    def mapping(value: Any, path: str, allowed: set[str]) -> dict | None:
        if value is True or value is None:
            return {}
        if not isinstance(value, dict):
            bad(path, f"must be a mapping, true or false, got {type(value).__name__}")
            return None
        for unknown in sorted(set(map(str, value)) - allowed):
            bad(f"{path}.{unknown}", f"unknown field (expected one of {', '.join(sorted(allowed))})")
        return value

    def flag(item: dict, name: str, path: str, default: bool) -> bool:
        value = item.get(name, default)
        if not isinstance(value, bool):
            bad(f"{path}.{name}", f"must be true or false, got {value!r}")
            return default
        return value

    def fraction(item: dict, name: str, path: str, default: float) -> float:
        value = item.get(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
            bad(f"{path}.{name}", f"must be a number in (0, 1], got {value!r}")
            return default
        return float(value)

    if raw is False:
        return NO_POLICY, problems
    top = mapping(raw, at, set(CHECKS))
    if top is None:
        return DEFAULT_POLICY, problems

    injection = InjectionPolicy()
    if top.get("injection") is False:
        injection = InjectionPolicy(enabled=False)
    elif (item := mapping(top.get("injection"), f"{at}.injection", {"threshold", "encoder"})) is not None:
        injection = InjectionPolicy(threshold=fraction(item, "threshold", f"{at}.injection", DEFAULT_THRESHOLD),
                                    encoder=flag(item, "encoder", f"{at}.injection", False))

    pii = PiiPolicy()
    if top.get("pii") is False:
        pii = PiiPolicy(enabled=False)
    elif (item := mapping(top.get("pii"), f"{at}.pii", {"entities", "redact_before_model", "redact_answer"})) is not None:
        entities = item.get("entities")
        if entities is not None:
            from ragops.guardrails.pii import PII_ENTITIES

            if not isinstance(entities, list) or not entities or not all(isinstance(e, str) for e in entities):
                bad(f"{at}.pii.entities", "must be a non-empty list of entity types")
                entities = None
            elif unknown := sorted(set(entities) - set(PII_ENTITIES)):
                bad(f"{at}.pii.entities", f"unknown entity type(s) {', '.join(unknown)}; known: {', '.join(PII_ENTITIES)}")
                entities = None
        pii = PiiPolicy(entities=tuple(entities) if entities else DEFAULT_PII_ENTITIES,
                        redact_before_model=flag(item, "redact_before_model", f"{at}.pii", False),
                        redact_answer=flag(item, "redact_answer", f"{at}.pii", False))

    topics: tuple[str, ...] = ()
    raw_topics = top.get("topics")
    if raw_topics is not None and raw_topics is not False:
        if not isinstance(raw_topics, list) or not all(isinstance(t, str) and t.strip() for t in raw_topics):
            bad(f"{at}.topics", "must be a list of words or phrases to block")
        else:
            topics = tuple(raw_topics)

    grounded = GroundedPolicy()
    raw_grounded = top.get("grounded")
    if raw_grounded is not None and raw_grounded is not False:
        item = mapping(raw_grounded, f"{at}.grounded", {"min_score", "claim_threshold"})
        if item is not None:
            grounded = GroundedPolicy(enabled=True,
                                      min_score=fraction(item, "min_score", f"{at}.grounded", DEFAULT_MIN_SCORE),
                                      claim_threshold=fraction(item, "claim_threshold", f"{at}.grounded", 0.6))
    return GuardrailPolicy(injection=injection, pii=pii, topics=topics, grounded=grounded), problems


# --- the checks ---------------------------------------------------------------------------------------

def _blocked(check: str, message: str) -> Exception:
    from ragops.serving.gateway.app import CheckRefused

    exc = CheckRefused(message, code=check)
    exc.type = "guardrail"  # the error body: {"error": {"type": "guardrail", "code": "<check>", ...}}
    return exc


class GuardrailChecks:
    """The gateway's ``RequestChecks`` for one :class:`GuardrailPolicy`."""

    def __init__(self, policy: GuardrailPolicy = DEFAULT_POLICY) -> None:
        self.policy = policy
        self.topics = TopicBlocklist(policy.topics) if policy.topics else None
        #: the gateway buffers a streamed answer when the answer may be changed or refused
        self.buffers_output = policy.output_checks
        if policy.injection.enabled and policy.injection.encoder:
            from ragops.guardrails.injection_encoder import encoder_embedder, require_head

            require_head()  # a missing head fails at start-up, not on the first request
            encoder_embedder()  # loaded (and compiled) at start-up too

    # --- pii helpers ---
    def _redact(self, text: str) -> tuple[str, list[str]]:
        from ragops.guardrails.pii import detect_pii, redact

        if not text:
            return text, []
        spans = detect_pii(text, self.policy.pii.entities)
        return (redact(text, spans), sorted({s.entity_type for s in spans})) if spans else (text, [])

    def redact_for_log(self, request: Any, text: str) -> str:
        """``text`` as the inference log may store it (PII replaced by ``<ENTITY_TYPE>``)."""
        if not self.policy.pii.enabled or not text:
            return text
        memo = request.redacted if request is not None else {}
        if text not in memo:
            memo[text] = self._redact(text)[0]
        return memo[text]

    # --- input ---
    def before(self, request: Any) -> None:
        outcomes = request.guardrails
        question = request.question
        p = self.policy
        if p.injection.enabled:
            v = detect_injection(question, threshold=p.injection.threshold, encoder=p.injection.encoder)
            outcome = {"check": "injection", "stage": "input", "action": "blocked" if v.flagged else "pass",
                       "score": round(v.score, 4), "rules": list(v.rules)}
            if v.encoder_score is not None:
                outcome["encoder_score"] = round(v.encoder_score, 4)
            outcomes.append(outcome)
            if v.flagged:
                raise _blocked("injection", "the request was blocked by the prompt-injection guardrail"
                               + (f" ({', '.join(v.rules)})" if v.rules else ""))
        if self.topics is not None:
            t = self.topics.check(question)
            outcomes.append({"check": "topics", "stage": "input", "action": "blocked" if t.blocked else "pass",
                             "matched": list(t.matched)})
            if t.blocked:
                raise _blocked("topics", "the request was blocked: this route does not answer questions about "
                               + ", ".join(t.matched))
        if p.pii.enabled:
            redacted, types = self._redact(question)
            request.redacted[question] = redacted
            before_model = p.pii.redact_before_model and bool(types)
            outcomes.append({"check": "pii", "stage": "input", "action": "redacted" if types else "pass",
                             "entities": types, "before_model": before_model})
            if before_model:
                request.question = redacted
                for m in (*request.messages, *request.history):
                    m["content"] = self.redact_for_log(request, m["content"])

    # --- output ---
    def after(self, request: Any, answer: Answer) -> Answer:
        p = self.policy
        if p.grounded.enabled:
            contexts = getattr(answer, "contexts", None)
            if not contexts:
                # Nothing to judge against: an upstream or chain that returns no passage text.
                request.guardrails.append({"check": "grounded", "stage": "output", "action": "skipped",
                                           "reason": "the target returned no context passages"})
            else:
                g = check_grounded(answer.text, contexts, min_score=p.grounded.min_score,
                                   claim_threshold=p.grounded.claim_threshold)
                request.guardrails.append({"check": "grounded", "stage": "output",
                                           "action": "pass" if g.grounded else "refused", "score": g.as_dict()["score"],
                                           "min_score": g.min_score})
                if not g.grounded:
                    # The refusal keeps the sources: the caller can read what was retrieved.
                    answer = replace(answer, text=REFUSAL)
        if p.pii.enabled and p.pii.redact_answer:
            redacted, types = self._redact(answer.text)
            request.guardrails.append({"check": "pii", "stage": "output", "action": "redacted" if types else "pass",
                                       "entities": types})
            if types:
                answer = replace(answer, text=redacted)
        return answer


class RouteGuardrails(Mapping):
    """route name → :class:`GuardrailChecks`, from each route's policy; an unknown name (a request
    refused before its route was known) gets the default policy's, so its log row is redacted too."""

    def __init__(self, config: GatewayConfig) -> None:
        self.by_route = {name: GuardrailChecks(getattr(route, "guardrails", None) or DEFAULT_POLICY)
                         for name, route in config.routes.items()}
        self.default = GuardrailChecks(DEFAULT_POLICY)

    def __getitem__(self, route: str) -> GuardrailChecks:
        return self.by_route[route]

    def get(self, route: str, default: Any = None) -> GuardrailChecks:  # type: ignore[override]
        return self.by_route.get(route, self.default)

    def __iter__(self) -> Iterator[str]:
        return iter(self.by_route)

    def __len__(self) -> int:
        return len(self.by_route)


def evaluate_text(text: str, policy: GuardrailPolicy = DEFAULT_POLICY) -> dict[str, Any]:
    """The input checks of ``policy`` on one text, all of them (no stop at the first block):
    ``{"blocked", "checks": {name: outcome}, "redacted"}`` — what ``ragops guardrails check`` prints."""
    from ragops.serving.gateway.app import ChatRequest, CheckRefused

    checks: dict[str, Any] = {}
    blocked = False
    redacted = text
    for name in ("injection", "topics", "pii"):
        single = _only(policy, name)
        if single is None:
            continue
        request = ChatRequest(model="", question=text, history=[], messages=[])
        try:
            GuardrailChecks(single).before(request)
        except CheckRefused:
            blocked = True
        for outcome in request.guardrails:
            checks[outcome["check"]] = {k: v for k, v in outcome.items() if k not in ("check", "stage")}
        if name == "pii" and policy.pii.enabled:
            redacted = request.redacted.get(text, text)
    return {"blocked": blocked, "checks": checks, "redacted": redacted}


def _only(policy: GuardrailPolicy, name: str) -> GuardrailPolicy | None:
    """``policy`` reduced to one input check (None when it is off)."""
    off = NO_POLICY
    if name == "injection":
        return replace(off, injection=policy.injection) if policy.injection.enabled else None
    if name == "topics":
        return replace(off, topics=policy.topics) if policy.topics else None
    if name == "pii":
        return replace(off, pii=replace(policy.pii, redact_before_model=False)) if policy.pii.enabled else None
    return None


__all__ = ["DEFAULT_POLICY", "NO_POLICY", "GroundedPolicy", "GuardrailChecks", "GuardrailPolicy", "InjectionPolicy",
           "PiiPolicy", "RouteGuardrails", "evaluate_text", "parse_policy"]

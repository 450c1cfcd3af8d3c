"""What a person reads after an evaluation: a metrics table with intervals, the paired
challenger-vs-champion comparison, and a plot — written to a report folder and the MLflow run."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from ragops.evaluation.stats import MetricSummary, PairedComparison


def comparison_frame(challenger: Mapping[str, MetricSummary], champion: Mapping[str, MetricSummary] | None,
                     comparisons: Mapping[str, PairedComparison]) -> pd.DataFrame:
    rows = []
    for name, s in challenger.items():
        c = (champion or {}).get(name)
        p = comparisons.get(name)
        rows.append({
            "metric": name,
            "challenger": s.mean, "challenger_ci": _ci(s),
            "champion": c.mean if c else None, "champion_ci": _ci(c) if c else "",
            "delta": p.delta if p else None, "delta_ci": f"[{p.ci_low:+.3f}, {p.ci_high:+.3f}]"
            if p and p.ci_low is not None else "",
            "p_value": p.p_value if p else None, "significant": bool(p.significant) if p else False,
            "n": s.n, "failed": s.n_failed, "n/a": s.n_not_applicable,
        })
    return pd.DataFrame(rows)


def _ci(s: MetricSummary | None) -> str:
    if s is None or s.ci_low is None:
        return ""
    return f"[{s.ci_low:.3f}, {s.ci_high:.3f}]"


def format_table(frame: pd.DataFrame) -> str:
    def fmt(v):
        if v is None or (isinstance(v, float) and pd.isna(v)):
            return "-"
        if isinstance(v, bool):
            return "yes" if v else "no"
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    cols = list(frame.columns)
    cells = [[fmt(v) for v in row] for row in frame.itertuples(index=False)]
    widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def plot_comparison(frame: pd.DataFrame, challenger: Mapping[str, MetricSummary],
                    champion: Mapping[str, MetricSummary] | None, path: Path, title: str = "") -> Path:
    """Bars with 95% bootstrap intervals, champion next to challenger, one group per metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = [n for n in frame["metric"] if challenger[n].mean is not None]
    x = np.arange(len(names))
    width = 0.4 if champion else 0.6
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(names) + 2), 4.2))

    def bars(summaries, offset, label, color):
        means = [summaries[n].mean if n in summaries and summaries[n].mean is not None else 0.0 for n in names]
        lo = [m - (summaries[n].ci_low if n in summaries and summaries[n].ci_low is not None else m)
              for n, m in zip(names, means, strict=True)]
        hi = [(summaries[n].ci_high if n in summaries and summaries[n].ci_high is not None else m) - m
              for n, m in zip(names, means, strict=True)]
        ax.bar(x + offset, means, width, yerr=[lo, hi], capsize=3, label=label, color=color)

    if champion:
        bars(champion, -width / 2, "champion", "#9aa5b1")
        bars(challenger, width / 2, "challenger", "#2f6fdf")
    else:
        bars(challenger, 0.0, "challenger", "#2f6fdf")
    ax.set_xticks(x, names, rotation=45, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score (mean, 95% bootstrap CI)")
    ax.set_title(title)
    ax.legend(loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

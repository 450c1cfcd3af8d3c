"""One progress-bar helper for every long loop: tqdm on a terminal, quiet in CI and logs.

Set ``RAGOPS_PROGRESS=0`` to silence bars, ``=1`` to force them.
"""

from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm


def progress_enabled() -> bool:
    flag = os.environ.get("RAGOPS_PROGRESS")
    if flag is not None:
        return flag not in {"0", "false", "no"}
    return sys.stderr.isatty() and not os.environ.get("CI")


def progress(total: int | None = None, desc: str = "", unit: str = "it", **kwargs) -> tqdm:
    return tqdm(total=total, desc=desc, unit=unit, disable=not progress_enabled(), leave=False, **kwargs)

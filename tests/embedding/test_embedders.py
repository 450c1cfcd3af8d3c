"""Embedders: the real local model, the OpenAI-compatible HTTP backend against a real loopback
server, and the Databricks backend (a stand-in client: no workspace is reachable here)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import numpy as np
import pytest

from ragops.config import EmbeddingConfig
from ragops.embedding import ModelNotFoundError, embedder_identity, get_embedder, resolve_model_path
from ragops.embedding.base import EmbeddingError
from ragops.embedding.remote import DatabricksEmbedder, OpenAIEmbedder


@pytest.fixture(scope="module")
def local():
    return get_embedder(EmbeddingConfig())


def test_local_model_gives_normalised_384d_vectors(local):
    vecs = local.encode(["The collector listens on port 4817.", "Retention defaults to 30 days."])
    assert vecs.shape == (2, 384) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert local.model_name == embedder_identity(EmbeddingConfig()) == "all-MiniLM-L6-v2"


def test_similar_sentences_are_closer_than_unrelated_ones(local):
    q, near, far = local.encode(["How long is data kept?", "Raw data is retained for 30 days.", "The logo is blue."])
    assert q @ near > q @ far + 0.1


def test_langchain_interface(local):
    assert len(local.embed_query("hello")) == 384
    assert len(local.embed_documents(["a", "b"])) == 2


def test_unknown_model_is_never_downloaded():
    with pytest.raises(ModelNotFoundError, match="never downloaded"):
        resolve_model_path("BAAI/bge-large-en")


@pytest.fixture(scope="module")
def openai_server(local):
    """A real OpenAI-compatible /v1/embeddings endpoint on loopback, backed by the local model."""
    calls = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            calls.append((self.path, self.headers.get("Authorization"), body))
            if body["model"] == "missing":
                self.send_response(404)
                self.end_headers()
                self.wfile.write(b'{"error": "model not found"}')
                return
            vecs = local.encode(body["input"]) * 3.0  # un-normalised on purpose
            data = [{"index": i, "embedding": v.tolist()} for i, v in enumerate(vecs)][::-1]
            payload = json.dumps({"data": data, "model": body["model"]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1", calls
    server.shutdown()


def test_openai_backend_over_http(openai_server, local):
    url, calls = openai_server
    emb = OpenAIEmbedder(url, "minilm", batch_size=2, api_key="sk-test")
    texts = ["one", "two", "three"]
    vecs = emb.encode(texts)
    assert emb.dimension == 384
    assert np.allclose(vecs, local.encode(texts), atol=1e-4)  # order restored, normalised
    assert calls[-1][0] == "/v1/embeddings" and calls[-1][1] == "Bearer sk-test"
    assert [len(c[2]["input"]) for c in calls[-2:]] == [2, 1]  # batched


def test_openai_backend_errors_name_the_url(openai_server):
    url, _ = openai_server
    with pytest.raises(EmbeddingError, match=r"/v1/embeddings: HTTP 404"):
        OpenAIEmbedder(url, "missing", max_retries=0)


def test_databricks_backend_batches_through_the_sdk():
    seen = []

    def query(name, input):  # noqa: A002 - the SDK's own argument name
        seen.append((name, list(input)))
        return SimpleNamespace(data=[SimpleNamespace(index=i, embedding=[1.0, float(i)]) for i in range(len(input))])

    client = SimpleNamespace(serving_endpoints=SimpleNamespace(query=query))
    emb = DatabricksEmbedder("bge-endpoint", batch_size=2, client=client, dimension=2)
    vecs = emb.encode(["a", "b", "c"])
    assert [n for n, _ in seen] == ["bge-endpoint", "bge-endpoint"]
    assert vecs.shape == (3, 2) and np.allclose(np.linalg.norm(vecs, axis=1), 1.0)
    assert emb.model_name == embedder_identity(EmbeddingConfig(backend="databricks", endpoint="bge-endpoint"))

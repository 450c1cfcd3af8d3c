"""A tiny OpenAI-compatible upstream that answers instantly: the gateway benchmark's fast backend.

    .venv/bin/python benchmarks/fake_openai_upstream.py --port 8101

``POST /v1/chat/completions`` (any path ending in ``/chat/completions``) answers a fixed
``chat.completion`` (with ``usage``), or with ``"stream": true`` the same answer as OpenAI
server-sent events (role chunk, two content chunks, finish chunk, usage chunk, ``[DONE]``).
``GET /health`` answers ``{"status": "ok"}``; anything else is a 404.

It is a bare ``asyncio.Protocol`` on HTTP/1.1 keep-alive (uvloop when installed), no framework:
the point is that its own cost stays far below the gateway's, so that gateway-minus-direct latency
is the gateway's. Binds 127.0.0.1 only. Stops on SIGTERM / SIGINT, or after ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time

ANSWER = "The collector listens on port 4317."


def _completion_body() -> bytes:
    return json.dumps({
        "id": "chatcmpl-upstream", "object": "chat.completion", "created": 0, "model": "fake",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 8, "total_tokens": 19},
    }, separators=(",", ":")).encode()


def _stream_body() -> bytes:
    def chunk(delta: dict, finish: str | None = None) -> str:
        return "data: " + json.dumps({"id": "chatcmpl-upstream", "object": "chat.completion.chunk", "created": 0,
                                      "model": "fake", "choices": [{"index": 0, "delta": delta,
                                                                    "finish_reason": finish}]},
                                     separators=(",", ":")) + "\n\n"

    half = len(ANSWER) // 2
    usage = {"id": "chatcmpl-upstream", "object": "chat.completion.chunk", "created": 0, "model": "fake",
             "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 8, "total_tokens": 19}}
    return (chunk({"role": "assistant", "content": ""}) + chunk({"content": ANSWER[:half]})
            + chunk({"content": ANSWER[half:]}) + chunk({}, "stop")
            + "data: " + json.dumps(usage, separators=(",", ":")) + "\n\n" + "data: [DONE]\n\n").encode()


def _response(status: str, content_type: str, body: bytes) -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            "Connection: keep-alive\r\n\r\n").encode() + body


COMPLETION = _response("200 OK", "application/json", _completion_body())
STREAM = _response("200 OK", "text/event-stream", _stream_body())
HEALTH = _response("200 OK", "application/json", b'{"status":"ok"}')
NOT_FOUND = _response("404 Not Found", "application/json",
                      b'{"error":{"message":"not found","type":"invalid_request_error","param":null,"code":null}}')
MAX_HEADER_BYTES = 64 << 10


class Upstream(asyncio.Protocol):
    """One connection: parse requests by Content-Length (keep-alive, pipelining tolerated)."""

    served = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEADER_BYTES:
                    self.transport.close()
                return
            head = self.buf[:end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip() or 0)
            if len(self.buf) < end + 4 + length:
                return  # the body is still coming
            body = self.buf[end + 4:end + 4 + length]
            self.buf = self.buf[end + 4 + length:]
            method, _, rest = head.partition(" ")
            path = rest.partition(" ")[0].split("?", 1)[0]
            if method == "POST" and path.endswith("/chat/completions"):
                reply = STREAM if b'"stream":true' in body.replace(b" ", b"") else COMPLETION
                Upstream.served += 1
            elif method == "GET" and path == "/health":
                reply = HEALTH
            else:
                reply = NOT_FOUND
            self.transport.write(reply)


async def serve(host: str, port: int, max_seconds: float) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = await loop.create_server(Upstream, host, port, reuse_address=True, backlog=1024)
    print(f"fake upstream at http://{host}:{port}/v1", flush=True)
    started = time.monotonic()
    try:
        await asyncio.wait_for(stop.wait(), max_seconds)
    except asyncio.TimeoutError:
        print(f"fake upstream: --max-seconds {max_seconds} reached", flush=True)
    finally:
        server.close()
        await server.wait_closed()
        print(f"fake upstream: served {Upstream.served} completions in {time.monotonic() - started:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8101)
    p.add_argument("--max-seconds", type=float, default=900.0, help="stop by itself after this long (a bound)")
    args = p.parse_args(argv)
    try:
        from uvloop import run
    except ImportError:  # pragma: no cover
        run = asyncio.run
    run(serve(args.host, args.port, args.max_seconds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

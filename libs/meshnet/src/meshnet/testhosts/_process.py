"""A process running inside a test host's network namespace, killable and restartable."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from meshnet.testhosts._errors import HostNetworkError

__all__ = ["HostProcess"]


class HostProcess:
    """``argv`` run with ``ip netns exec <netns>``, in its own process group.

    Output goes to ``log_path`` (a file, so a chatty process can never block on a full pipe).
    ``restart()`` kills whatever runs and starts the same command again, which is how a test
    models a crashed daemon coming back.
    """

    def __init__(
        self,
        netns: str | None,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> None:
        if not argv:
            raise HostNetworkError("argv must name a program to run")
        self.netns = netns
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.starts = 0
        self._popen: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def pid(self) -> int:
        if self._popen is None:
            raise HostNetworkError(f"{self.argv[0]!r} is not running")
        return self._popen.pid

    def start(self) -> None:
        if self.running:
            raise HostNetworkError(f"{self.argv[0]!r} already runs as pid {self.pid}")
        full = ["ip", "netns", "exec", self.netns, *self.argv] if self.netns else self.argv
        env = {**os.environ, **self.env} if self.env is not None else None
        with self.log_path.open("ab") as log:
            self._popen = subprocess.Popen(
                full, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, cwd=self.cwd, start_new_session=True,
            )  # fmt: skip
        self.starts += 1

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._popen is None else self._popen.poll()

    def kill(self, sig: int = signal.SIGKILL, *, wait: float = 10.0) -> None:
        """Send ``sig`` to the whole process group and (for SIGKILL/SIGTERM) wait for it to go."""
        if self._popen is None or self._popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._popen.pid, sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            try:
                self._popen.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._popen.pid, signal.SIGKILL)
                self._popen.wait(timeout=wait)

    def restart(self) -> None:
        self.kill()
        self.start()

    def wait(self, timeout: float) -> int:
        if self._popen is None:
            raise HostNetworkError(f"{self.argv[0]!r} was never started")
        try:
            return self._popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise HostNetworkError(f"{self.argv[0]!r} still runs after {timeout} s") from None

    def output(self) -> str:
        """Everything the process (all its incarnations) wrote so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

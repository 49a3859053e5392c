"""The reference Core run as a child process on loopback when no Core URL is configured."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from probe.core.trust import TrustStore


class EmbeddedCoreError(RuntimeError):
    """The embedded Core did not come up."""


class EmbeddedCore:
    """``python -m probe core serve`` on 127.0.0.1, its store in ``data_dir``."""

    def __init__(
        self,
        data_dir: str,
        listen: str = "127.0.0.1:0",
        args: tuple[str, ...] = (),
        *,
        client_ca: str | None = None,
        crl: str | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.listen = listen
        self.args = tuple(args)  # more ``core serve`` flags (e.g. overload knobs in tests)
        self.client_ca = client_ca  # require probe certificates from this CA (else pinned keys)
        self.crl = crl
        self.proc: subprocess.Popen | None = None
        self.url: str | None = None

    def enroll(self, probe_id: str, public_key_hex: str) -> None:
        TrustStore(os.path.join(self.data_dir, "trusted")).enroll(probe_id, public_key_hex)

    def start(self, timeout: float = 15.0) -> str:
        os.makedirs(self.data_dir, exist_ok=True)
        ready = os.path.join(self.data_dir, "ready")
        if os.path.exists(ready):
            os.unlink(ready)
        identity = ["--client-ca", os.path.abspath(self.client_ca)] if self.client_ca else []
        if self.crl:
            identity += ["--crl", os.path.abspath(self.crl)]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "probe", "core", "serve", "--listen", self.listen, "--data-dir", self.data_dir, "--ready-file", ready, "--parent-pid", str(os.getpid()), *identity, *self.args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(self.data_dir, "core.log"), "ab"),
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(ready):
                with open(ready) as fh:
                    host, _, port = fh.read().strip().rpartition(":")
                self.url = f"ws://{host}:{port}"
                return self.url
            if self.proc.poll() is not None:
                raise EmbeddedCoreError(f"embedded Core exited with code {self.proc.returncode}; see {self.data_dir}/core.log")
            time.sleep(0.02)
        self.stop()
        raise EmbeddedCoreError(f"embedded Core not ready within {timeout:g} s; see {self.data_dir}/core.log")

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

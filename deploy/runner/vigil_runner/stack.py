"""Runs the whole of Vigil as local processes: what ``make run`` starts and what the e2e suite drives.

Per service: the web app (gunicorn), its Celery worker and its outbox relay; plus the gateway.
Before starting them it generates the secrets once (``var/secrets.env``), applies every migration
and creates the first admin. Every process gets its own session so one Ctrl-C here stops them all,
in order, and nothing is left behind.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from vigil_shared.config import DEFAULT_PORTS, SERVICES, default_port
from vigil_shared.crypto import generate_key

BIN = Path(sys.executable).parent
GENERATED_SECRETS = ("VIGIL_INTERNAL_SECRET", "VIGIL_SECRET_KEY",
                     *(f"VIGIL_{name.upper()}_{kind}" for name in SERVICES
                       for kind in ("ENCRYPTION_KEYS", "BLIND_INDEX_KEY")))


@dataclass
class Process:
    name: str
    argv: list[str]
    ready_url: str
    popen: subprocess.Popen | None = None
    log_path: Path | None = None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def load_or_create_secrets(var_dir: Path) -> dict[str, str]:
    """Random secrets made on the first run and kept under var/, so restarts keep tokens valid."""
    path = var_dir / "secrets.env"
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and key in GENERATED_SECRETS:
                values[key] = value
    missing = [key for key in GENERATED_SECRETS if not values.get(key)]
    if missing:
        for key in missing:
            values[key] = generate_key() if key.endswith("_ENCRYPTION_KEYS") else secrets.token_urlsafe(48)
        var_dir.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
        path.chmod(0o600)
    return values


@dataclass
class Stack:
    """The processes of one Vigil installation, configured entirely through ``env``."""

    env: dict[str, str]
    log_dir: Path
    processes: list[Process] = field(default_factory=list)
    admin_message: str = ""

    @classmethod
    def from_environment(cls, overrides: dict[str, str] | None = None, dynamic_ports: bool = False,
                         inherit_vigil_settings: bool = True) -> "Stack":
        """``dynamic_ports`` and ``inherit_vigil_settings=False`` let a test run beside a running Vigil."""
        env = {k: v for k, v in os.environ.items() if inherit_vigil_settings or not k.startswith("VIGIL_")}
        env |= overrides or {}
        var_dir = Path(env.get("VIGIL_VAR_DIR") or "./var").resolve()
        env["VIGIL_VAR_DIR"] = str(var_dir)
        for key, value in load_or_create_secrets(var_dir).items():
            if not env.get(key):  # an explicit setting wins over the generated one
                env[key] = value
        for name in DEFAULT_PORTS:
            key = f"VIGIL_{name.upper()}_PORT"
            if dynamic_ports or not env.get(key):
                env[key] = str(free_port() if dynamic_ports else default_port(name))
        for name in SERVICES:
            upper = name.upper()
            for kind in ("worker", "relay"):
                key = f"VIGIL_{upper}_{kind.upper()}_HEALTH_PORT"
                if dynamic_ports or not env.get(key):
                    env[key] = str(free_port() if dynamic_ports else default_port(name, kind))
            env[f"VIGIL_{upper}_URL"] = f"http://127.0.0.1:{env[f'VIGIL_{upper}_PORT']}"
        env.setdefault("PYTHONUNBUFFERED", "1")
        return cls(env=env, log_dir=var_dir / "log")

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.env['VIGIL_GATEWAY_PORT']}"

    def _run(self, argv: list[str]) -> str:
        result = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed:\n{result.stderr[-4000:]}")
        return result.stdout

    def prepare(self) -> None:
        """Migrations of every database (in parallel), then the first admin."""
        running = [
            (name, subprocess.Popen([str(BIN / f"vigil-{name}"), "migrate"], env=self.env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
            for name in ("gateway", *SERVICES)
        ]
        for name, proc in running:
            _, err = proc.communicate(timeout=300)
            if proc.returncode != 0:
                raise RuntimeError(f"migrations of {name} failed:\n{err[-4000:]}")
        self.admin_message = self._run([str(BIN / "vigil-gateway"), "create-admin"]).strip()

    def _plan(self) -> list[Process]:
        env = self.env
        plan = [Process("gateway", [str(BIN / "vigil-gateway"), "web"],
                        f"http://127.0.0.1:{env['VIGIL_GATEWAY_PORT']}/readyz")]
        for name in SERVICES:
            upper = name.upper()
            script = str(BIN / f"vigil-{name}")
            plan += [
                Process(name, [script, "web"], f"http://127.0.0.1:{env[f'VIGIL_{upper}_PORT']}/readyz"),
                Process(f"{name}-worker", [script, "worker"],
                        f"http://127.0.0.1:{env[f'VIGIL_{upper}_WORKER_HEALTH_PORT']}/readyz"),
                Process(f"{name}-relay", [script, "relay"],
                        f"http://127.0.0.1:{env[f'VIGIL_{upper}_RELAY_HEALTH_PORT']}/readyz"),
            ]
        return plan

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for process in self._plan():
            process.log_path = self.log_dir / f"{process.name}.log"
            log_file = open(process.log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
            process.popen = subprocess.Popen(process.argv, env=self.env, stdout=log_file, stderr=subprocess.STDOUT,
                                             start_new_session=True)
            log_file.close()
            self.processes.append(process)

    def dead(self) -> list[Process]:
        return [p for p in self.processes if p.popen and p.popen.poll() is not None]

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        pending = list(self.processes)
        while pending:
            if dead := self.dead():
                raise RuntimeError(f"{dead[0].name} exited with {dead[0].popen.returncode}; "
                                   f"see {dead[0].log_path}:\n{tail(dead[0].log_path)}")
            pending = [p for p in pending if not is_ready(p.ready_url)]
            if pending and time.monotonic() > deadline:
                raise TimeoutError(f"not ready after {timeout:.0f}s: {', '.join(p.name for p in pending)}")
            if pending:
                time.sleep(0.2)

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM to every process group, then SIGKILL to whatever is still there after ``timeout``."""
        for process in self.processes:
            if process.popen and process.popen.poll() is None:
                try:
                    os.killpg(process.popen.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + timeout
        for process in self.processes:
            if not process.popen:
                continue
            try:
                process.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(process.popen.pid, signal.SIGKILL)  # also reaps pool children of a worker
            except (ProcessLookupError, PermissionError):
                pass
            process.popen.wait()
        self.processes.clear()


def is_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200 and json.load(response).get("status") == "ready"
    except (urllib.error.URLError, OSError, ValueError):
        return False


def tail(path: Path | None, lines: int = 30) -> str:
    if path is None or not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

"""Runs the whole of Vigil as local processes: what ``make run`` starts and what the e2e suite drives.

Per service: the web app (gunicorn), its Celery worker and its outbox relay; plus the gateway.
Before starting them it generates the secrets once (``var/secrets.env``), applies every migration
and creates the first admin.

Like a process manager: a process that dies is restarted with exponential backoff while the others
keep serving (:meth:`Stack.supervise`). Every process gets its own session, so a Ctrl-C reaches the
runner only and it stops them in order; and every process is told by the kernel to stop when the
runner dies (``PR_SET_PDEATHSIG``), so a killed runner leaves nothing holding the ports. gunicorn
workers and Celery pool processes follow their own parent (gunicorn checks its parent pid, Celery
sets its own death signal). ``var/run.lock`` is held while any of them lives, so a second runner on
the same ``var/`` says where Vigil runs instead of failing on a busy port.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from vigil_shared.config import DEFAULT_PORTS, SERVICES, default_port
from vigil_shared.crypto import generate_key
from vigil_shared.processes import pid_alive

BIN = Path(sys.executable).parent
GENERATED_SECRETS = (
    "VIGIL_INTERNAL_SECRET",
    "VIGIL_SECRET_KEY",
    *(f"VIGIL_{name.upper()}_{kind}" for name in SERVICES for kind in ("ENCRYPTION_KEYS", "BLIND_INDEX_KEY")),
)


# Sandboxes of external systems, each its own process: name -> default port (VIGIL_<NAME>_PORT).
SANDBOXES = {"bureau": 8010}

# the sandbox payment processor (sandboxes/processor) and the billing beat's health port
SANDBOX_PORTS = {"VIGIL_PROCESSOR_PORT": 8090, "VIGIL_BILLING_BEAT_HEALTH_PORT": 8303}

BACKOFF_FIRST = 1.0  # seconds before the first restart of a process that died
BACKOFF_MAX = 30.0  # the delay doubles with every quick death, up to this
STABLE_AFTER = 60.0  # a process up this long has recovered: its next death restarts after BACKOFF_FIRST
PR_SET_PDEATHSIG = 1
LOG_MAX_BYTES = 50 * 1024 * 1024  # VIGIL_LOG_MAX_BYTES: a process's log is rotated past this size
LOG_BACKUPS = 3  # VIGIL_LOG_BACKUPS: rotated logs kept (<process>.log.1 is the latest)
LOG_CHECK_SECONDS = 10.0  # how often supervision looks at the logs' sizes


@dataclass
class Process:
    name: str
    argv: list[str]
    ready_url: str
    popen: subprocess.Popen | None = None
    log_path: Path | None = None
    started_at: float = 0.0
    quick_deaths: int = 0  # deaths in a row, each within STABLE_AFTER of its start
    restart_at: float | None = None  # when a dead process is due to be started again
    restarts: int = 0

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


def rotate_log(path: Path, max_bytes: int, backups: int) -> bool:
    """Rotates ``path`` once it holds ``max_bytes`` or more: ``.1`` becomes ``.2`` and so on (``backups``
    kept), the log's content is copied to ``.1`` and the log emptied. Its writers keep their descriptor:
    they opened it to append, so they write on at the start of the emptied file, without a hole. Only
    what a writer adds between the last read of the copy and the truncation, a moment, is lost."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    if max_bytes <= 0 or size < max_bytes:
        return False
    if backups <= 0:
        os.truncate(path, 0)
        return True
    for number in range(backups - 1, 0, -1):
        older = path.with_name(f"{path.name}.{number}")
        if older.exists():
            os.replace(older, path.with_name(f"{path.name}.{number + 1}"))
    with open(path, "rb") as source, open(path.with_name(f"{path.name}.1"), "wb") as copy:
        shutil.copyfileobj(source, copy, 1 << 20)
        copy.write(source.read())  # what was written during the copy, then at once the truncation
        os.truncate(path, 0)
    return True


def backoff_delay(quick_deaths: int) -> float:
    """1 s, 2 s, 4 s … capped at BACKOFF_MAX, for the n-th death in a row."""
    return min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** max(0, quick_deaths - 1))


_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def die_with_parent(parent_pid: int):
    """A ``preexec_fn``: the kernel sends the child SIGTERM when the runner dies, however it dies.

    Linux ties the signal to the spawning *thread*: processes are spawned from the runner's main thread.
    """

    def preexec() -> None:
        if _LIBC is not None:
            _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent_pid:  # the runner died before the death signal was armed
            os._exit(1)

    return preexec


class AlreadyRunning(RuntimeError):
    """Another runner (or processes it left stopping) holds this ``var/``."""


class RunLock:
    """An exclusive ``flock`` on ``var/run.lock``, holding who runs Vigil and where.

    Every process the runner starts inherits the locked file, so the lock lasts until the last of
    them is gone: a second runner cannot start while anything still holds the ports.
    """

    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AlreadyRunning(self.describe_holder()) from None
        self.fd = fd

    def describe_holder(self) -> str:
        try:
            info = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            info = {}
        pid, url = info.get("pid"), info.get("url", "?")
        alive = pid and pid_alive(pid)
        where = f"runner pid {pid}, {url}" if pid else "started elsewhere"
        if pid and not alive:
            return (
                f"Vigil's processes from runner pid {pid} ({url}) are still stopping after that runner "
                f"died; try again in a few seconds (var: {self.path.parent})."
            )
        return f"Vigil is already running on this var/ ({self.path.parent}): {where}. Stop it with Ctrl-C there."

    def write(self, info: dict) -> None:
        if self.fd is None:
            return
        data = json.dumps(info).encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)

    @property
    def inheritable_fds(self) -> tuple[int, ...]:
        return (self.fd,) if self.fd is not None else ()

    def release(self) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


SANDBOX_CENTRAL_STATION_PORT = 8300


def _ephemeral_ports_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(taken: Collection[int] = ()) -> int:
    """A port nothing listens on and not in ``taken``, chosen below the kernel's ephemeral range: a port
    from that range (``bind(0)``) can be handed to an outgoing connection before the process given it
    binds it, which made a stack of twenty-odd processes fail to start now and then ("Address already
    in use"). ``taken``: the ports already chosen for the same stack, which nothing listens on yet
    either (two of its processes were once given the same port)."""
    start = _ephemeral_ports_start()
    for _ in range(100):
        port = secrets.choice(range(max(1024, start - 12_000), start))
        if port in taken:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
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
    lock: RunLock | None = None
    logs_checked_at: float = 0.0

    @classmethod
    def from_environment(
        cls, overrides: dict[str, str] | None = None, dynamic_ports: bool = False, inherit_vigil_settings: bool = True
    ) -> Stack:
        """``dynamic_ports`` and ``inherit_vigil_settings=False`` let a test run beside a running Vigil."""
        chosen: set[int] = set()

        def pick() -> int:
            """A free port no other process of this stack was given."""
            port = free_port(chosen)
            chosen.add(port)
            return port

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
                env[key] = str(pick() if dynamic_ports else default_port(name))
        for name in SERVICES:
            upper = name.upper()
            for kind in ("worker", "relay"):
                key = f"VIGIL_{upper}_{kind.upper()}_HEALTH_PORT"
                if dynamic_ports or not env.get(key):
                    env[key] = str(pick() if dynamic_ports else default_port(name, kind))
            env[f"VIGIL_{upper}_URL"] = f"http://127.0.0.1:{env[f'VIGIL_{upper}_PORT']}"
        if dynamic_ports or not env.get("VIGIL_SANDBOX_CENTRAL_STATION_PORT"):
            env["VIGIL_SANDBOX_CENTRAL_STATION_PORT"] = str(pick() if dynamic_ports else SANDBOX_CENTRAL_STATION_PORT)
        if dynamic_ports or not env.get("VIGIL_GATEWAY_WORKER_HEALTH_PORT"):
            env["VIGIL_GATEWAY_WORKER_HEALTH_PORT"] = str(
                pick() if dynamic_ports else default_port("gateway", "worker")
            )
        for name, port in SANDBOXES.items():
            key = f"VIGIL_{name.upper()}_PORT"
            if dynamic_ports or not env.get(key):
                env[key] = str(pick() if dynamic_ports else port)
            if dynamic_ports or not env.get(f"VIGIL_{name.upper()}_URL"):
                env[f"VIGIL_{name.upper()}_URL"] = f"http://127.0.0.1:{env[key]}"
        for key, port in SANDBOX_PORTS.items():
            if dynamic_ports or not env.get(key):
                env[key] = str(pick() if dynamic_ports else port)
        if dynamic_ports or not env.get("VIGIL_PROCESSOR_URL"):
            env["VIGIL_PROCESSOR_URL"] = f"http://127.0.0.1:{env['VIGIL_PROCESSOR_PORT']}"
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
            (
                name,
                subprocess.Popen(
                    [str(BIN / f"vigil-{name}"), "migrate"],
                    env=self.env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
            )
            for name in ("gateway", *SERVICES)
        ]
        for name, proc in running:
            _, err = proc.communicate(timeout=300)
            if proc.returncode != 0:
                raise RuntimeError(f"migrations of {name} failed:\n{err[-4000:]}")
        self.admin_message = self._run([str(BIN / "vigil-gateway"), "create-admin"]).strip()

    def _plan(self) -> list[Process]:
        env = self.env
        plan = [
            Process(
                "gateway", [str(BIN / "vigil-gateway"), "web"], f"http://127.0.0.1:{env['VIGIL_GATEWAY_PORT']}/readyz"
            ),
            # the change feed and webhook deliveries
            Process(
                "gateway-worker",
                [str(BIN / "vigil-gateway"), "worker"],
                f"http://127.0.0.1:{env['VIGIL_GATEWAY_WORKER_HEALTH_PORT']}/readyz",
            ),
            # a stand-in central station (sandboxes/central_station): account list, signed signals, webhooks in
            Process(
                "sandbox-central-station",
                [str(BIN / "vigil-sandbox-central-station")],
                f"http://127.0.0.1:{env['VIGIL_SANDBOX_CENTRAL_STATION_PORT']}/readyz",
            ),
        ]
        for name in SERVICES:
            upper = name.upper()
            script = str(BIN / f"vigil-{name}")
            plan += [
                Process(name, [script, "web"], f"http://127.0.0.1:{env[f'VIGIL_{upper}_PORT']}/readyz"),
                Process(
                    f"{name}-worker",
                    [script, "worker"],
                    f"http://127.0.0.1:{env[f'VIGIL_{upper}_WORKER_HEALTH_PORT']}/readyz",
                ),
                Process(
                    f"{name}-relay",
                    [script, "relay"],
                    f"http://127.0.0.1:{env[f'VIGIL_{upper}_RELAY_HEALTH_PORT']}/readyz",
                ),
            ]
        for name in SANDBOXES:
            plan.append(
                Process(
                    f"sandbox-{name}",
                    [str(BIN / f"vigil-sandbox-{name}")],
                    f"http://127.0.0.1:{env[f'VIGIL_{name.upper()}_PORT']}/readyz",
                )
            )
        # billing's beat: sends the due job (recurring invoices, scheduled payments) every minute
        plan.append(
            Process(
                "billing-beat",
                [str(BIN / "vigil-billing"), "beat"],
                f"http://127.0.0.1:{env['VIGIL_BILLING_BEAT_HEALTH_PORT']}/readyz",
            )
        )
        # sandboxes of the external systems, each its own process (production points the adapters elsewhere)
        plan.append(
            Process(
                "sandbox-processor",
                [str(BIN / "vigil-sandbox-processor")],
                f"http://127.0.0.1:{env['VIGIL_PROCESSOR_PORT']}/readyz",
            )
        )
        return plan

    @property
    def var_dir(self) -> Path:
        return Path(self.env["VIGIL_VAR_DIR"])

    def acquire_lock(self) -> None:
        """Raises :class:`AlreadyRunning` (saying where) when this ``var/`` is in use."""
        self.lock = RunLock(self.var_dir / "run.lock")
        self.lock.acquire()
        self._write_lock()

    def _write_lock(self) -> None:
        if self.lock:
            self.lock.write(
                {
                    "pid": os.getpid(),
                    "url": f"{self.gateway_url}/api/v1",
                    "processes": {p.name: p.pid for p in self.processes},
                }
            )

    def start(self, plan: list[Process] | None = None) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for process in self._plan() if plan is None else plan:
            process.log_path = self.log_dir / f"{process.name}.log"
            self._spawn(process)
            self.processes.append(process)
        self._write_lock()

    def _spawn(self, process: Process) -> None:
        assert process.log_path is not None, "start() names the log of every process it spawns"
        with open(process.log_path, "ab") as log_file:  # the child keeps its own copy of the descriptor
            process.popen = subprocess.Popen(
                process.argv,
                env=self.env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent(os.getpid()),
                pass_fds=self.lock.inheritable_fds if self.lock else (),
            )
        process.started_at = time.monotonic()
        process.restart_at = None

    def dead(self) -> list[Process]:
        return [p for p in self.processes if p.popen and p.popen.poll() is not None]

    def supervise(self, now: float | None = None) -> list[str]:
        """One round of supervision: schedules the restart of a process that died, starts those due.

        Returns what happened, for the operator. A process that ran ``STABLE_AFTER`` seconds before
        dying restarts after ``BACKOFF_FIRST``; deaths in quick succession double the delay.
        """
        now = time.monotonic() if now is None else now
        report = []
        for process in self.processes:
            if process.restart_at is None and process.popen and process.popen.poll() is not None:
                code = process.popen.returncode
                # what it leaves behind (a gunicorn worker, a Celery pool process) goes too
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.popen.pid, signal.SIGKILL)
                up = now - process.started_at
                process.quick_deaths = 1 if up >= STABLE_AFTER else process.quick_deaths + 1
                delay = backoff_delay(process.quick_deaths)
                process.restart_at = now + delay
                how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
                report.append(
                    f"{process.name} (pid {process.pid}) {how} after {up:.0f}s; "
                    f"restarting in {delay:.0f}s (see {process.log_path})"
                )
            elif process.restart_at is not None and now >= process.restart_at:
                self._spawn(process)
                process.restarts += 1
                report.append(f"{process.name} restarted (pid {process.pid}, restart {process.restarts})")
                self._write_lock()
        if now - self.logs_checked_at >= LOG_CHECK_SECONDS:
            self.logs_checked_at = now
            self.rotate_logs()
        return report

    def rotate_logs(self) -> None:
        """Keeps every process's log under ``VIGIL_LOG_MAX_BYTES`` (:func:`rotate_log`)."""
        max_bytes = int(self.env.get("VIGIL_LOG_MAX_BYTES") or LOG_MAX_BYTES)
        backups = int(self.env.get("VIGIL_LOG_BACKUPS") or LOG_BACKUPS)
        for process in self.processes:
            if process.log_path is not None:
                try:
                    rotate_log(process.log_path, max_bytes, backups)
                except OSError as exc:  # a full disk, say: supervision goes on
                    print(f"vigil-run: {process.log_path} not rotated: {exc}", file=sys.stderr)

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        pending = list(self.processes)
        while pending:
            if dead := self.dead():
                raise RuntimeError(
                    f"{dead[0].name} exited with {dead[0].popen and dead[0].popen.returncode}; "
                    f"see {dead[0].log_path}:\n{tail(dead[0].log_path)}"
                )
            pending = [p for p in pending if not is_ready(p.ready_url)]
            if pending and time.monotonic() > deadline:
                raise TimeoutError(f"not ready after {timeout:.0f}s: {', '.join(p.name for p in pending)}")
            if pending:
                time.sleep(0.2)

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM to every process group, then SIGKILL to whatever is still there after ``timeout``."""
        for process in self.processes:
            if process.popen and process.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in self.processes:
            if not process.popen:
                continue
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.popen.wait(max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.popen.pid, signal.SIGKILL)  # also reaps pool children of a worker
            process.popen.wait()
        self.processes.clear()
        if self.lock:
            self.lock.release()
            self.lock = None


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

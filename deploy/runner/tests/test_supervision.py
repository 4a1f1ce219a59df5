"""The runner as a process manager: restarts with backoff, children die with it, one runner per var/.

The processes supervised here are small Python programs, so each test takes seconds; the e2e soak
test (tests/test_e2e_soak.py) does the same to the real 13 processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from vigil_runner.stack import BACKOFF_FIRST, BACKOFF_MAX, STABLE_AFTER, AlreadyRunning, Process, Stack, backoff_delay

SLEEPER = [sys.executable, "-c", "import time\nwhile True: time.sleep(1)"]


def crasher(code: int = 3) -> list[str]:
    return [sys.executable, "-c", f"import sys; sys.exit({code})"]


def small_stack(tmp_path: Path) -> Stack:
    env = dict(os.environ, VIGIL_VAR_DIR=str(tmp_path), VIGIL_GATEWAY_PORT="18000")
    return Stack(env=env, log_dir=tmp_path / "log")


def wait_until(check, timeout: float = 10, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return result


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0): look at its state
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return True


@pytest.fixture
def stack(tmp_path):
    running = small_stack(tmp_path)
    yield running
    running.stop(timeout=5)


def test_backoff_doubles_from_one_second_and_is_capped():
    assert [backoff_delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert backoff_delay(1) == BACKOFF_FIRST and backoff_delay(50) == BACKOFF_MAX


def test_a_process_that_dies_is_restarted_with_backoff_while_the_others_keep_running(stack):
    steady, crashy = Process("steady", SLEEPER, ""), Process("crashy", crasher(3), "")
    stack.start([steady, crashy])
    steady_pid = steady.pid
    crashy.popen.wait(10)
    first_death = time.monotonic()
    report = stack.supervise(now=first_death)
    assert len(report) == 1 and "crashy" in report[0] and "exited with code 3" in report[0]
    assert "restarting in 1s" in report[0]
    assert stack.supervise(now=first_death + 0.5) == []  # not before its delay
    report = stack.supervise(now=first_death + BACKOFF_FIRST)
    assert report == [f"crashy restarted (pid {crashy.pid}, restart 1)"]
    crashy.popen.wait(10)  # dies again at once: the delay doubles
    report = stack.supervise(now=crashy.started_at + 0.1)
    assert "restarting in 2s" in report[0]
    stack.supervise(now=crashy.started_at + 2.1)
    crashy.popen.wait(10)
    # It ran long enough this time (as the clock tells the supervisor): back to the first delay.
    report = stack.supervise(now=crashy.started_at + STABLE_AFTER + 1)
    assert "restarting in 1s" in report[0]
    assert steady.running() and steady.pid == steady_pid and steady.restarts == 0


def test_a_process_killed_with_sigkill_is_restarted(stack):
    steady = Process("steady", SLEEPER, "")
    stack.start([steady])
    old = steady.pid
    os.kill(old, signal.SIGKILL)
    steady.popen.wait(10)
    report = stack.supervise()
    assert "was killed by signal 9" in report[0]
    wait_until(lambda: stack.supervise() and steady.running(), what="the restart")
    assert steady.pid != old and steady.restarts == 1


def test_a_second_runner_on_the_same_var_dir_says_where_the_first_runs(tmp_path):
    first = small_stack(tmp_path)
    first.acquire_lock()
    try:
        second = small_stack(tmp_path)
        with pytest.raises(AlreadyRunning) as raised:
            second.acquire_lock()
        assert f"runner pid {os.getpid()}" in str(raised.value)
        assert "http://127.0.0.1:18000/api/v1" in str(raised.value)
        # The real command says so too, before starting or migrating anything.
        result = subprocess.run(
            [str(Path(sys.executable).parent / "vigil-run")],
            capture_output=True,
            text=True,
            env=dict(os.environ, VIGIL_VAR_DIR=str(tmp_path)),
            timeout=60,
        )
        assert result.returncode == 1 and "already running" in result.stderr, result.stderr
        assert f"pid {os.getpid()}" in result.stderr and "Applying migrations" not in result.stdout
    finally:
        first.stop()
    small_stack(tmp_path).acquire_lock()  # free again once the first stopped


RUNNER = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    from vigil_runner.stack import Process, Stack
    var = Path(sys.argv[1])
    stack = Stack(env=dict(os.environ, VIGIL_VAR_DIR=str(var), VIGIL_GATEWAY_PORT="18000"), log_dir=var / "log")
    stack.acquire_lock()
    sleeper = [sys.executable, "-c", "import signal, time\\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\\n"
               "while True: time.sleep(1)"]
    stack.start([Process("a", sleeper, ""), Process("b", sleeper, "")])
    print(json.dumps([p.pid for p in stack.processes]), flush=True)
    while True:
        time.sleep(1)
""")


def test_children_die_with_a_runner_killed_with_sigkill_and_then_free_the_lock(tmp_path):
    runner = subprocess.Popen([sys.executable, "-c", RUNNER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        pids = json.loads(runner.stdout.readline())
        assert all(alive(pid) for pid in pids)
        with pytest.raises(AlreadyRunning) as raised:
            small_stack(tmp_path).acquire_lock()
        assert f"runner pid {runner.pid}" in str(raised.value)
        assert json.loads((tmp_path / "run.lock").read_text())["processes"] == {"a": pids[0], "b": pids[1]}
        os.kill(runner.pid, signal.SIGKILL)
        runner.wait(10)
        wait_until(lambda: not any(alive(pid) for pid in pids), timeout=10, what="the children to die")
        small_stack(tmp_path).acquire_lock()  # nothing holds var/ any more
    finally:
        if runner.poll() is None:
            runner.kill()
        runner.wait()
        runner.stdout.close()


def test_make_install_does_not_print_setuptools_editable_notices():
    root = Path(__file__).resolve().parents[3]
    pip = subprocess.run(
        ["make", "-s", "--no-print-directory", "--eval", "print-pip: ; @echo '$(PIP)'", "print-pip"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    result = subprocess.run(
        f"{pip} -c constraints.txt -e deploy/runner", shell=True, cwd=root, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "Editable installation" not in result.stdout + result.stderr
    assert "BuildBackendWarning" not in result.stdout + result.stderr


def test_a_log_over_its_limit_is_rotated_while_its_process_keeps_writing(tmp_path):
    """``var/log/<process>.log`` is kept under ``VIGIL_LOG_MAX_BYTES``: past it, the runner moves its
    content to ``.1`` (``.1`` to ``.2`` …, ``VIGIL_LOG_BACKUPS`` kept) and empties it; the process keeps
    its descriptor and writes on at the start of the emptied file, no hole before (it appends). A soak
    of half an hour wrote 45 MB of logs, and nothing ever shrank them."""
    env = dict(os.environ, VIGIL_VAR_DIR=str(tmp_path), VIGIL_LOG_MAX_BYTES="20000", VIGIL_LOG_BACKUPS="2")
    stack = Stack(env=env, log_dir=tmp_path / "log")
    chatty = Process(
        "chatty",
        [
            sys.executable,
            "-u",
            "-c",
            "import time\nn = 0\nwhile True:\n    n += 1; print('line', n); time.sleep(0.0005)",
        ],
        "",
    )
    try:
        stack.start([chatty])
        log = tmp_path / "log" / "chatty.log"
        rotations = 0
        deadline = time.monotonic() + 30
        while rotations < 4 and time.monotonic() < deadline:
            if log.stat().st_size > 20000:
                stack.rotate_logs()
                rotations += 1
            time.sleep(0.05)
        assert rotations == 4
        wait_until(lambda: log.stat().st_size > 100, what="the process to write on")
        kept = sorted(p.name for p in log.parent.iterdir())
        assert kept == ["chatty.log", "chatty.log.1", "chatty.log.2"]  # two backups, no more
        assert not log.read_bytes().startswith(b"\0"), "written on from the start, no hole"
        for backup in (log.with_name("chatty.log.1"), log.with_name("chatty.log.2")):
            numbers = [int(line.split()[1]) for line in backup.read_text().splitlines() if line.count(" ") == 1]
            assert numbers and numbers == sorted(numbers)
        assert chatty.running()
        stack.supervise()  # below the limit: nothing moves
        assert sorted(p.name for p in log.parent.iterdir()) == kept
    finally:
        stack.stop(timeout=5)


def test_no_two_processes_of_a_stack_are_given_the_same_port(tmp_path, monkeypatch):
    """Ports are drawn at random below the ephemeral range; a stack of twenty-odd processes once drew
    one port twice (a service's web and another's relay), and one of them never started."""
    from vigil_runner import stack as stack_module

    draws = iter([23583] * 3 + list(range(20_000, 20_100)))
    monkeypatch.setattr(stack_module.secrets, "choice", lambda _range: next(draws))
    made = stack_module.Stack.from_environment(
        {"VIGIL_VAR_DIR": str(tmp_path)}, dynamic_ports=True, inherit_vigil_settings=False
    )
    ports = [int(v) for k, v in made.env.items() if k.endswith("_PORT")]
    assert len(ports) > 15 and len(set(ports)) == len(ports)

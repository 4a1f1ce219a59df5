"""Static checks of the container deployment against the code.

There is no Docker engine on the development machines or in CI, so instead of starting the stack
these tests read ``docker-compose.yml``, the Dockerfiles and the PostgreSQL init script and check
that they agree with the code: the files they name exist, every ``VIGIL_*`` variable they set is a
declared setting, every container is health-checked, every process runs with the command and ports
the code expects, and the databases created are the ones the services are pointed at.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from vigil_shared.config import KNOWN_SETTINGS, SERVICES, default_port

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
INIT_SQL = ROOT / "deploy" / "postgres" / "init-databases.sql"
CONSTRAINTS = ROOT / "constraints.txt"

COMPOSE = yaml.safe_load(COMPOSE_FILE.read_text())
CONTAINERS: dict[str, dict] = COMPOSE["services"]
INFRASTRUCTURE = {"postgres", "rabbitmq"}
PROCESSES = ("gateway",) + SERVICES  # everything built from this repository

# The containers each service must have: name -> (subcommand, VIGIL_* port variable, port kind).
SERVICE_ROLES = {
    "{svc}": ("web", "VIGIL_{SVC}_PORT", "web"),
    "{svc}-worker": ("worker", "VIGIL_{SVC}_WORKER_HEALTH_PORT", "worker"),
    "{svc}-relay": ("relay", "VIGIL_{SVC}_RELAY_HEALTH_PORT", "relay"),
}
EXPECTED_CONTAINERS = {
    **{role.format(svc=svc): (svc, *spec) for svc in SERVICES for role, spec in SERVICE_ROLES.items()},
    "gateway": ("gateway", "web", "VIGIL_GATEWAY_PORT", "web"),
    "gateway-worker": ("gateway", "worker", "VIGIL_GATEWAY_WORKER_HEALTH_PORT", "worker"),
    "billing-beat": ("billing", "beat", "VIGIL_BILLING_BEAT_HEALTH_PORT", "beat"),
}


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def environment(container: dict) -> dict[str, str]:
    """A container's environment as a dict, whether written as a mapping or as a KEY=VALUE list."""
    env = container.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def command_line(container: dict) -> str:
    """The container's command as one shell-like string (`sh -c "..."` unwrapped)."""
    command = container.get("command") or ""
    if isinstance(command, list):
        if command[:2] == ["sh", "-c"] or command[:2] == ["/bin/sh", "-c"]:
            return command[2]
        return shlex.join(command)
    return command


def vigil_commands(container: dict) -> list[tuple[str, str]]:
    """``(script, subcommand)`` for every ``vigil-<x> <subcommand>`` the container runs, in order."""
    return re.findall(r"\b(vigil-[a-z]+)\s+([a-z][a-z-]*)", command_line(container))


def healthcheck_port(container: dict) -> int | None:
    test = (container.get("healthcheck") or {}).get("test") or []
    text = " ".join(test) if isinstance(test, list) else test
    match = re.search(r"http://(?:127\.0\.0\.1|localhost):(\d+)/(?:readyz|healthz)", text)
    return int(match.group(1)) if match else None


def interpolated(value: str) -> str:
    """``value`` with every ``${VAR...}`` replaced by a placeholder, as compose would fill it in."""
    return re.sub(r"\$\{[^}]*\}", "placeholder", value)


def database_name(url: str) -> str:
    return urlsplit(interpolated(url)).path.lstrip("/")


def built_images() -> dict[str, tuple[Path, dict[str, str]]]:
    """Image -> (absolute Dockerfile path, build arguments), for every container with a build.

    One Dockerfile builds every image, so each image is checked with the arguments compose passes.
    """
    found = {}
    for container in CONTAINERS.values():
        build = container.get("build")
        if build:
            context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            args = {} if isinstance(build, str) else {k: str(v) for k, v in (build.get("args") or {}).items()}
            image = container.get("image") or dockerfile
            found[image] = ((context / dockerfile).resolve(), args)
    return found


def declared_console_scripts() -> dict[str, Path]:
    """Console script name -> the pyproject.toml that declares it, for every project in the repo."""
    scripts = {}
    for pyproject in ROOT.glob("**/pyproject.toml"):
        if any(
            part.startswith(".") or part in {"node_modules", "build", "dist", "var"}
            for part in pyproject.relative_to(ROOT).parts
        ):
            continue
        project = tomllib.loads(pyproject.read_text()).get("project", {})
        for name in project.get("scripts", {}):
            scripts[name] = pyproject
    return scripts


def dockerfile_instructions(path: Path, args: dict[str, str]) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, with continuation lines joined, comments dropped and the
    build arguments (``args``, else an ``ARG`` line's default) substituted for ``${NAME}``/``$NAME``."""
    logical, current = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, rest = current.partition(" ")
        logical.append((keyword.upper(), rest.strip()))
        current = ""
    values = dict(args)
    substituted = []
    for keyword, rest in logical:
        rest = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values.get(m[1] or m[2], m[0]), rest)
        name, _, default = rest.partition("=")
        if keyword == "ARG" and default:
            values.setdefault(name, default)
        substituted.append((keyword, rest))
    return substituted


CONTAINER_NAMES = sorted(CONTAINERS)
IMAGES = built_images()


# ------------------------------------------------------------------------------------------------
# the compose file
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(EXPECTED_CONTAINERS))
def test_every_process_has_a_container(name):
    assert name in CONTAINERS, (
        f"docker-compose.yml has no container {name!r}: every service in vigil_shared.config.SERVICES "
        f"needs <svc>, <svc>-worker and <svc>-relay containers, plus the gateway"
    )


@pytest.mark.parametrize("name", CONTAINER_NAMES)
def test_build_context_and_dockerfile_exist(name):
    build = CONTAINERS[name].get("build")
    if name in INFRASTRUCTURE:
        assert not build, f"{name} should run a published image, not be built"
        return
    assert build, f"container {name!r} has no build section"
    context = ROOT / build["context"]
    dockerfile = context / build.get("dockerfile", "Dockerfile")
    assert context.is_dir(), f"container {name!r}: build context {build['context']!r} does not exist"
    assert dockerfile.is_file(), f"container {name!r}: Dockerfile {dockerfile.relative_to(ROOT)} does not exist"


@pytest.mark.parametrize("name", CONTAINER_NAMES)
def test_vigil_variables_are_declared_settings(name):
    unknown = sorted(k for k in environment(CONTAINERS[name]) if k.startswith("VIGIL_") and k not in KNOWN_SETTINGS)
    assert not unknown, (
        f"container {name!r} sets {', '.join(unknown)}, which no Vigil process reads: "
        f"declare it in vigil_shared.config.SETTINGS or remove it from docker-compose.yml"
    )


@pytest.mark.parametrize("name", CONTAINER_NAMES)
def test_every_container_has_a_healthcheck(name):
    healthcheck = CONTAINERS[name].get("healthcheck")
    assert healthcheck and healthcheck.get("test"), f"container {name!r} has no healthcheck"
    assert not healthcheck.get("disable"), f"container {name!r} disables its healthcheck"
    assert healthcheck["test"] != ["NONE"], f"container {name!r} disables its healthcheck"


@pytest.mark.parametrize("name", sorted(EXPECTED_CONTAINERS))
def test_process_runs_its_command_and_checks_its_own_port(name):
    process, subcommand, port_variable, kind = EXPECTED_CONTAINERS[name]
    container = CONTAINERS.get(name)
    if container is None:
        pytest.fail(f"docker-compose.yml has no container {name!r}")
    script = f"vigil-{process}"
    commands = vigil_commands(container)
    assert commands and commands[-1] == (script, subcommand), (
        f"container {name!r} should end by running `{script} {subcommand}`, runs {command_line(container)!r}"
    )
    port_variable = port_variable.format(SVC=process.upper())
    port = default_port(process, kind)
    env = environment(container)
    assert env.get(port_variable, str(port)) == str(port), (
        f"container {name!r} sets {port_variable}={env[port_variable]}, expected the default {port}"
    )
    assert healthcheck_port(container) == port, (
        f"container {name!r} should health-check http://127.0.0.1:{port}/readyz ({port_variable}), "
        f"checks port {healthcheck_port(container)}"
    )
    assert env.get("VIGIL_BIND_HOST") == "0.0.0.0", f"container {name!r} must set VIGIL_BIND_HOST=0.0.0.0"
    assert env.get("VIGIL_ENV") == "production", f"container {name!r} must set VIGIL_ENV=production"


@pytest.mark.parametrize("process", PROCESSES)
def test_web_container_migrates_before_serving(process):
    container = CONTAINERS.get(process)
    if container is None:
        pytest.fail(f"docker-compose.yml has no container {process!r}")
    subcommands = [sub for script, sub in vigil_commands(container) if script == f"vigil-{process}"]
    assert "migrate" in subcommands and "web" in subcommands, (
        f"container {process!r} must run `vigil-{process} migrate` then `vigil-{process} web`, "
        f"runs {command_line(container)!r}"
    )
    assert subcommands.index("migrate") < subcommands.index("web"), (
        f"container {process!r} starts `web` before `migrate`: {command_line(container)!r}"
    )
    assert "&&" in command_line(container), f"container {process!r} must not serve when migrate fails (use &&)"


@pytest.mark.parametrize("service", SERVICES)
def test_worker_and_relay_wait_for_migrations(service):
    for name in (f"{service}-worker", f"{service}-relay"):
        depends_on = (CONTAINERS.get(name) or {}).get("depends_on") or {}
        condition = (depends_on.get(service) or {}).get("condition") if isinstance(depends_on, dict) else None
        assert condition == "service_healthy", (
            f"container {name!r} must depend on {service!r} with condition service_healthy "
            f"(the web container applies the migrations)"
        )


@pytest.mark.parametrize("name", sorted(set(CONTAINERS) - INFRASTRUCTURE))
def test_processes_wait_for_database_and_broker(name):
    depends_on = CONTAINERS[name].get("depends_on") or {}
    for dependency in sorted(INFRASTRUCTURE):
        assert (depends_on.get(dependency) or {}).get("condition") == "service_healthy", (
            f"container {name!r} must depend on {dependency!r} with condition service_healthy"
        )


def test_only_the_gateway_publishes_a_port():
    publishing = sorted(name for name, container in CONTAINERS.items() if container.get("ports"))
    assert publishing == ["gateway"], f"only the gateway may publish a port, these do: {publishing}"


def test_secrets_are_required_not_defaulted():
    """Secrets come from the operator's .env; compose must refuse to start without them."""
    for name, container in CONTAINERS.items():
        for key, value in environment(container).items():
            if key in {"VIGIL_INTERNAL_SECRET", "VIGIL_SECRET_KEY", "VIGIL_ADMIN_PASSWORD", "POSTGRES_PASSWORD"}:
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]*\}", value), (
                    f"container {name!r}: {key} must be `${{{key}:?...}}` (required), not {value!r}"
                )


def test_env_example_lists_every_required_variable():
    required = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*):\?", COMPOSE_FILE.read_text()))
    example = ROOT / "deploy" / ".env.example"
    assert example.is_file(), "deploy/.env.example is missing"
    listed = set(re.findall(r"^([A-Z_][A-Z0-9_]*)=", example.read_text(), re.MULTILINE))
    assert not required - listed, f"deploy/.env.example does not list {sorted(required - listed)}"


# ------------------------------------------------------------------------------------------------
# databases
# ------------------------------------------------------------------------------------------------
def test_postgres_init_script_creates_exactly_the_databases_compose_uses():
    created = set(re.findall(r"CREATE\s+DATABASE\s+\"?(\w+)\"?", INIT_SQL.read_text(), re.IGNORECASE))
    used = {}
    for name, container in CONTAINERS.items():
        for key, value in environment(container).items():
            if key.endswith("_DATABASE_URL"):
                used.setdefault(database_name(value), set()).add(name)
    missing = {db: sorted(containers) for db, containers in used.items() if db not in created}
    assert not missing, f"{INIT_SQL.relative_to(ROOT)} does not create the databases used by {missing}"
    unused = created - set(used)
    assert not unused, f"{INIT_SQL.relative_to(ROOT)} creates databases no container uses: {sorted(unused)}"
    mounted = any(
        INIT_SQL.relative_to(ROOT).as_posix() in volume and "/docker-entrypoint-initdb.d/" in volume
        for volume in CONTAINERS["postgres"].get("volumes", [])
    )
    assert mounted, f"postgres does not mount {INIT_SQL.relative_to(ROOT)} into /docker-entrypoint-initdb.d"


@pytest.mark.parametrize("name", sorted(EXPECTED_CONTAINERS))
def test_each_process_uses_its_own_database(name):
    process = EXPECTED_CONTAINERS[name][0]
    variable = f"VIGIL_{process.upper()}_DATABASE_URL"
    url = environment(CONTAINERS.get(name) or {}).get(variable)
    assert url, f"container {name!r} does not set {variable}"
    assert url.startswith("postgresql+psycopg://"), f"container {name!r}: {variable} should use postgresql+psycopg"
    assert urlsplit(interpolated(url)).hostname == "postgres", (
        f"container {name!r}: {variable} should point at the postgres container"
    )
    assert database_name(url) == f"vigil_{process}", (
        f"container {name!r}: {variable} uses database {database_name(url)!r}, expected 'vigil_{process}'"
    )


# ------------------------------------------------------------------------------------------------
# console scripts
# ------------------------------------------------------------------------------------------------
USED_COMMANDS = sorted({pair for container in CONTAINERS.values() for pair in vigil_commands(container)})


@pytest.mark.parametrize("script", sorted({script for script, _ in USED_COMMANDS}))
def test_commands_are_declared_console_scripts(script):
    declared = declared_console_scripts()
    assert script in declared, (
        f"docker-compose.yml runs {script!r}, but no pyproject.toml in the repository declares it "
        f"under [project.scripts] (declared: {sorted(declared)})"
    )


@pytest.mark.parametrize(("script", "subcommand"), USED_COMMANDS, ids=[" ".join(c) for c in USED_COMMANDS])
def test_commands_accept_their_subcommand(script, subcommand):
    """``<script> <subcommand> --help`` exits 0: the subcommand exists (argument parsing only, nothing runs)."""
    executable = Path(sys.executable).parent / script
    executable = str(executable) if executable.exists() else shutil.which(script)
    assert executable, f"console script {script!r} is not installed in this environment (install its package)"
    result = subprocess.run(
        [executable, subcommand, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "VIGIL_LOG_LEVEL": "WARNING"},
    )
    assert result.returncode == 0, (
        f"`{script} {subcommand} --help` exited {result.returncode}: {result.stderr.strip()[-800:]}"
    )


# ------------------------------------------------------------------------------------------------
# Dockerfiles
# ------------------------------------------------------------------------------------------------
def image_instructions(image: str) -> list[tuple[str, str]]:
    path, args = IMAGES[image]
    return dockerfile_instructions(path, args)


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_dockerfile_runs_as_non_root_with_a_healthcheck(image):
    instructions = image_instructions(image)
    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users, f"{image}: the Dockerfile has no USER instruction (the image would run as root)"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}, f"{image} runs as {users[-1]!r}; use an unprivileged user"
    assert any(keyword == "HEALTHCHECK" and "NONE" not in args for keyword, args in instructions), (
        f"{image} has no HEALTHCHECK"
    )
    assert any(keyword == "CMD" for keyword, _ in instructions), f"{image} has no default CMD"
    assert any(keyword == "EXPOSE" for keyword, _ in instructions), f"{image} does not EXPOSE its port"


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_dockerfile_installs_pinned_versions(image):
    instructions = image_instructions(image)
    installs = [args for keyword, args in instructions if keyword == "RUN" and "pip install" in args]
    assert installs, f"{image}: the Dockerfile never runs pip install"
    for args in installs:
        assert re.search(r"(-c|--constraint)[ =]constraints\.txt\b", args), (
            f"{image}: `{args}` does not install with -c constraints.txt"
        )
    copied = " ".join(args for keyword, args in instructions if keyword in {"COPY", "ADD"})
    assert "constraints.txt" in copied, f"{image} does not copy constraints.txt into the image"


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_dockerfile_copies_only_what_exists(image):
    """Every COPY source (relative to the build context, the repository root) exists."""
    for keyword, args in image_instructions(image):
        if keyword != "COPY" or args.startswith("--from"):
            continue
        *sources, _destination = [a for a in args.split() if not a.startswith("--")]
        for source in sources:
            assert (ROOT / source).exists(), f"{image}: COPY source {source!r} does not exist"


@pytest.mark.parametrize("name", sorted(EXPECTED_CONTAINERS))
def test_image_is_built_for_its_own_process(name):
    """The build arguments name the container's process, install the project that declares its
    console script, and expose its default web port."""
    process = EXPECTED_CONTAINERS[name][0]
    build = (CONTAINERS.get(name) or {}).get("build") or {}
    args = {k: str(v) for k, v in (build.get("args") or {}).items()}
    assert args.get("SERVICE") == process, f"container {name!r} builds SERVICE={args.get('SERVICE')!r}"
    assert args.get("PORT") == str(default_port(process)), f"container {name!r} builds PORT={args.get('PORT')!r}"
    pip = next(a for k, a in image_instructions(CONTAINERS[name]["image"]) if k == "RUN" and "pip install" in a)
    project = ROOT / pip.split()[-1] / "pyproject.toml"
    assert declared_console_scripts().get(f"vigil-{process}") == project.resolve(), (
        f"container {name!r}: the image installs {project.parent.relative_to(ROOT)}, which does not declare "
        f"vigil-{process}"
    )


def test_constraints_file_works_inside_an_image():
    """The images install with ``-c constraints.txt``: it must exist and must not name local paths."""
    assert CONSTRAINTS.is_file(), "constraints.txt (pinned dependency versions) is missing at the repository root"
    for number, line in enumerate(CONSTRAINTS.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        assert not line.startswith(("-e", "--editable")), (
            f"constraints.txt:{number}: editable requirements are not allowed in a constraints file: {line!r}"
        )
        assert "file:" not in line and not line.startswith((".", "/")), (
            f"constraints.txt:{number}: a local path does not exist inside the image: {line!r}"
        )


def test_dockerignore_keeps_local_state_out_of_the_build_context():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    for pattern in (".git", ".venv", "var"):
        assert pattern in ignored, f".dockerignore should exclude {pattern}"

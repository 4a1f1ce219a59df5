"""The ``vigil-gateway`` command line, shaped like a service's: a refused setting is exit status 2."""

from importlib.metadata import entry_points

from conftest import SECRET_KEY
from sqlalchemy import select

from vigil_gateway import cli
from vigil_gateway.models import User
from vigil_shared.testing import TEST_SECRET


def test_the_console_script_is_the_cli():
    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "vigil-gateway"]
    assert script.load() is cli.main


def test_a_malformed_setting_is_one_line_and_exit_status_2(monkeypatch, capsys):
    monkeypatch.setenv("VIGIL_SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("VIGIL_INTERNAL_SECRET", TEST_SECRET)
    monkeypatch.setenv("VIGIL_UPSTREAM_TIMEOUT", "soon")
    assert cli.main(["migrate"]) == 2
    assert capsys.readouterr().err.strip() == "vigil-gateway: VIGIL_UPSTREAM_TIMEOUT must be a number, got 'soon'"


def test_create_admin_uses_the_configured_password_hashing(monkeypatch, capsys, db, gateway_db_url):
    for name, value in {
        "VIGIL_SECRET_KEY": SECRET_KEY,
        "VIGIL_INTERNAL_SECRET": TEST_SECRET,
        "VIGIL_GATEWAY_DATABASE_URL": gateway_db_url,
        "VIGIL_PASSWORD_HASHING": "fast-for-tests",
        "VIGIL_ADMIN_USERNAME": "ops-admin",
        "VIGIL_ADMIN_PASSWORD": "a long enough password",
        "VIGIL_LOG_LEVEL": "WARNING",
    }.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["create-admin"]) == 0
    assert capsys.readouterr().out.strip() == "Admin user 'ops-admin' created."
    with db.new_session() as session:
        stored = session.scalar(select(User.password_hash).where(User.username == "ops-admin"))
    assert stored.startswith("$argon2id$v=19$m=8,t=1,p=1$")


def test_the_delivery_process_loads_neither_flask_nor_celery_nor_argon2(tmp_path):
    """Idle memory (issue 10, bench/bench_idle_rss.py): ``vigil-gateway deliver`` takes its work from the
    rows and serves no request, so it builds no Celery app and loads no Flask (about 14 MB of its 70 MB),
    nor the password hasher; it still builds what it delivers with."""
    import os
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from vigil_gateway import cli\n"
        "from vigil_gateway.settings import GatewaySettings\n"
        "from vigil_gateway.worker import WebhookRuntime\n"
        "runtime = WebhookRuntime.build(GatewaySettings.from_env(), broker=False)  # as cli._run_deliverer\n"
        "assert runtime.celery is None and runtime.cipher and runtime.reader\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'flask', 'werkzeug', 'celery', 'argon2'}))\n"
    )
    env = os.environ | {
        "VIGIL_VAR_DIR": str(tmp_path),
        "VIGIL_SECRET_KEY": SECRET_KEY,
        "VIGIL_INTERNAL_SECRET": TEST_SECRET,
    }
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout

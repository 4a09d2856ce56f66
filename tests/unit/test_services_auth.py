"""The `services` tracking server never starts open: no password, MLflow's default or a short
one is refused before anything is started, with a message that says what to do."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from configs.settings import MlflowServerConfig
from infra import services

# Passwords of the tests themselves (audited for the secrets scan: none is a real secret).
MLFLOW_DEFAULT = "password1234"  # pragma: allowlist secret
STRONG = "k7#Lq9!vR2xT"  # pragma: allowlist secret


def environ(password: str | None, user: str | None = None) -> dict[str, str]:
    env = {} if password is None else {services.PASSWORD_VARIABLE: password}
    return env | ({services.USERNAME_VARIABLE: user} if user else {})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (environ(None), "MLFLOW_TRACKING_PASSWORD is not set"),
        (environ(""), "MLFLOW_TRACKING_PASSWORD is not set"),
        (environ(MLFLOW_DEFAULT), "default or guessable"),
        (environ(MLFLOW_DEFAULT.upper()), "default or guessable"),
        (environ("data-team-admin", user="data-team-admin"), "default or guessable"),
        (environ("short-pw"), "8 characters, fewer than 12"),
    ],
    ids=["unset", "empty", "mlflow-default", "default-upper", "same-as-user", "short"],
)
def test_weak_or_missing_passwords_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(services.InsecureSetup, match=message) as refused:
        services.admin_credentials(env)
    assert "export MLFLOW_TRACKING_PASSWORD=" in str(refused.value)


def test_a_strong_password_is_taken_with_the_default_user() -> None:
    assert services.admin_credentials(environ(STRONG)) == ("admin", STRONG)


def test_the_server_is_not_started_with_mlflow_s_default_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(services.PASSWORD_VARIABLE, MLFLOW_DEFAULT)
    started: list[object] = []
    monkeypatch.setattr(services.subprocess, "Popen", lambda *a, **k: started.append(a))
    server = MlflowServerConfig(
        backend_store_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        home=str(tmp_path / "home"),
        port=9,  # discard: nothing answers there
    )
    with pytest.raises(services.InsecureSetup):
        services.start_mlflow(server)
    assert started == [] and not services.pid_file(server).exists()


def test_the_auth_config_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    server = MlflowServerConfig(backend_store_uri="sqlite:///x.db", home=str(tmp_path))
    path = services.write_auth_config(server, "admin", STRONG)
    assert path.stat().st_mode & 0o777 == 0o600
    text = path.read_text()
    assert f"admin_password = {STRONG}" in text
    assert f"sqlite:///{(tmp_path / 'basic_auth.db').resolve()}" in text
    assert "--app-name" in services.mlflow_server_command(server)


ENTRYPOINT = Path(__file__).resolve().parents[2] / "infra" / "images" / "mlflow" / "entrypoint.sh"


def run_entrypoint(tmp_path: Path, password: str) -> subprocess.CompletedProcess[str]:
    """The aws image's entrypoint with `python` and `mlflow` replaced by stubs that log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in ("python", "mlflow"):
        stub = bin_dir / name
        stub.write_text(f'#!/bin/sh\ncat >/dev/null; echo "{name} $*"\n')
        stub.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "DB_HOST": "db",
        "DB_NAME": "mlflow",
        "DB_USERNAME": "mlflow",
        "DB_PASSWORD": "x",
        "ARTIFACTS_DESTINATION": "s3://bucket/mlflow",
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "k" * 64,
        "MLFLOW_ADMIN_PASSWORD": password,
        "MLFLOW_ALLOWED_HOSTS": "internal-mlflow-1.eu-west-1.elb.amazonaws.com",
        "MLFLOW_JOBS_USERNAME": "pipelines",
        "MLFLOW_JOBS_PASSWORD": "j" * 32,
        "MLFLOW_RELEASE_USERNAME": "release",
        "MLFLOW_RELEASE_PASSWORD": "r" * 32,
        "TMPDIR": str(tmp_path),
    }
    return subprocess.run(
        ["sh", str(ENTRYPOINT)], env=env, capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize("password", ["", MLFLOW_DEFAULT, "Password1234", "mlflow", "short-pw"])
def test_the_aws_image_refuses_weak_admin_passwords(tmp_path: Path, password: str) -> None:
    ran = run_entrypoint(tmp_path, password)
    assert ran.returncode == 64, ran
    assert "refusing to start" in ran.stderr
    assert "mlflow server" not in ran.stdout


def test_the_aws_image_starts_the_auth_app_with_a_strong_password(tmp_path: Path) -> None:
    ran = run_entrypoint(tmp_path, STRONG)
    assert ran.returncode == 0, ran.stderr
    assert "mlflow server --app-name basic-auth" in ran.stdout
    # the chain's accounts are made in the auth database before the server starts
    accounts = next(line for line in ran.stdout.splitlines() if "accounts.py" in line)
    assert accounts.endswith("@db:5432/mlflow_auth")
    assert ran.stdout.index("accounts.py") < ran.stdout.index("mlflow server")
    # the load balancer's name (the Host the jobs call it by), and localhost for the UI tunnel
    assert "--allowed-hosts internal-mlflow-1.eu-west-1.elb.amazonaws.com,localhost," in ran.stdout

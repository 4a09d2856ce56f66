"""The `services` profile's servers on one machine: `python -m infra.services up|down|status`.

`up` checks that PostgreSQL and Redis answer (printing the command that starts whichever does
not), creates the databases the profile names, and starts `mlflow server` in the background
on PostgreSQL with proxied artifacts and basic authentication; `down` stops it. PostgreSQL and
Redis are the machine's own services: this module never starts or stops them.

The tracking server is never open: its admin account is MLFLOW_TRACKING_USERNAME (default
`admin`) with the password MLFLOW_TRACKING_PASSWORD, the same variables MLflow's clients read,
and it refuses to start without a password, with MLflow's published default, or with one
shorter than 12 characters.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from configs import ConfigError, Settings, load_settings
from configs.settings import MlflowServerConfig

START_POSTGRES = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
START_REDIS = (
    'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" '
    "--appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log"
)
READY_TIMEOUT_S = 90
USERNAME_VARIABLE = "MLFLOW_TRACKING_USERNAME"
PASSWORD_VARIABLE = "MLFLOW_TRACKING_PASSWORD"  # pragma: allowlist secret
SECRET_KEY_VARIABLE = "MLFLOW_FLASK_SERVER_SECRET_KEY"  # pragma: allowlist secret
# MLflow's published default admin password, and others a scanner tries first.
DEFAULT_PASSWORDS = frozenset({"password1234", "password", "admin", "mlflow", "changeme"})
MIN_PASSWORD_LENGTH = 12


class ServiceDown(RuntimeError):
    """A server the profile needs does not answer; the message says how to start it."""


class InsecureSetup(ServiceDown):
    """The tracking server would start without proper authentication: it is not started."""


def admin_credentials(environ: dict[str, str] | None = None) -> tuple[str, str]:
    """The tracking server's admin account, from the environment; refuses weak passwords."""
    env = os.environ if environ is None else environ
    username = env.get(USERNAME_VARIABLE) or "admin"
    password = env.get(PASSWORD_VARIABLE, "")
    how = (
        f"export {PASSWORD_VARIABLE}=<a password of {MIN_PASSWORD_LENGTH}+ characters> "
        f"(and {USERNAME_VARIABLE}, default admin); training and serving read the same variables"
    )
    if not password:
        raise InsecureSetup(
            f"{PASSWORD_VARIABLE} is not set: the tracking server requires authentication; {how}"
        )
    if password.lower() in DEFAULT_PASSWORDS or password.lower() == username.lower():
        raise InsecureSetup(
            f"{PASSWORD_VARIABLE} is a default or guessable password: refusing to start; {how}"
        )
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InsecureSetup(
            f"{PASSWORD_VARIABLE} has {len(password)} characters, fewer than "
            f"{MIN_PASSWORD_LENGTH}: refusing to start; {how}"
        )
    return username, password


def flask_secret_key(server: MlflowServerConfig) -> str:
    """The key MLflow's auth app signs its CSRF tokens with: MLFLOW_FLASK_SERVER_SECRET_KEY if
    set, else one made for this server on first start and kept in its home (owner-only)."""
    if key := os.environ.get(SECRET_KEY_VARIABLE):
        return key
    path = Path(server.home) / "flask_secret_key"
    if path.is_file():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(key)
    return key


def write_auth_config(server: MlflowServerConfig, username: str, password: str) -> Path:
    """MLflow's basic-auth config (readable by this user only), its user store beside it.

    The admin account is created with this password when the user store is first made; change
    it later through MLflow's API (`update_user_password`), not here.
    """
    home = Path(server.home)
    home.mkdir(parents=True, exist_ok=True)
    path = home / "basic_auth.ini"
    text = (
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{(home / 'basic_auth.db').resolve()}\n"
        f"admin_username = {username}\n"
        f"admin_password = {password}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    path.chmod(0o600)
    return path


@dataclass(frozen=True)
class Check:
    name: str
    target: str
    ok: bool
    detail: str


# -- accounts -------------------------------------------------------------------------------
def add_user(tracking_uri: str, username: str, *, admin: bool = False) -> str:
    """Create an MLflow account for one person (basic auth), signed in as the admin of
    MLFLOW_TRACKING_USERNAME/PASSWORD; returns its generated password (shown once). New
    accounts read everything (the server's default permission) and own what they create."""
    from mlflow.server import get_app_client

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._@-]{1,63}", username):
        raise ValueError(f"{username!r} is not a user name (letters, digits, . _ @ -)")
    password = secrets.token_urlsafe(24)
    client = get_app_client("basic-auth", tracking_uri=tracking_uri)
    client.create_user(username=username, password=password)
    if admin:
        client.update_user_admin(username=username, is_admin=True)
    return password


# -- PostgreSQL ---------------------------------------------------------------------------
def libpq_url(sqlalchemy_url: str) -> str:
    """`postgresql+psycopg://u@h/db` -> `postgresql://u@h/db` (what psycopg itself takes)."""
    parts = urlsplit(sqlalchemy_url)
    return urlunsplit(parts._replace(scheme=parts.scheme.split("+", 1)[0]))


def redacted(url: str) -> str:
    """A URL safe to print: any password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def ensure_database(sqlalchemy_url: str) -> bool:
    """Create the URL's database if it does not exist (connecting to `postgres`); True if made."""
    import psycopg
    from psycopg import sql

    parts = urlsplit(libpq_url(sqlalchemy_url))
    name = parts.path.lstrip("/")
    if not name:
        raise ConfigError(f"{redacted(sqlalchemy_url)} names no database")
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(maintenance, autocommit=True, connect_timeout=5) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
        if exists:
            return False
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True


def drop_database(sqlalchemy_url: str) -> None:
    """Drop the URL's database (tests use this to leave nothing behind)."""
    import psycopg
    from psycopg import sql

    parts = urlsplit(libpq_url(sqlalchemy_url))
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(maintenance, autocommit=True, connect_timeout=5) as connection:
        connection.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(parts.path.lstrip("/"))
            )
        )


def check_postgres(sqlalchemy_url: str) -> Check:
    import psycopg

    parts = urlsplit(libpq_url(sqlalchemy_url))
    target = f"{parts.hostname}:{parts.port or 5432}"
    try:
        with psycopg.connect(
            urlunsplit(parts._replace(path="/postgres")), connect_timeout=3
        ) as connection:
            version = connection.execute("SHOW server_version").fetchone()
        return Check("PostgreSQL", target, True, f"version {version[0] if version else '?'}")
    except psycopg.OperationalError as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return Check("PostgreSQL", target, False, f"{first_line}; start it with: {START_POSTGRES}")


# -- Redis --------------------------------------------------------------------------------
def redis_address(connection_string: str) -> tuple[str, int, int]:
    """Feast's `host:port[,db=N,...]` -> (host, port, db)."""
    first, *options = connection_string.split(",")
    host, _, port = first.rpartition(":")
    db = 0
    for option in options:
        key, _, value = option.partition("=")
        if key.strip() == "db":
            db = int(value)
    return host or "127.0.0.1", int(port or 6379), db


def check_redis(connection_string: str) -> Check:
    import redis

    host, port, db = redis_address(connection_string)
    target = f"{host}:{port}"
    try:
        client = redis.Redis(host=host, port=port, db=db, socket_connect_timeout=3)
        info: dict = client.info("server")  # type: ignore[assignment]  # sync client
        return Check("Redis", target, True, f"version {info.get('redis_version', '?')}, db {db}")
    except redis.RedisError as err:
        return Check("Redis", target, False, f"{err}; start it with: {START_REDIS}")


# -- the MLflow server --------------------------------------------------------------------
def server_url(server: MlflowServerConfig) -> str:
    return f"http://{server.host}:{server.port}"


def pid_file(server: MlflowServerConfig) -> Path:
    return Path(server.home) / "server.pid"


def running_pid(server: MlflowServerConfig) -> int | None:
    """The pid of the server this module started, if it is still alive."""
    path = pid_file(server)
    if not path.is_file():
        return None
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError, PermissionError):
        path.unlink(missing_ok=True)
        return None
    return pid


def healthy(server: MlflowServerConfig, timeout: float = 2.0) -> bool:
    import requests

    try:
        return requests.get(f"{server_url(server)}/health", timeout=timeout).status_code == 200
    except requests.RequestException:
        return False


def mlflow_server_command(server: MlflowServerConfig) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        server.backend_store_uri,
        "--artifacts-destination",
        server.artifacts_destination,
        "--serve-artifacts",
        "--host",
        server.host,
        "--port",
        str(server.port),
        "--workers",
        str(server.workers),
        "--app-name",
        "basic-auth",
    ]


def start_mlflow(server: MlflowServerConfig, timeout: float = READY_TIMEOUT_S) -> int:
    """Start the tracking server in the background (unless it runs) and wait for /health."""
    pid = running_pid(server)
    if pid is not None and healthy(server):
        return pid
    if pid is None and healthy(server):
        raise ServiceDown(
            f"something else already answers on {server_url(server)}: stop it or change "
            "mlflow.server.port and mlflow.tracking_uri"
        )
    username, password = admin_credentials()
    if server.backend_store_uri.startswith("postgresql"):
        ensure_database(server.backend_store_uri)
    home = Path(server.home)
    home.mkdir(parents=True, exist_ok=True)
    Path(server.artifacts_destination).mkdir(parents=True, exist_ok=True)
    log_path = home / "server.log"
    env = {
        **os.environ,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_AUTH_CONFIG_PATH": str(write_auth_config(server, username, password)),
        SECRET_KEY_VARIABLE: flask_secret_key(server),
        # MLflow's GenAI job runner: eight worker processes the platform never uses, and
        # they hold up a shutdown for the whole grace period.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": os.environ.get(
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false"
        ),
    }
    with log_path.open("a") as log:
        process = subprocess.Popen(
            mlflow_server_command(server),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # survives the shell that started it; stopped by `down`
        )
    pid_file(server).write_text(str(process.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pid_file(server).unlink(missing_ok=True)
            tail = log_path.read_text()[-2000:]
            raise ServiceDown(f"mlflow server exited with {process.returncode}:\n{tail}")
        if healthy(server):
            return process.pid
        time.sleep(0.5)
    stop_mlflow(server)
    raise ServiceDown(f"mlflow server not healthy after {timeout:.0f} s; see {log_path}")


def _exited(pid: int) -> bool:
    """Whether `pid` is gone; reaps it when this process started it (else a zombie lingers)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return True
    except ChildProcessError:
        pass  # not our child: its parent or init reaps it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def stop_mlflow(server: MlflowServerConfig, timeout: float = 30) -> bool:
    """Stop the server this module started (its whole process group); True if one ran."""
    pid = running_pid(server)
    if pid is None:
        return False
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _exited(pid):
            break
        time.sleep(0.2)
    else:
        os.killpg(pid, signal.SIGKILL)
    pid_file(server).unlink(missing_ok=True)
    return True


# -- the commands -------------------------------------------------------------------------
def backing_checks(settings: Settings) -> list[Check]:
    """PostgreSQL and Redis, as far as this profile uses them."""
    checks = []
    urls = []
    if settings.mlflow.server is not None:
        urls.append(settings.mlflow.server.backend_store_uri)
    if settings.features.registry.get("registry_type") == "sql":
        urls.append(str(settings.features.registry["path"]))
    if urls:
        checks.append(check_postgres(urls[0]))
    if settings.features.online_store.get("type") == "redis":
        checks.append(check_redis(str(settings.features.online_store["connection_string"])))
    return checks


def up(settings: Settings) -> int:
    server = settings.mlflow.server
    if server is None:
        print(f"the {settings.env!r} profile has no mlflow.server to start", file=sys.stderr)
        return 2
    checks = backing_checks(settings)
    for check in checks:
        print(f"{check.name:<11} {check.target:<22} {'ok' if check.ok else 'DOWN'}: {check.detail}")
    if not all(check.ok for check in checks):
        return 1
    if settings.features.registry.get("registry_type") == "sql":
        ensure_database(str(settings.features.registry["path"]))
    try:
        pid = start_mlflow(server)
    except ServiceDown as err:
        print(f"MLflow      {server_url(server):<22} DOWN: {err}", file=sys.stderr)
        return 1
    print(
        f"MLflow      {server_url(server):<22} ok: pid {pid}, log {Path(server.home) / 'server.log'}"
    )
    return 0


def down(settings: Settings) -> int:
    server = settings.mlflow.server
    if server is None:
        print(f"the {settings.env!r} profile has no mlflow.server", file=sys.stderr)
        return 0
    stopped = stop_mlflow(server)
    print("MLflow server stopped" if stopped else "no MLflow server of ours was running")
    return 0


def status(settings: Settings) -> int:
    checks = backing_checks(settings)
    if settings.mlflow.server is not None:
        server = settings.mlflow.server
        alive = healthy(server)
        checks.append(
            Check(
                "MLflow",
                server_url(server),
                alive,
                "healthy" if alive else "run `make services-up`",
            )
        )
    for check in checks:
        print(f"{check.name:<11} {check.target:<22} {'ok' if check.ok else 'DOWN'}: {check.detail}")
    return 0 if all(check.ok for check in checks) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.services", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status", "add-user"])
    parser.add_argument("username", nargs="?", help="with add-user: the new account's name")
    parser.add_argument(
        "--env", default=None, help="config overlay (default: $MLOPS_ENV or services)"
    )
    parser.add_argument(
        "--tracking-uri",
        help="with add-user: the MLflow server (default: the profile's; on AWS the local end "
        "of `python -m infra.deploy mlflow-ui`)",
    )
    parser.add_argument("--admin", action="store_true", help="with add-user: an admin account")
    args = parser.parse_args(argv)
    if args.command == "add-user":
        if not args.username:
            parser.error("add-user needs the new account's name")
        uri = args.tracking_uri
        try:
            if uri is None:
                uri = load_settings(
                    args.env or os.environ.get("MLOPS_ENV") or "services"
                ).mlflow.tracking_uri
            password = add_user(str(uri), args.username, admin=args.admin)
        except (ConfigError, ValueError) as err:
            print(f"add-user: {err}", file=sys.stderr)
            return 2
        except Exception as err:  # the server's answer (exists already, not an admin, ...)
            print(f"add-user: the server refused: {err}", file=sys.stderr)
            return 1
        print(f"created {args.username} on {uri}; password (shown once): {password}")
        return 0
    try:
        settings = load_settings(args.env or os.environ.get("MLOPS_ENV") or "services")
    except ConfigError as err:
        print(f"configuration error: {err}", file=sys.stderr)
        return 2
    return {"up": up, "down": down, "status": status}[args.command](settings)


if __name__ == "__main__":
    raise SystemExit(main())

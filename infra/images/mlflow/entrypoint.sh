#!/bin/sh
# Starts `mlflow server` with basic auth. Refuses to start without an admin password, with
# MLflow's published default or with one shorter than 12 characters: a tracking server on AWS
# is never open. The same rule as `make services-up` (infra/services.py).
set -eu
: "${DB_HOST:?}" "${DB_NAME:?}" "${DB_USERNAME:?}" "${DB_PASSWORD:?}" "${ARTIFACTS_DESTINATION:?}"
: "${MLFLOW_FLASK_SERVER_SECRET_KEY:?the auth app needs a secret key shared by every task}"
# The Host names clients call the server by: the load balancer's DNS name (set by the stack).
# MLflow refuses any other Host but localhost and private IPs ("Invalid Host header"), and the
# jobs, the release build and the UI's tunnel address it by that name or by localhost.
: "${MLFLOW_ALLOWED_HOSTS:?the load balancer's DNS name, which the jobs call the server by}"
case "$(printf '%s' "${MLFLOW_ADMIN_PASSWORD:-}" | tr '[:upper:]' '[:lower:]')" in
  ""|password1234|password|admin|mlflow|changeme)
    echo "refusing to start: MLFLOW_ADMIN_PASSWORD is empty or a default password" >&2
    exit 64 ;;
esac
if [ "${#MLFLOW_ADMIN_PASSWORD}" -lt 12 ]; then
  echo "refusing to start: MLFLOW_ADMIN_PASSWORD has fewer than 12 characters" >&2
  exit 64
fi
# The auth tables live in their own database (both stores keep an alembic_version table).
python - <<'PY'
import os, psycopg
url = "postgresql://{DB_USERNAME}:{DB_PASSWORD}@{DB_HOST}:5432/{DB_NAME}".format(**os.environ)
with psycopg.connect(url, autocommit=True) as db:
    name = os.environ["DB_NAME"] + "_auth"
    if not db.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
        db.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
PY
auth_ini="$(mktemp)"
cat > "$auth_ini" <<INI
[mlflow]
default_permission = READ
database_uri = postgresql+psycopg://${DB_USERNAME}:${DB_PASSWORD}@${DB_HOST}:5432/${DB_NAME}_auth
admin_username = admin
admin_password = ${MLFLOW_ADMIN_PASSWORD}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
INI
export MLFLOW_AUTH_CONFIG_PATH="$auth_ini"
# The jobs' and the release build's accounts, neither an admin (accounts.py says what each may do).
: "${MLFLOW_JOBS_USERNAME:?}" "${MLFLOW_JOBS_PASSWORD:?}" "${MLFLOW_RELEASE_USERNAME:?}" "${MLFLOW_RELEASE_PASSWORD:?}"
python "$(dirname "$0")/accounts.py" \
  "postgresql+psycopg://${DB_USERNAME}:${DB_PASSWORD}@${DB_HOST}:5432/${DB_NAME}_auth"
# MLflow's GenAI job runner (worker processes the platform never uses): off unless asked for.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"
exec mlflow server \
  --app-name basic-auth \
  --backend-store-uri "postgresql+psycopg://${DB_USERNAME}:${DB_PASSWORD}@${DB_HOST}:5432/${DB_NAME}" \
  --artifacts-destination "$ARTIFACTS_DESTINATION" \
  --serve-artifacts \
  --allowed-hosts "${MLFLOW_ALLOWED_HOSTS},localhost,localhost:*,127.0.0.1,127.0.0.1:*" \
  --host 0.0.0.0 --port "${PORT:-5000}" --workers "${WORKERS:-2}"

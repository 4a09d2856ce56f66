"""The tracking server's service accounts, made (or their passwords set again) in the auth
database before the server starts, with MLflow's own auth store.

- the jobs' account (MLFLOW_JOBS_USERNAME): not an admin. It reads everything (the server's
  default permission) and manages what it creates: the experiment, its runs, the registered
  model and its versions and aliases.
- the release build's account (MLFLOW_RELEASE_USERNAME): not an admin. It reads everything and
  may edit only the registered models named in MLFLOW_RELEASE_MODELS (comma-separated): the
  release tags the version it packaged with its Bento. It cannot write to runs or experiments,
  delete a model, or manage accounts.

The admin account (MLFLOW_ADMIN_PASSWORD) stays with the server and the team. Run by the
image's entrypoint with the auth database's URI as its one argument.
"""

from __future__ import annotations

import os
import sys

from mlflow.exceptions import MlflowException
from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

EDIT = "EDIT"
MIN_PASSWORD = 12


def _account(store: SqlAlchemyStore, role: str) -> str:
    username = os.environ[f"MLFLOW_{role}_USERNAME"]
    password = os.environ[f"MLFLOW_{role}_PASSWORD"]
    if len(password) < MIN_PASSWORD:
        sys.exit(
            f"refusing to start: MLFLOW_{role}_PASSWORD has fewer than {MIN_PASSWORD} characters"
        )
    if store.has_user(username):
        store.update_user(username, password=password)
    else:
        store.create_user(username, password)
    return username


def main(auth_database_uri: str) -> None:
    store = SqlAlchemyStore()
    store.init_db(auth_database_uri)
    _account(store, "JOBS")
    release = _account(store, "RELEASE")
    models = [
        m.strip() for m in os.environ.get("MLFLOW_RELEASE_MODELS", "").split(",") if m.strip()
    ]
    for model in models:  # the model need not exist yet: the permission is kept by name
        try:
            store.get_registered_model_permission(model, release)
            store.update_registered_model_permission(model, release, EDIT)
        except MlflowException:
            store.create_registered_model_permission(model, release, EDIT)
    print(f"service accounts ready; {release} may edit {', '.join(models) or 'no model'}")


if __name__ == "__main__":
    main(sys.argv[1])

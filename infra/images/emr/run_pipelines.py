"""The EMR Serverless entry point: the same CLI as local, `python -m pipelines <command>`.

spark-submit takes a file, not a module; this file is uploaded beside the packed virtualenv
(which holds the platform's code) and hands its arguments to the CLI unchanged. Secrets are
not passed in the job's parameters (they would show in its configuration): the job gets their
ARNs, and this reads them from Secrets Manager with the job role before the config loads.
"""

import os
import sys

# variable the config reads -> variable holding the ARN of the secret with its value
SECRETS = {
    "MLOPS_REDIS_AUTH_TOKEN": "MLOPS_REDIS_AUTH_TOKEN_SECRET_ARN",
    "MLFLOW_TRACKING_PASSWORD": "MLFLOW_TRACKING_PASSWORD_SECRET_ARN",  # pragma: allowlist secret
}


def load_secrets() -> None:
    wanted = {name: os.environ[arn] for name, arn in SECRETS.items() if os.environ.get(arn)}
    if not wanted:
        return
    import boto3

    client = boto3.client("secretsmanager")
    for name, arn in wanted.items():
        os.environ[name] = client.get_secret_value(SecretId=arn)["SecretString"]


if __name__ == "__main__":
    load_secrets()
    from pipelines.cli import main

    sys.exit(main(sys.argv[1:]))

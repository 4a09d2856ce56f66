"""`make deploy|status|rollback|releases|promote|destroy ENV=aws` (or ENV=staging, ENV=prod):
put the platform on AWS, watch it, ship and step back, take it down.

    python -m infra.deploy deploy     # stacks, code, example data, the first run of the chain
    python -m infra.deploy status     # the chain's last runs, and what failed
    python -m infra.deploy release    # (the release build, in AWS) package, push, roll, smoke
    python -m infra.deploy rollback   # the previous image (and so the previous model)
    python -m infra.deploy releases   # what was deployed, when, by whom and why, newest last
    python -m infra.deploy promote    # (prod) the image that served in staging, copied and rolled
    python -m infra.deploy wait       # wait for the chain's newest run; fail unless it succeeded
    python -m infra.deploy spark <command>  # one `python -m pipelines` command on EMR
    python -m infra.deploy mlflow-ui  # the MLflow UI on localhost:5000 (SSM port forwarding)
    python -m infra.deploy destroy    # every stack; names what it keeps (--purge: those too)

Deploy: check credentials, Docker and the CDK CLI first and stop at once, saying what is
missing; `cdk deploy` the stacks (the MLflow image is built by it, for linux/amd64); upload the
Spark code (the packed venv, built in Docker) and the source bundle of the release build; land
the use case's example drops in the landing zone (drops already there are kept); start a run
of the chain's state machine when any of that changed or nothing has run yet. The state
machine (infra/stacks/chain.py) runs the chain in AWS: the Spark stages and fit, promote,
materialize and report as EMR Serverless jobs, then the release build. Nothing is served
until the first run has trained and released a champion.

Release (the chain's last step, a CodeBuild build in the VPC): package the AWS champion into
a Bento, containerize it for linux/amd64, push it under the Bento's version, roll the serving
stack to that tag (its `ImageTag` parameter, through the serving stack's own deploy role,
which may touch only the service, its task definitions and its scaling, so CloudFormation stays
the owner of the service and the build holds no administrator role), record the release in SSM Parameter Store,
send a smoke request. The Bento's version is the digest of the code and model it serves, so
a code-only change releases like a new model, and when the service already runs that image
nothing is rolled or recorded. An environment that takes its releases from another
(`aws.serving.promote_from`, prod) packages nothing: `promote` copies the image that served
there long enough and rolls to it.

Rollback: roll the serving stack back to the tag of the release before the current one. The
Bento pins the model version it serves, so the previous image is the previous model; the
registry's `champion` alias is moved with `python -m pipelines rollback` from inside the VPC.
"""

from __future__ import annotations

from infra.deploy.cli import COMMANDS, build_parser, main, parse_arguments
from infra.deploy.common import (
    CDK_CLI,
    JOB_POLL_S,
    ROOT,
    DeployError,
    Run,
    check_credentials,
    check_docker_daemon,
    check_tools,
    failing_events,
    run_command,
    stack_outputs,
)
from infra.deploy.destroy import (
    KMS_PENDING_DAYS,
    Kept,
    destroy,
    existing_stacks,
    lift_deletion_protection,
    made_outside_the_stacks,
    purge,
    retained_resources,
)
from infra.deploy.first_deploy import (
    SHA_METADATA,
    Deployed,
    deploy,
    land_example_data,
    source_bundle,
    start_run,
    state_machine_arn,
    upload_code,
    upload_if_changed,
)
from infra.deploy.mlflow_ui import MLFLOW_CONTAINER, PORT_FORWARDING, mlflow_tunnel
from infra.deploy.releases import (
    CLOUDFORMATION_ROLE_VARIABLE,
    Packaged,
    Release,
    bento_tag,
    caller,
    copy_image,
    current_image_tag,
    image_exists,
    promote,
    push_serving_image,
    read_releases,
    record_release,
    release,
    release_lines,
    releases_parameter,
    roll_service,
    rollback,
    serving_line,
)
from infra.deploy.spark import (
    build_spark_code,
    job_environment,
    run_on_emr,
    run_spark_jobs,
    spark_job_driver,
)
from infra.deploy.status import ChainRun, status, wait_for_run

__all__ = [
    "CDK_CLI",
    "CLOUDFORMATION_ROLE_VARIABLE",
    "COMMANDS",
    "JOB_POLL_S",
    "KMS_PENDING_DAYS",
    "MLFLOW_CONTAINER",
    "PORT_FORWARDING",
    "ROOT",
    "SHA_METADATA",
    "ChainRun",
    "DeployError",
    "Deployed",
    "Kept",
    "Packaged",
    "Release",
    "Run",
    "bento_tag",
    "build_parser",
    "build_spark_code",
    "caller",
    "check_credentials",
    "check_docker_daemon",
    "check_tools",
    "copy_image",
    "current_image_tag",
    "deploy",
    "destroy",
    "existing_stacks",
    "failing_events",
    "image_exists",
    "job_environment",
    "land_example_data",
    "lift_deletion_protection",
    "made_outside_the_stacks",
    "main",
    "mlflow_tunnel",
    "parse_arguments",
    "promote",
    "purge",
    "push_serving_image",
    "read_releases",
    "record_release",
    "release",
    "release_lines",
    "releases_parameter",
    "retained_resources",
    "roll_service",
    "rollback",
    "run_command",
    "run_on_emr",
    "run_spark_jobs",
    "serving_line",
    "source_bundle",
    "spark_job_driver",
    "stack_outputs",
    "start_run",
    "state_machine_arn",
    "status",
    "upload_code",
    "upload_if_changed",
    "wait_for_run",
]

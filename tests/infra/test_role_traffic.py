"""The Spark jobs' and the serving task's own AWS traffic, judged against their roles.

Their S3 I/O goes through pyarrow and Feast, which botocore's hooks never see, so the requests
are recorded where AWS would see them: at the server. One moto server (moto's request
recorder on) holds the stacks as moto's CloudFormation made them; the platform's own code runs
against it in the platform's venv, each identity with an access key of its own
(tests/infra/role_driver.py); every request the server received is then turned into what IAM
evaluates (tests/infra/policy_check.py) and judged against that identity's role.

Not covered here (and why): the stages' Spark I/O (EMRFS needs AWS), the online store
(Redis, not IAM), and Secrets Manager reads (judged from the templates in test_chain.py).
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from xml.etree import ElementTree

import boto3

from infra import deploy
from tests.infra import policy_check
from tests.infra.conftest import REGION, STACK, USECASE_ENVIRON
from tests.infra.test_deploy import create_stacks
from tests.infra.test_role_policies import _bucket_keys

ROOT = Path(__file__).resolve().parents[2]
PLATFORM_PYTHON = ROOT / ".venv" / "bin" / "python"
DRIVER = Path(__file__).with_name("role_driver.py")
# identity -> (its access key, the stack and role it runs as)
IDENTITIES = {
    "features": ("TESTKEYFEATURESJOB", "spark", ("AWS::IAM::Role", "FeatureWriterRole")),
    "monitor": ("TESTKEYMONITORJOB", "spark", ("AWS::IAM::Role", "JobRole")),
    "serving": ("TESTKEYSERVINGTASK", "serving", ("AWS::ECS::TaskDefinition", "TaskRoleArn")),
}


def _role_id(templates: dict[str, Any], stack: str, kind: tuple[str, str]) -> str:
    resource_type, name = kind
    if resource_type == "AWS::IAM::Role":
        (found,) = [
            k
            for k, r in templates[stack]["Resources"].items()
            if r["Type"] == resource_type and re.fullmatch(rf"{name}[0-9A-F]{{8}}", k)
        ]
        return found
    return policy_check.role_logical_id(templates[stack], resource_type, name)


def _run(identity: str, endpoint: str, lake: str, landing: str) -> None:
    key, _, _ = IDENTITIES[identity]
    environment = {
        **USECASE_ENVIRON,
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/tmp"),
        "MLOPS_ENV": "aws",
        "MLOPS_LAKE_BUCKET": lake,
        "MLOPS_LANDING_BUCKET": landing,
        # endpoints the identity never calls here (the online store, the tracking server)
        "MLOPS_REDIS_ENDPOINT": "redis.invalid",
        "MLOPS_REDIS_USER": "feast-reader",
        "MLOPS_REDIS_AUTH_TOKEN": "unused",  # pragma: allowlist secret
        "MLFLOW_TRACKING_URI": "http://mlflow.invalid",
        # the identity, and where AWS is (every client the code uses: boto3, pyarrow, Feast)
        "AWS_ACCESS_KEY_ID": key,
        "AWS_SECRET_ACCESS_KEY": "x",  # pragma: allowlist secret
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": endpoint,
        "MLOPS_S3_ENDPOINT": endpoint,
        "FEAST_S3_ENDPOINT_URL": endpoint,
        "FEAST_USAGE": "False",
    }
    done = subprocess.run(
        [str(PLATFORM_PYTHON), str(DRIVER), identity],
        env=environment,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]


# -- requests, as IAM judges them -----------------------------------------------------------
def _access_key(headers: dict[str, str]) -> str:
    found = re.search(r"Credential=([A-Z0-9]+)/", headers.get("Authorization", ""))
    return found.group(1) if found else ""


def _service(headers: dict[str, str]) -> str:
    found = re.search(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/", headers.get("Authorization", ""))
    return found.group(1) if found else ""


def s3_calls(entry: dict[str, Any]) -> list[policy_check.Call]:
    """One recorded S3 REST request (path style) as the S3 actions IAM evaluates."""
    url = urlsplit(entry["url"])
    bucket, _, key = unquote(url.path).lstrip("/").partition("/")
    query = parse_qs(url.query, keep_blank_values=True)
    method = entry["method"]
    if not bucket:
        return [policy_check.Call("s3:ListAllMyBuckets", "arn:aws:s3:::*")]
    if not key:
        if method == "POST" and "delete" in query:
            body = entry["body"]
            xml = base64.b64decode(body) if entry.get("body_encoded") else body.encode()
            keys = [e.text for e in ElementTree.fromstring(xml).iter() if e.tag.endswith("Key")]
            return [
                policy_check.Call("s3:DeleteObject", f"arn:aws:s3:::{bucket}/{k}") for k in keys
            ]
        if method in ("GET", "HEAD") and "location" in query:
            return [policy_check.Call("s3:GetBucketLocation", f"arn:aws:s3:::{bucket}")]
        if method in ("GET", "HEAD"):
            return [policy_check.Call("s3:ListBucket", f"arn:aws:s3:::{bucket}")]
        raise AssertionError(f"no mapping for S3 {method} on bucket {bucket}: {entry['url']}")
    resource = f"arn:aws:s3:::{bucket}/{key}"
    if method in ("GET", "HEAD"):
        return [policy_check.Call("s3:GetObject", resource)]
    if method in ("PUT", "POST"):  # a put, or a part of a multipart upload
        calls = [policy_check.Call("s3:PutObject", resource)]
        source = {k.lower(): v for k, v in entry["headers"].items()}.get("x-amz-copy-source")
        if source:
            calls.append(
                policy_check.Call("s3:GetObject", f"arn:aws:s3:::{unquote(source).lstrip('/')}")
            )
        return calls
    if method == "DELETE":
        action = "s3:AbortMultipartUpload" if "uploadId" in query else "s3:DeleteObject"
        return [policy_check.Call(action, resource)]
    raise AssertionError(f"no mapping for S3 {method}: {entry['url']}")


def recorded_calls(
    recording: Path, bucket_keys: dict[str, str]
) -> dict[str, list[policy_check.Call]]:
    """Access key -> every call its requests made (with the KMS use an object read or write in
    an encrypted bucket implies)."""
    implied = policy_check.Recorder(REGION, bucket_keys=bucket_keys)
    by_key: dict[str, list[policy_check.Call]] = {}
    for line in recording.read_text().splitlines():
        entry = json.loads(line)
        key = _access_key(entry["headers"])
        if key not in {k for k, _, _ in IDENTITIES.values()}:
            continue
        service = _service(entry["headers"])
        if service != "s3":
            raise AssertionError(f"{key} called {service} ({entry['url']}): map it here")
        for call in s3_calls(entry):
            by_key.setdefault(key, []).extend([call, *implied._kms(call)])
    return by_key


def test_each_job_and_the_serving_task_may_make_every_request_it_makes(
    moto_server, synthesized, templates, tmp_path
) -> None:
    from moto.moto_api import recorder

    session = boto3.session.Session(region_name=REGION)
    create_stacks(session, synthesized, templates)
    data = deploy.stack_outputs(session.client("cloudformation"), f"{STACK}-data")
    recorder.start_recording()
    for identity in ("features", "monitor", "serving"):  # in the order they run
        _run(identity, moto_server, data["LakeBucket"], data["LandingBucket"])
    recorder.stop_recording()

    calls = recorded_calls(Path(recorder._location), _bucket_keys(session))
    refused = {}
    for identity, (key, stack, role) in IDENTITIES.items():
        assert calls.get(key), f"{identity} made no request: the recording missed it"
        policies = policy_check.role_policies(
            session, f"{STACK}-{stack}", _role_id(templates, stack, role)
        )
        refused[identity] = policy_check.refused(policies, calls[key])
    assert refused == {identity: [] for identity in IDENTITIES}
    # what the recording is about: the registry written by the features job and read by the
    # service, the prediction log written by both writers and compacted by the monitor, through
    # pyarrow and Feast alike
    made = {
        key: {(c.action, c.resource.split("/", 1)[-1].split("/")[0]) for c in cs}
        for key, cs in calls.items()
    }
    assert ("s3:PutObject", "feast") in made[IDENTITIES["features"][0]]
    assert ("s3:GetObject", "feast") in made[IDENTITIES["serving"][0]]
    assert ("s3:PutObject", "prediction-log") in made[IDENTITIES["serving"][0]]
    assert ("s3:PutObject", "monitoring") in made[IDENTITIES["monitor"][0]]
    # the monitor's compaction of the log: a day's parts rewritten, then deleted
    assert ("s3:DeleteObject", "prediction-log") in made[IDENTITIES["monitor"][0]]

"""Checks on infra/: the CloudFormation template lints clean and is locked down, the
standalone IAM policy matches it, and the systemd units run unprivileged without secrets."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
TEMPLATE = INFRA / "cloudformation" / "artifacts-bucket.yaml"
POLICY_JSON = INFRA / "iam" / "worker-policy.json"
KMS_POLICY_JSON = INFRA / "iam" / "worker-policy-kms.json"
UNITS = [INFRA / "systemd" / "bpo-worker.service", INFRA / "systemd" / "prefect-server.service"]

BUCKET_ARN = "arn:aws:s3:::BUCKET_NAME"
PREFIXES = ("inbox", "runs", "quarantine", "prefect-results")


# --- template loading and a tiny evaluator for the intrinsics the template uses ---------------

_NO_VALUE = object()


def _load_template() -> dict:
    cfn_yaml = pytest.importorskip("cfnlint.decode.cfn_yaml")
    return cfn_yaml.load(str(TEMPLATE))


@pytest.fixture(scope="module")
def template() -> dict:
    return _load_template()


def _sub(text: str, params: dict[str, str], extra: dict[str, str]) -> str:
    def repl(m: re.Match) -> str:
        name = m.group(1)
        if name in extra:
            return extra[name]
        if name == "ArtifactsBucket.Arn":
            return BUCKET_ARN
        if name == "ArtifactsBucket":
            return "BUCKET_NAME"
        return params[name]

    return re.sub(r"\$\{([^}!]+)\}", repl, text)


def render(node: Any, conditions: dict[str, bool], params: dict[str, str]) -> Any:
    """Evaluate Fn::If / Ref / Fn::Sub / Fn::GetAtt for one choice of conditions and parameters."""
    if isinstance(node, dict):
        if len(node) == 1:
            ((key, arg),) = node.items()
            if key == "Fn::If":
                cond, yes, no = arg
                return render(yes if conditions[cond] else no, conditions, params)
            if key == "Ref":
                if arg == "AWS::NoValue":
                    return _NO_VALUE
                if arg == "ArtifactsBucket":
                    return "BUCKET_NAME"
                return params[arg]
            if key == "Fn::GetAtt":
                assert list(arg) == ["ArtifactsBucket", "Arn"], arg
                return BUCKET_ARN
            if key == "Fn::Sub":
                if isinstance(arg, str):
                    return _sub(arg, params, {})
                text, variables = arg
                return _sub(text, params, {k: render(v, conditions, params) for k, v in variables.items()})
        out = {}
        for k, v in node.items():
            r = render(v, conditions, params)
            if r is not _NO_VALUE:
                out[str(k)] = r
        return out
    if isinstance(node, list):
        return [r for r in (render(v, conditions, params) for v in node) if r is not _NO_VALUE]
    return node


PARAMS = {
    "Prefix": "PREFIX",
    "KmsKeyArn": "KMS_KEY_ARN",
    "AWS::Region": "REGION",
    "AWS::StackName": "STACK",
    "QuarantineExpirationDays": "90",
    "NoncurrentVersionExpirationDays": "365",
    "BucketName": "BUCKET_NAME",
    "WorkerRoleNames": "role",
}
COMBOS = [
    {"HasBucketName": b, "HasPrefix": p, "UseKms": k, "HasWorkerRoles": False}
    for b in (True, False)
    for p in (True, False)
    for k in (True, False)
]


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _resource(template: dict, logical_id: str, conditions: dict[str, bool], **params: str) -> dict:
    return render(template["Resources"][logical_id], conditions, {**PARAMS, **params})


def _worker_statements(template: dict, conditions: dict[str, bool], **params: str) -> list[dict]:
    policy = _resource(template, "WorkerPolicy", conditions, **params)
    assert policy["Type"] == "AWS::IAM::ManagedPolicy"
    return policy["Properties"]["PolicyDocument"]["Statement"]


def _actions(statements: list[dict]) -> set[str]:
    return {a for s in statements for a in _as_list(s["Action"])}


# --- cfn-lint --------------------------------------------------------------------------------


def _cfn_lint() -> str | None:
    beside = Path(sys.executable).parent / "cfn-lint"
    return str(beside) if beside.exists() else shutil.which("cfn-lint")


def test_template_passes_cfn_lint() -> None:
    exe = _cfn_lint()
    if exe is None:
        pytest.skip("cfn-lint is not installed (pip install -e '.[dev]')")
    proc = subprocess.run([exe, str(TEMPLATE)], capture_output=True, text=True, timeout=240)  # noqa: S603
    assert proc.returncode == 0, f"cfn-lint findings:\n{proc.stdout}{proc.stderr}"
    assert proc.stdout.strip() == ""


# --- the bucket ------------------------------------------------------------------------------


def test_template_parameters(template: dict) -> None:
    params = template["Parameters"]
    assert params["BucketName"]["Default"] == ""
    assert params["Prefix"]["Default"] == "bpo"
    assert params["KmsKeyArn"]["Default"] == ""
    assert int(params["QuarantineExpirationDays"]["Default"]) == 90
    assert int(params["NoncurrentVersionExpirationDays"]["Default"]) == 365


@pytest.mark.parametrize("conditions", COMBOS)
def test_bucket_is_versioned_private_and_encrypted(template: dict, conditions: dict[str, bool]) -> None:
    bucket = _resource(template, "ArtifactsBucket", conditions)
    assert bucket["Type"] == "AWS::S3::Bucket"
    assert bucket.get("DeletionPolicy") == "Retain"
    props = bucket["Properties"]
    assert ("BucketName" in props) is conditions["HasBucketName"]
    assert props["VersioningConfiguration"]["Status"] == "Enabled"
    pab = props["PublicAccessBlockConfiguration"]
    for key in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"):
        assert pab[key] is True, key
    assert props["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]

    (sse,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    default = sse["ServerSideEncryptionByDefault"]
    if conditions["UseKms"]:
        assert default == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "KMS_KEY_ARN"}
        assert sse["BucketKeyEnabled"] is True
    else:
        assert default == {"SSEAlgorithm": "AES256"}


@pytest.mark.parametrize("has_prefix", [True, False])
def test_lifecycle_rules(template: dict, has_prefix: bool) -> None:
    conditions = {**COMBOS[0], "HasPrefix": has_prefix}
    rules = _resource(template, "ArtifactsBucket", conditions)["Properties"]["LifecycleConfiguration"]["Rules"]
    assert all(r["Status"] == "Enabled" for r in rules)

    quarantine = [r for r in rules if "ExpirationInDays" in r]
    assert len(quarantine) == 1
    assert quarantine[0]["Prefix"] == ("PREFIX/quarantine/" if has_prefix else "quarantine/")
    assert quarantine[0]["ExpirationInDays"] == "90"

    noncurrent = [r for r in rules if "NoncurrentVersionExpiration" in r]
    assert len(noncurrent) == 1 and "Prefix" not in noncurrent[0]
    assert noncurrent[0]["NoncurrentVersionExpiration"]["NoncurrentDays"] == "365"

    multipart = [r for r in rules if "AbortIncompleteMultipartUpload" in r]
    assert len(multipart) == 1 and "Prefix" not in multipart[0]
    assert multipart[0]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 7


def test_bucket_policy_denies_plain_http(template: dict) -> None:
    policy = _resource(template, "ArtifactsBucketPolicy", COMBOS[0])
    assert policy["Properties"]["Bucket"] == "BUCKET_NAME"
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    tls = [
        s
        for s in statements
        if s["Effect"] == "Deny" and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
    ]
    assert len(tls) == 1
    assert tls[0]["Principal"] == "*"
    assert "s3:*" in _as_list(tls[0]["Action"])
    assert set(tls[0]["Resource"]) == {BUCKET_ARN, f"{BUCKET_ARN}/*"}
    assert all(s["Effect"] == "Deny" for s in statements), "the bucket policy only denies"


# --- the worker policy -----------------------------------------------------------------------


@pytest.mark.parametrize("conditions", COMBOS)
def test_worker_policy_is_least_privilege(template: dict, conditions: dict[str, bool]) -> None:
    statements = _worker_statements(template, conditions)
    assert all(s["Effect"] == "Allow" for s in statements)
    for s in statements:
        for action in _as_list(s["Action"]):
            assert "*" not in action, action
        for resource in _as_list(s["Resource"]):
            assert resource != "*" and not resource.endswith(":::BUCKET_NAME/*"), resource
        assert "NotAction" not in s and "NotResource" not in s

    base = f"{BUCKET_ARN}/PREFIX/" if conditions["HasPrefix"] else f"{BUCKET_ARN}/"
    allowed = {f"{base}{p}/*" for p in PREFIXES}
    by_action: dict[str, set[str]] = {}
    for s in statements:
        for action in _as_list(s["Action"]):
            by_action.setdefault(action, set()).update(_as_list(s["Resource"]))

    assert by_action["s3:DeleteObject"] == {f"{base}inbox/*"}
    assert by_action["s3:GetObject"] == allowed
    assert by_action["s3:PutObject"] == allowed
    assert by_action["s3:ListBucket"] == {BUCKET_ARN}
    (listing,) = [s for s in statements if "s3:ListBucket" in _as_list(s["Action"])]
    listed = _as_list(listing["Condition"]["StringLike"]["s3:prefix"])
    assert listed == (["PREFIX/*"] if conditions["HasPrefix"] else [f"{p}/*" for p in PREFIXES])

    kms = {a for a in by_action if a.startswith("kms:")}
    if conditions["UseKms"]:
        assert kms == {"kms:Decrypt", "kms:GenerateDataKey"}
        assert by_action["kms:Decrypt"] == by_action["kms:GenerateDataKey"] == {"KMS_KEY_ARN"}
    else:
        assert kms == set()
    assert set(by_action) - kms == {"s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject"}


def test_outputs(template: dict) -> None:
    assert {"BucketName", "BucketArn", "WorkerPolicyArn"} <= set(template["Outputs"])


def test_json_policy_matches_template(template: dict) -> None:
    doc = json.loads(POLICY_JSON.read_text())
    assert doc["Version"] == "2012-10-17"
    rendered = _worker_statements(template, {**COMBOS[0], "UseKms": False, "HasPrefix": True})
    assert _actions(doc["Statement"]) == _actions(rendered)
    assert doc["Statement"] == rendered


def test_json_kms_policy_matches_template(template: dict) -> None:
    doc = json.loads(KMS_POLICY_JSON.read_text())
    with_kms = _worker_statements(template, {**COMBOS[0], "UseKms": True, "HasPrefix": True})
    without = _worker_statements(template, {**COMBOS[0], "UseKms": False, "HasPrefix": True})
    assert doc["Statement"] == [s for s in with_kms if s not in without]
    plain = json.loads(POLICY_JSON.read_text())
    assert _actions(plain["Statement"]) | _actions(doc["Statement"]) == _actions(with_kms)


# --- systemd units ---------------------------------------------------------------------------

SECRET_PATTERNS = [
    re.compile(r"AWS_SECRET", re.I),
    re.compile(r"AWS_ACCESS_KEY_ID\s*=", re.I),
    re.compile(r"SECRET_ACCESS_KEY\s*=", re.I),
    re.compile(r"AKIA[0-9A-Z]{16}"),
    re.compile(r"passw(or)?d\s*[=:]", re.I),
    re.compile(r"://[^/\s:@]+:[^@\s<]+@"),  # credentials inside a URL
]


def _directives(unit: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_runs_unprivileged_without_secrets(unit: Path) -> None:
    d = _directives(unit)
    assert d["User"] == ["bpo"]
    assert d.get("Group", ["bpo"]) == ["bpo"]
    assert d["NoNewPrivileges"] == ["true"]
    assert d["ProtectSystem"] == ["strict"]
    assert d["PrivateTmp"] == ["true"]
    assert d["ProtectHome"] == ["true"]
    assert d["Restart"] == ["on-failure"]
    assert d["EnvironmentFile"] and all(f.startswith("/etc/nonvoice-bpo/") for f in d["EnvironmentFile"])
    for line in unit.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        for pattern in SECRET_PATTERNS:
            assert not pattern.search(line), f"{unit.name}: looks like a secret: {line!r}"


def test_worker_unit_command_and_paths() -> None:
    d = _directives(UNITS[0])
    (exec_start,) = d["ExecStart"]
    assert exec_start.split()[1:] == ["worker", "start", "--pool", "bpo-process", "--type", "process"]
    assert exec_start.split()[0].endswith("/prefect")
    assert d["WorkingDirectory"] == ["/opt/nonvoice-bpo"]
    assert d["EnvironmentFile"] == ["/etc/nonvoice-bpo/env"]
    assert "/var/lib/nonvoice-bpo" in " ".join(d["ReadWritePaths"]).split()
    assert "BPO_HOME=/var/lib/nonvoice-bpo" in d["Environment"]


def test_server_unit_binds_loopback() -> None:
    d = _directives(UNITS[1])
    (exec_start,) = d["ExecStart"]
    assert exec_start.split()[1:3] == ["server", "start"]
    assert "--host" not in exec_start or "--host 127.0.0.1" in exec_start
    assert "PREFECT_SERVER_API_HOST=127.0.0.1" in d["Environment"]
    assert not any(e.startswith("PREFECT_API_DATABASE_CONNECTION_URL") for e in d["Environment"])


# --- container image -------------------------------------------------------------------------


def test_containerfile_runs_worker_as_non_root() -> None:
    text = (INFRA / "container" / "Containerfile").read_text()
    instructions = [ln.split(None, 1) for ln in text.splitlines() if ln.strip() and not ln.startswith(("#", " "))]
    assert instructions[0] == ["FROM", "python:3.11-slim"]
    users = [arg.strip() for ins, arg in instructions if ins == "USER"]
    assert users and users[-1] not in {"root", "0"}
    assert "pip install --no-cache-dir ." in text
    (cmd,) = [arg for ins, arg in instructions if ins == "CMD"]
    assert json.loads(cmd) == ["prefect", "worker", "start", "--pool", "bpo-process", "--type", "process"]
    assert not any(p.search(text) for p in SECRET_PATTERNS)

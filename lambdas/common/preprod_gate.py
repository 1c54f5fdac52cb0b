"""The preprod gate's record on a business-unit model version, shared by its writer and its reader.

Preprod's gate recorder (lambdas/evaluation/gate_record.py) writes the result of the evaluation run into the
version's CustomerMetadataProperties in the central registry; prod's deployer
(lambdas/serving_deployer/preprod_gate.py) deploys an approved version only when that record says `passed`
for this exact version and artifact checksum.

Anyone who may register a version (the dev account) may also set metadata at CreateModelPackage, so the
record carries an HMAC (KMS GenerateMac, HMAC_SHA_256) over the version ARN, its group, the checksum, the
result and the run. The key lives in the business unit's preprod account; only its gate recorder may generate
MACs with it, prod may only verify them, so a dev-written or another business unit's record never verifies.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

from botocore.exceptions import ClientError

GateOutcome = Literal["passed", "failed"]
MAC_ALGORITHM = "HMAC_SHA_256"
# CustomerMetadataProperties keys of the record (values are at most 256 characters).
RESULT = "PreprodGate"
RUN = "PreprodGateRun"
SHA256 = "PreprodGateSha256"
MAC = "PreprodGateMac"
RECORD_KEYS = (RESULT, RUN, SHA256, MAC)


EXECUTION_PREFIX = "bu-gate-"
# The event preprod's gate recorder sends when a passing record lands on a version that is already Approved
# (the approval came first, and prod refused it then): prod's deployer checks that version again.
GATE_PASSED_DETAIL_TYPE = "Preprod Gate Passed"


def gate_passed_source(org_prefix: str) -> str:
    """The event's source (custom sources may not start with `aws.`)."""
    return f"{org_prefix}.preprod-gate"


def execution_name(group: str, version: int) -> str:
    """The gate run's Step Functions execution name (and run id), one per version: a redelivered registry
    event cannot start a second run. At most 80 characters; the recorder's rule matches the prefix."""
    if len(group) > 56:  # keep long names apart: a prefix plus a digest of the whole name
        group = f"{group[:49]}-{hashlib.sha256(group.encode()).hexdigest()[:6]}"
    return f"{EXECUTION_PREFIX}{group}-v{version}"


@dataclass(frozen=True)
class GateRecord:
    model_package_arn: str
    group: str
    artifact_sha256: str
    result: GateOutcome
    run_id: str

    def message(self) -> bytes:
        """The exact bytes the MAC covers: every field, in a fixed order."""
        return json.dumps(
            [self.model_package_arn, self.group, self.artifact_sha256, self.result, self.run_id],
            separators=(",", ":"),
        ).encode()

    def properties(self, mac: bytes) -> dict[str, str]:
        return {
            RESULT: self.result,
            RUN: self.run_id,
            SHA256: self.artifact_sha256,
            MAC: base64.b64encode(mac).decode(),
        }


def sign(kms: Any, key_id: str, record: GateRecord) -> bytes:
    response = kms.generate_mac(KeyId=key_id, MacAlgorithm=MAC_ALGORITHM, Message=record.message())
    return bytes(response["Mac"])


def refusal(
    kms: Any, key_id: str, *, arn: str, group: str, artifact_sha256: str | None, metadata: dict[str, Any]
) -> str | None:
    """Why this version may not be deployed past preprod; None when its record says it passed the gate.

    `artifact_sha256` is the checksum the version is registered with (the one the deployer will verify
    the bytes against); the record must name the same one.
    """
    result = metadata.get(RESULT)
    if result is None:
        return "no preprod gate record: the version was not evaluated in preprod (or its run has not ended)"
    if result != "passed":
        return f"the preprod gate did not pass (result {result!r}, run {metadata.get(RUN)!r})"
    if not artifact_sha256 or metadata.get(SHA256) != artifact_sha256:
        return (
            f"the preprod gate passed for checksum {metadata.get(SHA256)!r}, "
            f"but the version is registered with {artifact_sha256!r}"
        )
    try:
        mac = base64.b64decode(str(metadata.get(MAC, "")), validate=True)
    except (binascii.Error, ValueError):
        return f"{MAC}: not base64"
    record = GateRecord(arn, group, artifact_sha256, "passed", str(metadata.get(RUN, "")))
    try:
        verified = kms.verify_mac(
            KeyId=key_id, MacAlgorithm=MAC_ALGORITHM, Message=record.message(), Mac=mac
        ).get("MacValid", False)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code in ("KMSInvalidMacException", "ValidationException", "InvalidCiphertextException"):
            verified = False
        else:
            raise
    if not verified:
        return f"{MAC}: the record was not written by this business unit's preprod gate"
    return None

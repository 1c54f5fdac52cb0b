"""Serve a registered model version in its own slot: copy it checksum-pinned, serve it, probe it, record it.

A slot is what one record names: a tenant's model (`TENANT#<tenant>` / `MODEL#<model name>`) or a business
unit's model of one registry group (`GROUP#<group>` / `MODEL#default`). Everything the deployer does to a
version touches that version's slot only, so one tenant's approval never evicts another tenant's model.

`handle_package` is the whole decision:
- Approved: unless the slot already serves this or a newer version, copy the exact artifact into the
  stage's serving bucket (its SHA-256 must equal the `ArtifactSha256` the pipeline registered), serve the
  copy (`ServingTarget`), probe it, and only then write the slot's record (what /invoke reads) and retire
  the slot's previous version. A failure removes what it installed and writes no serving record.
- Rejected (a revoked approval): when the slot serves this version, delete its record and its component.
- PendingManualApproval: served only for the groups the stage tests before approval (preprod, the business
  unit's central groups); a tenant's version awaiting review is never served.
Every outcome is written as a deployment item (`DEPLOYMENT#<group>#<version>`), which GET /fine-tunes reads.
Clients are injected (tests pass moto or botocore Stubber clients); nothing is created at import time.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, Protocol

from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import ClientError
from serving_runtime.lmi import LmiSettings

from common.checksums import SHA256_HEX, stream_sha256
from serving_deployer.adapter_package import package_adapter, upload_package

Action = Literal["deployed", "already_serving", "rolled_back", "retired", "skipped_stale", "ignored"]
# The probe's body is in this format, so a served model is known to answer it; /invoke uses the same.
PAYLOAD_FORMAT = "tgi"
# The largest artifact served: /tmp holds it, its unpacked members and the package built from them (about
# three times its size); stacks/serving_stack.py sizes the function's ephemeral storage from this.
MAX_ARTIFACT_BYTES = 3 * 1024**3
DOWNLOAD_CHUNK_BYTES = 1024 * 1024  # what the download holds in memory at once (two: the new and the last)


class DeploymentError(Exception):
    """The model could not be made servable (copy, checksum, install or test invocation failed)."""


@dataclass(frozen=True)
class ModelPackage:
    """One registered version, as DescribeModelPackage reports it now (not as an old event said)."""

    arn: str
    group: str
    version: int
    status: str
    artifact_url: str | None
    sha256: str | None
    tenant_id: str | None = None
    model_name: str | None = None

    @property
    def slot(self) -> tuple[str, str]:
        if self.tenant_id is not None:
            return f"TENANT#{self.tenant_id}", f"MODEL#{self.model_name}"
        return f"GROUP#{self.group}", "MODEL#default"

    @property
    def slot_path(self) -> str:
        """Key segments of the slot's copies in the serving bucket."""
        if self.tenant_id is not None:
            return f"tenants/{self.tenant_id}/{self.model_name}"
        return f"business-unit/{self.group}"


@dataclass(frozen=True)
class Served:
    """What serves one version: the record /invoke reads (`route`) and what to delete on removal."""

    route: dict[str, str]  # target_model (multi-model) or inference_component
    artifact_key: str
    component: str | None = None
    package_sha256: str | None = None  # the serving package's digest, where one was built from the artifact


@dataclass(frozen=True)
class Outcome:
    action: Action
    group: str
    version: int
    slot: tuple[str, str]
    served: dict[str, str] | None = None
    retired_version: int | None = None
    error: str | None = None


class ServingTarget(Protocol):
    endpoint_name: str

    def install(self, package: ModelPackage, artifact_key: str) -> Served: ...

    def probe(self, served: Served) -> None: ...

    def remove(self, served: Served) -> None: ...


class Records(Protocol):
    def serving(self, slot: tuple[str, str]) -> dict[str, Any] | None: ...

    def put_serving(self, slot: tuple[str, str], item: dict[str, Any]) -> bool: ...

    def delete_serving(self, slot: tuple[str, str], version: int) -> bool: ...

    def put_deployment(self, package: ModelPackage, status: str, reason: str | None) -> None: ...


def package_from_description(described: dict[str, Any], *, tenant_groups: frozenset[str]) -> ModelPackage:
    """DescribeModelPackage -> ModelPackage; a tenant group's version must name its tenant and model."""
    group = str(described["ModelPackageGroupName"])
    metadata = described.get("CustomerMetadataProperties") or {}
    containers = (described.get("InferenceSpecification") or {}).get("Containers") or []
    url = containers[0].get("ModelDataUrl") if containers else None
    tenant = model_name = None
    if group in tenant_groups:
        tenant, model_name = metadata.get("TenantId"), metadata.get("ModelName")
        if not (
            isinstance(tenant, str)
            and re.fullmatch(r"[A-Za-z0-9._:\-]{1,128}", tenant)
            and ".." not in tenant
        ):
            raise DeploymentError("CustomerMetadataProperties.TenantId: missing or not a tenant id")
        if not (isinstance(model_name, str) and re.fullmatch(r"[a-z0-9][a-z0-9\-]{0,47}", model_name)):
            raise DeploymentError("CustomerMetadataProperties.ModelName: missing or not a model name")
    return ModelPackage(
        arn=str(described["ModelPackageArn"]),
        group=group,
        version=int(described["ModelPackageVersion"]),
        status=str(described["ModelApprovalStatus"]),
        artifact_url=url if isinstance(url, str) else None,
        sha256=metadata.get("ArtifactSha256"),
        tenant_id=tenant,
        model_name=model_name,
    )


def handle_package(
    target: ServingTarget,
    records: Records,
    package: ModelPackage,
    *,
    now: int,
    pending_groups: frozenset[str] = frozenset(),
) -> Outcome:
    """`pending_groups`: groups whose versions this stage serves before approval (preprod, where the
    business unit's new versions are tested before anyone approves them); elsewhere only Approved serves."""
    slot = package.slot
    current = records.serving(slot)
    current_version = int(current["version"]) if current else None
    servable = package.status == "Approved" or (
        package.status == "PendingManualApproval" and package.group in pending_groups
    )
    if not servable:
        if current is None or current_version != package.version:
            return Outcome("ignored", package.group, package.version, slot)
        records.delete_serving(slot, package.version)
        target.remove(_served(current))
        records.put_deployment(package, "retired", f"approval status is {package.status}")
        return Outcome("retired", package.group, package.version, slot, retired_version=package.version)
    if current_version is not None and current_version >= package.version:
        action: Action = "already_serving" if current_version == package.version else "skipped_stale"
        if action == "skipped_stale":
            records.put_deployment(package, "superseded", f"version {current_version} is newer")
        return Outcome(action, package.group, package.version, slot)
    served: Served | None = None
    key = f"{package.slot_path}/v{package.version}/model.tar.gz"
    try:
        served = target.install(package, key)
        target.probe(served)
    except DeploymentError as exc:
        if served is not None:
            target.remove(served)
        records.put_deployment(package, "failed", str(exc))
        return Outcome("rolled_back", package.group, package.version, slot, error=str(exc))
    item = {
        "endpoint_name": target.endpoint_name,
        **served.route,
        "payload_format": PAYLOAD_FORMAT,
        "artifact_key": served.artifact_key,
        "artifact_sha256": package.sha256 or "",
        **({"package_sha256": served.package_sha256} if served.package_sha256 else {}),
        "model_package_arn": package.arn,
        "group": package.group,
        "version": package.version,
        "created_at": now,
    }
    if not records.put_serving(slot, item):  # a newer version won the race: this one is not served
        target.remove(served)
        records.put_deployment(package, "superseded", "a newer version was recorded meanwhile")
        return Outcome("skipped_stale", package.group, package.version, slot)
    if current is not None:
        target.remove(_served(current))
    records.put_deployment(package, "serving", None)
    return Outcome(
        "deployed", package.group, package.version, slot, served=served.route, retired_version=current_version
    )


def _served(record: dict[str, Any]) -> Served:
    route = {k: str(record[k]) for k in ("target_model", "inference_component") if record.get(k)}
    return Served(
        route=route, artifact_key=str(record["artifact_key"]), component=route.get("inference_component")
    )


def split_s3_url(url: str) -> tuple[str, str]:
    match = re.match(r"^s3://([a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])/(.+)$", url)
    if match is None:
        raise DeploymentError(
            f"InferenceSpecification.Containers[0].ModelDataUrl: {url!r} is not s3://bucket/key"
        )
    return match.group(1), match.group(2)


@contextmanager
def verified_artifact(s3: Any, package: ModelPackage) -> Iterator[IO[bytes]]:
    """The registered artifact (a file at offset 0), only if its bytes hash to the registered SHA-256."""
    if package.artifact_url is None:
        raise DeploymentError("InferenceSpecification.Containers[0].ModelDataUrl: missing")
    if not (isinstance(package.sha256, str) and SHA256_HEX.match(package.sha256)):
        raise DeploymentError(
            "CustomerMetadataProperties.ArtifactSha256: missing or not a SHA-256 hex digest"
        )
    source_bucket, source_key = split_s3_url(package.artifact_url)
    # A file, not memory: the artifact may be gigabytes (the function's ephemeral storage is sized for it).
    with tempfile.TemporaryFile(prefix="artifact-") as spool:
        try:
            response = s3.get_object(Bucket=source_bucket, Key=source_key)
            size = int(response.get("ContentLength") or 0)
            if size > MAX_ARTIFACT_BYTES:
                raise DeploymentError(
                    f"{package.artifact_url}: {size} bytes, above the deployer's {MAX_ARTIFACT_BYTES} "
                    "(its ephemeral storage holds the artifact, the unpacked adapter and the package)"
                )
            digest = stream_sha256(response["Body"], copy_to=spool, chunk_bytes=DOWNLOAD_CHUNK_BYTES)
        except ClientError as exc:
            raise DeploymentError(f"reading {package.artifact_url} failed: {exc}") from exc
        if digest != package.sha256:
            raise DeploymentError(
                f"ArtifactSha256 mismatch: registered {package.sha256}, {package.artifact_url} has {digest}"
            )
        spool.seek(0)
        yield spool


def copy_verified(s3: Any, package: ModelPackage, *, bucket: str, key: str) -> None:
    """Copy the registered artifact to `bucket`/`key` only if its bytes hash to the registered SHA-256."""
    with verified_artifact(s3, package) as spool:
        try:
            s3.upload_fileobj(spool, bucket, key, ExtraArgs={"Metadata": {"sha256": package.sha256}})
        except ClientError as exc:
            raise DeploymentError(f"writing s3://{bucket}/{key} failed: {exc}") from exc


def _probe(runtime: Any, payload: str, **target: str) -> None:
    try:
        response = runtime.invoke_endpoint(ContentType="application/json", Body=payload.encode(), **target)
        response["Body"].read()
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise DeploymentError(f"test invocation failed: {error.get('Code')}: {error.get('Message')}") from exc


@dataclass
class MultiModelTarget:
    """Multi-model endpoint: the copy under `<prefix>` is the model; TargetModel is its key below it."""

    s3: Any
    runtime: Any
    endpoint_name: str
    bucket: str
    prefix: str  # ends with "/", e.g. "mme/"
    test_payload: str

    def install(self, package: ModelPackage, artifact_key: str) -> Served:
        # The container loads <prefix><TargetModel>; TargetModel must end in .tar.gz.
        key = f"{self.prefix}{artifact_key.removesuffix('/model.tar.gz')}.tar.gz"
        copy_verified(self.s3, package, bucket=self.bucket, key=key)
        return Served(route={"target_model": key.removeprefix(self.prefix)}, artifact_key=key)

    def probe(self, served: Served) -> None:
        _probe(
            self.runtime,
            self.test_payload,
            EndpointName=self.endpoint_name,
            TargetModel=served.route["target_model"],
        )

    def remove(self, served: Served) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=served.artifact_key)


@dataclass
class InferenceComponentTarget:
    """Inference components: the copy under `<prefix>` is one adapter component on the base component."""

    s3: Any
    sagemaker: Any
    runtime: Any
    endpoint_name: str
    variant_name: str
    base_component_name: str
    bucket: str
    prefix: str  # ends with "/", e.g. "adapters/"
    test_payload: str
    # What the base component serves: the adapter is packaged for it (serving_deployer/adapter_package.py).
    lmi: LmiSettings = field(default_factory=LmiSettings)
    sleep: Callable[[float], None] = time.sleep
    poll_seconds: float = 15.0
    max_polls: int = 36  # 9 minutes: the function's timeout is 10

    def component_name(self, package: ModelPackage) -> str:
        # Component names allow 63 characters: the slot is shortened to a stable hash.
        digest = hashlib.sha256("\n".join(package.slot).encode()).hexdigest()[:6]
        return f"{self.endpoint_name}-{digest}-v{package.version}"

    def install(self, package: ModelPackage, artifact_key: str) -> Served:
        key = f"{self.prefix}{artifact_key}"
        # The component loads the serving package built from the verified artifact, never the artifact itself;
        # both stay files in /tmp (the function's ephemeral storage), streamed through in chunks.
        with (
            verified_artifact(self.s3, package) as artifact,
            tempfile.TemporaryDirectory(prefix="package-") as workdir,
        ):
            try:
                built = package_adapter(
                    artifact,
                    workdir=Path(workdir),
                    lmi=self.lmi,
                    source=package.artifact_url,
                    source_sha256=str(package.sha256),
                )
                upload_package(self.s3, built, bucket=self.bucket, key=key)
            except (ValueError, ClientError, S3UploadFailedError) as exc:
                raise DeploymentError(f"serving package for {package.arn}: {exc}") from exc
        name = self.component_name(package)
        served = Served(
            route={"inference_component": name},
            artifact_key=key,
            component=name,
            package_sha256=built.info.sha256,
        )
        try:
            self.sagemaker.create_inference_component(
                InferenceComponentName=name,
                EndpointName=self.endpoint_name,
                VariantName=self.variant_name,
                Specification={
                    "BaseInferenceComponentName": self.base_component_name,
                    "Container": {"ArtifactUrl": f"s3://{self.bucket}/{key}"},
                },
                Tags=[
                    {"Key": "ModelPackageGroup", "Value": package.group},
                    {"Key": "ModelPackageVersion", "Value": str(package.version)},
                ],
            )
        except ClientError as exc:
            self.s3.delete_object(Bucket=self.bucket, Key=key)
            raise DeploymentError(f"creating adapter component {name} failed: {exc}") from exc
        try:
            self._wait_in_service(name)
        except DeploymentError:
            self.remove(served)
            raise
        return served

    def _wait_in_service(self, name: str) -> None:
        for _ in range(self.max_polls):
            described = self.sagemaker.describe_inference_component(InferenceComponentName=name)
            status = described["InferenceComponentStatus"]
            if status == "InService":
                return
            if status == "Failed":
                raise DeploymentError(
                    f"adapter component {name} failed: {described.get('FailureReason', '')}"
                )
            self.sleep(self.poll_seconds)
        raise DeploymentError(f"adapter component {name} not InService after {self.max_polls} checks")

    def probe(self, served: Served) -> None:
        _probe(
            self.runtime,
            self.test_payload,
            EndpointName=self.endpoint_name,
            InferenceComponentName=served.route["inference_component"],
        )

    def remove(self, served: Served) -> None:
        if served.component:
            try:
                self.sagemaker.delete_inference_component(InferenceComponentName=served.component)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ValidationException":  # already gone
                    raise
        self.s3.delete_object(Bucket=self.bucket, Key=served.artifact_key)

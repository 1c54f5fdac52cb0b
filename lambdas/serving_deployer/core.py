"""Make approved models servable on the shared endpoint, check them, roll back on failure, retire old ones.

`handle_change` is the whole decision; the two `ServingTarget`s do the mode-specific work:
- `MultiModelTarget`: copies the artifact to `<prefix><group>/v<version>.tar.gz` in the endpoint's model
  bucket and probes it with `TargetModel`.
- `InferenceComponentTarget`: creates an adapter component on the base component and probes it with
  `InferenceComponentName`.
Clients are injected (tests pass moto or botocore Stubber clients); nothing is created at import time.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from botocore.exceptions import ClientError

Action = Literal["deployed", "rolled_back", "retired", "skipped_stale", "nothing_to_retire"]


class DeploymentError(Exception):
    """The model could not be made servable (install or test invocation failed)."""


@dataclass(frozen=True)
class ModelVersion:
    group: str
    version: int
    artifact_url: str | None = None


@dataclass(frozen=True)
class Outcome:
    action: Action
    group: str
    version: int
    target: str | None = None
    retired: list[str] = field(default_factory=list)
    error: str | None = None


class ServingTarget(Protocol):
    def install(self, model: ModelVersion) -> str: ...

    def probe(self, target: str) -> None: ...

    def remove(self, target: str) -> None: ...

    def installed(self, group: str) -> dict[int, str]: ...


def handle_change(target: ServingTarget, model: ModelVersion, status: str) -> Outcome:
    installed = target.installed(model.group)
    if status == "Rejected":
        served = installed.get(model.version)
        if served is None:
            return Outcome("nothing_to_retire", model.group, model.version)
        target.remove(served)
        return Outcome("retired", model.group, model.version, retired=[served])
    if any(version > model.version for version in installed):
        return Outcome("skipped_stale", model.group, model.version)
    name: str | None = None
    try:
        name = target.install(model)
        target.probe(name)
    except DeploymentError as exc:
        if name is not None:
            target.remove(name)
        return Outcome("rolled_back", model.group, model.version, target=name, error=str(exc))
    retired = []
    for version, old in sorted(installed.items()):
        if version < model.version:
            target.remove(old)
            retired.append(old)
    return Outcome("deployed", model.group, model.version, target=name, retired=retired)


def split_s3_url(url: str) -> tuple[str, str]:
    match = re.match(r"^s3://([a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])/(.+)$", url)
    if match is None:
        raise DeploymentError(f"ModelDataUrl: {url!r} is not an s3://bucket/key URL")
    return match.group(1), match.group(2)


def _probe(runtime: Any, payload: str, **target: str) -> None:
    try:
        response = runtime.invoke_endpoint(ContentType="application/json", Body=payload.encode(), **target)
        response["Body"].read()
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise DeploymentError(f"test invocation failed: {error.get('Code')}: {error.get('Message')}") from exc


@dataclass
class MultiModelTarget:
    s3: Any
    runtime: Any
    endpoint_name: str
    bucket: str
    prefix: str  # ends with "/", e.g. "mme/"
    test_payload: str

    def _key(self, group: str, version: int) -> str:
        return f"{self.prefix}{group}/v{version}.tar.gz"

    def install(self, model: ModelVersion) -> str:
        if model.artifact_url is None:
            raise DeploymentError("InferenceSpecification.Containers[0].ModelDataUrl: missing in the event")
        source_bucket, source_key = split_s3_url(model.artifact_url)
        key = self._key(model.group, model.version)
        try:
            self.s3.copy({"Bucket": source_bucket, "Key": source_key}, self.bucket, key)
        except ClientError as exc:
            raise DeploymentError(f"copying {model.artifact_url} failed: {exc}") from exc
        return key.removeprefix(self.prefix)

    def probe(self, target: str) -> None:
        _probe(self.runtime, self.test_payload, EndpointName=self.endpoint_name, TargetModel=target)

    def remove(self, target: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=f"{self.prefix}{target}")

    def installed(self, group: str) -> dict[int, str]:
        found: dict[int, str] = {}
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=f"{self.prefix}{group}/"):
            for item in page.get("Contents", []):
                match = re.fullmatch(rf"{re.escape(self.prefix + group)}/v(\d+)\.tar\.gz", item["Key"])
                if match:
                    found[int(match.group(1))] = item["Key"].removeprefix(self.prefix)
        return found


@dataclass
class InferenceComponentTarget:
    sagemaker: Any
    runtime: Any
    endpoint_name: str
    variant_name: str
    base_component_name: str
    test_payload: str
    sleep: Callable[[float], None] = time.sleep
    poll_seconds: float = 15.0
    max_polls: int = 36  # 9 minutes: the function's timeout is 10

    def component_prefix(self, group: str) -> str:
        # Component names allow 63 characters: the group is shortened to a stable hash.
        digest = hashlib.sha256(group.encode()).hexdigest()[:8]
        return f"{self.endpoint_name}-{digest}-v"

    def install(self, model: ModelVersion) -> str:
        if model.artifact_url is None:
            raise DeploymentError("InferenceSpecification.Containers[0].ModelDataUrl: missing in the event")
        name = f"{self.component_prefix(model.group)}{model.version}"
        try:
            self.sagemaker.create_inference_component(
                InferenceComponentName=name,
                EndpointName=self.endpoint_name,
                VariantName=self.variant_name,
                Specification={
                    "BaseInferenceComponentName": self.base_component_name,
                    "Container": {"ArtifactUrl": model.artifact_url},
                },
                Tags=[
                    {"Key": "ModelPackageGroup", "Value": model.group},
                    {"Key": "ModelPackageVersion", "Value": str(model.version)},
                ],
            )
        except ClientError as exc:
            raise DeploymentError(f"creating adapter component {name} failed: {exc}") from exc
        self._wait_in_service(name)
        return name

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

    def probe(self, target: str) -> None:
        _probe(
            self.runtime, self.test_payload, EndpointName=self.endpoint_name, InferenceComponentName=target
        )

    def remove(self, target: str) -> None:
        self.sagemaker.delete_inference_component(InferenceComponentName=target)

    def installed(self, group: str) -> dict[int, str]:
        prefix = self.component_prefix(group)
        found: dict[int, str] = {}
        paginator = self.sagemaker.get_paginator("list_inference_components")
        for page in paginator.paginate(EndpointNameEquals=self.endpoint_name, NameContains=prefix):
            for item in page.get("InferenceComponents", []):
                name = item["InferenceComponentName"]
                match = re.fullmatch(rf"{re.escape(prefix)}(\d+)", name)
                if match and item.get("InferenceComponentStatus") != "Deleting":
                    found[int(match.group(1))] = name
        return found

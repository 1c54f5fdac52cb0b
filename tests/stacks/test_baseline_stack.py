"""The per-environment baseline: CMK with rotation, access-log bucket, isolated VPC with endpoints."""

from __future__ import annotations

from typing import Any

from tests.conftest import SynthesizedPlatform


def of_type(template: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [r for r in template["Resources"].values() if r["Type"] == resource_type]


def endpoint_services(template: dict[str, Any]) -> set[str]:
    services = set()
    for endpoint in of_type(template, "AWS::EC2::VPCEndpoint"):
        name = endpoint["Properties"]["ServiceName"]
        flat = (
            name if isinstance(name, str) else "".join(p for p in name["Fn::Join"][1] if isinstance(p, str))
        )
        services.add(
            flat.rsplit(".", 1)[-1] if endpoint["Properties"].get("VpcEndpointType") == "Interface" else flat
        )
    return services


def test_key_is_rotated_and_aliased_per_environment(default_platform: SynthesizedPlatform) -> None:
    template = default_platform.template("exco-finance-prod-baseline")
    (key,) = of_type(template, "AWS::KMS::Key")
    assert key["Properties"]["EnableKeyRotation"] is True
    (alias,) = of_type(template, "AWS::KMS::Alias")
    assert alias["Properties"]["AliasName"] == "alias/exco/finance/prod/platform"


def test_access_log_bucket_is_private_tls_only_and_sse_s3(default_platform: SynthesizedPlatform) -> None:
    template = default_platform.template("exco-retail-dev-baseline")
    (bucket,) = of_type(template, "AWS::S3::Bucket")
    props = bucket["Properties"]
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
        "ServerSideEncryptionByDefault"
    ] == {"SSEAlgorithm": "AES256"}
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    (policy,) = of_type(template, "AWS::S3::BucketPolicy")
    denies = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
    assert {"aws:SecureTransport": "false"} in [s["Condition"].get("Bool") for s in denies]


def test_vpc_has_only_isolated_subnets_and_no_internet_path(default_platform: SynthesizedPlatform) -> None:
    template = default_platform.template("exco-retail-prod-baseline")
    assert of_type(template, "AWS::EC2::InternetGateway") == []
    assert of_type(template, "AWS::EC2::NatGateway") == []
    subnets = of_type(template, "AWS::EC2::Subnet")
    assert len(subnets) == 2
    assert all(s["Properties"]["MapPublicIpOnLaunch"] is False for s in subnets)
    (flow_log,) = of_type(template, "AWS::EC2::FlowLog")
    assert flow_log["Properties"]["TrafficType"] == "ALL"


def test_interface_endpoints_follow_the_stage_switch(default_platform: SynthesizedPlatform) -> None:
    interface = {"sagemaker.api", "sagemaker.runtime", "sts", "logs", "ecr.api", "ecr.dkr"}
    dev = default_platform.template("exco-retail-dev-baseline")
    prod = default_platform.template("exco-retail-prod-baseline")
    dev_endpoints = of_type(dev, "AWS::EC2::VPCEndpoint")
    assert {e["Properties"].get("VpcEndpointType", "Gateway") for e in dev_endpoints} == {"Gateway"}
    prod_interface = [
        e
        for e in of_type(prod, "AWS::EC2::VPCEndpoint")
        if e["Properties"].get("VpcEndpointType") == "Interface"
    ]
    names = set()
    for endpoint in prod_interface:
        assert endpoint["Properties"]["PrivateDnsEnabled"] is True
        joined = endpoint["Properties"]["ServiceName"]
        text = (
            joined
            if isinstance(joined, str)
            else "".join(p for p in joined["Fn::Join"][1] if isinstance(p, str))
        )
        names.add(text.split("eu-west-1.", 1)[1] if "eu-west-1." in text else text)
    # The guardrail stack adds the endpoints its function calls (every business unit applies its Bedrock
    # guardrail on input by default).
    assert names == interface | {"comprehend", "xray", "bedrock-runtime"}


def test_endpoint_security_group_allows_only_https_from_the_vpc(
    default_platform: SynthesizedPlatform,
) -> None:
    template = default_platform.template("exco-retail-preprod-baseline")
    groups = [
        g
        for g in of_type(template, "AWS::EC2::SecurityGroup")
        if "interface endpoints" in g["Properties"]["GroupDescription"]
    ]
    (group,) = groups
    (ingress,) = group["Properties"]["SecurityGroupIngress"]
    assert (ingress["CidrIp"], ingress["FromPort"], ingress["ToPort"]) == ("10.20.0.0/16", 443, 443)


def test_flow_logs_go_to_an_encrypted_log_group_with_retention(default_platform: SynthesizedPlatform) -> None:
    template = default_platform.template("exco-finance-preprod-baseline")
    (group,) = of_type(template, "AWS::Logs::LogGroup")
    assert group["Properties"]["RetentionInDays"] == 90
    assert "KmsKeyId" in group["Properties"]

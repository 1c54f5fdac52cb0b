"""The deployer's ephemeral storage holds what packaging puts on /tmp for the largest artifact it accepts."""

from __future__ import annotations

from serving_deployer.core import MAX_ARTIFACT_BYTES

from tests.conftest import SynthesizedPlatform
from tests.journeys._fine_tuning import function_by_handler


def test_the_deployer_tmp_holds_three_copies_of_the_largest_artifact(
    default_platform: SynthesizedPlatform,
) -> None:
    for stage in ("preprod", "prod"):
        template = default_platform.template(f"exco-retail-{stage}-serving")
        _, deployer = function_by_handler(template, "serving_deployer.")
        tmp_mib = deployer["EphemeralStorage"]["Size"]
        # the artifact, its unpacked members and the package, plus room for the runtime; Lambda allows 10,240
        assert 3 * MAX_ARTIFACT_BYTES // 2**20 + 512 <= tmp_mib <= 10240
        assert tmp_mib == 9728  # docs/serving.md states it
        assert deployer["MemorySize"] == 1024  # docs/serving.md: kept for CPU, not for the artifact

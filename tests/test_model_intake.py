"""Model intake: only vetted, checksum-verified base model files reach the serving and fine-tuning buckets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests._model_intake import FILES, create_bucket, moto_s3, vet
from tools.model_intake import main


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with moto_s3(monkeypatch) as client:
        for bucket in ("vetted", "serving", "tuning"):
            create_bucket(client, bucket)
        yield client


def keys(s3: Any, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


ARGS = [
    "--from",
    "s3://vetted/llama/",
    "--to",
    "s3://serving/base-models/default/",
    "--to",
    "s3://tuning/base-models/default/",
]


def test_a_vetted_model_lands_in_every_destination_with_its_manifest(
    s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    vet(s3, "vetted")
    assert main(ARGS, s3=s3) == 0
    for bucket in ("serving", "tuning"):
        assert keys(s3, bucket) == [f"base-models/default/{n}" for n in sorted([*FILES, "manifest.json"])]
        for name, data in FILES.items():
            assert s3.get_object(Bucket=bucket, Key=f"base-models/default/{name}")["Body"].read() == data
    assert "3 files verified and copied to s3://tuning/base-models/default/" in capsys.readouterr().out
    assert main(ARGS, s3=s3) == 0  # a second run finds the same manifest and copies nothing
    assert "already at s3://serving/base-models/default/" in capsys.readouterr().out


def test_a_checksum_mismatch_stops_the_intake_and_leaves_nothing(
    s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    vet(s3, "vetted")
    s3.put_object(Bucket="vetted", Key="llama/model.safetensors", Body=b"tampered")
    assert main(ARGS, s3=s3) == 2
    assert "model.safetensors has SHA-256" in capsys.readouterr().err
    assert keys(s3, "serving") == keys(s3, "tuning") == []


def test_files_the_manifest_does_not_name_are_refused(s3: Any, capsys: pytest.CaptureFixture[str]) -> None:
    vet(s3, "vetted")
    s3.put_object(Bucket="vetted", Key="llama/extra.py", Body=b"print('hi')")
    assert main(ARGS, s3=s3) == 2
    assert "extra.py not in manifest.json" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("files", "manifest", "message"),
    [
        ({**FILES, "pytorch_model.bin": b"pickle"}, {}, "pickled weights are refused"),
        ({"model.safetensors": b"w"}, {}, "needs config.json"),
        (FILES, {"model": ""}, "manifest.json.model"),
        (FILES, {"files": {"config.json": "abc"}}, "not a SHA-256"),
    ],
)
def test_bad_manifests_name_the_field(
    s3: Any,
    capsys: pytest.CaptureFixture[str],
    files: dict[str, bytes],
    manifest: dict[str, Any],
    message: str,
) -> None:
    vet(s3, "vetted", files, **manifest)
    assert main(ARGS, s3=s3) == 2
    assert message in capsys.readouterr().err
    assert keys(s3, "serving") == []


def test_another_models_destination_is_kept_unless_replaced(
    s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    vet(s3, "vetted")
    s3.put_object(Bucket="serving", Key="base-models/default/manifest.json", Body=b'{"model": "other"}')
    assert main(ARGS, s3=s3) == 2
    assert "holds another model's manifest.json" in capsys.readouterr().err
    assert main([*ARGS, "--replace"], s3=s3) == 0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=40))
def test_any_url_is_accepted_or_refused_with_exit_code_2(s3: Any, url: str) -> None:
    code = main([f"--from={url}", "--to", "s3://serving/base-models/default/"], s3=s3)
    assert code == 2  # no manifest at any of these, or not an s3://bucket/prefix/ URL

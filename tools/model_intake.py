"""Copy a vetted base model (manifest with SHA-256 per file) into the buckets that serve or tune it.

    python -m tools.model_intake --from s3://<private bucket>/<model>/ --to s3://<bucket>/base-models/default/ [--to ...]

Run with credentials that may read the private bucket and write the destinations (docs/serving.md,
"Base weights"). Exit code 2: refused (bad URL, manifest, checksum, unlisted file); nothing is left behind.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lambdas"))

from botocore.exceptions import ClientError
from serving_runtime.intake import IntakeError, Location, take_in


def main(argv: list[str] | None = None, s3: object | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--from", dest="source", required=True, help="s3://bucket/prefix/ holding manifest.json"
    )
    parser.add_argument(
        "--to", dest="destinations", action="append", required=True, help="s3://bucket/prefix/"
    )
    parser.add_argument(
        "--replace", action="store_true", help="overwrite a destination holding another model"
    )
    args = parser.parse_args(argv)
    try:
        source = Location.parse(args.source, "--from")
        destinations = [Location.parse(url, "--to") for url in args.destinations]
        if s3 is None:
            import boto3

            s3 = boto3.client("s3")
        result = take_in(s3, source, destinations, replace=args.replace)
    except IntakeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ClientError as exc:  # permissions or a missing bucket: not the input's fault
        print(f"error: S3 refused the intake ({exc}); nothing was left behind", file=sys.stderr)
        return 1
    for destination in result.destinations:
        print(f"{result.model}: {len(result.files)} files verified and copied to {destination}")
    for destination in result.skipped:
        print(f"{result.model}: already at {destination} (same manifest)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The platform's CDK stacks, building blocks (`stacks.blocks`) and typed config (`stacks.settings`).

Stacks share runtime models (settings, lake record schemas) with the Lambda code in `lambdas/`, whose
folder is the Lambda asset root: put it on the import path once, here, for every entry point (the CDK
app, tools, benchmarks; pytest sets the same path in pyproject.toml).
"""

import sys
from pathlib import Path

_LAMBDAS = str(Path(__file__).resolve().parents[1] / "lambdas")
if _LAMBDAS not in sys.path:
    sys.path.insert(0, _LAMBDAS)

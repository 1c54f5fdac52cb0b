from tests.lambdas.serving_deployer.conftest import _aws_env

__all__ = ["_aws_env"]

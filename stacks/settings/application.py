"""The `business_units[].application:` section: re-exported from the Lambda side, one model for both."""

from app_backend.settings import ApplicationSettings

__all__ = ["ApplicationSettings"]

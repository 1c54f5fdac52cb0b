"""Errors the API turns into 4xx responses; every one names the field (or resource) at fault."""

from __future__ import annotations

from pydantic import ValidationError


class CatalogError(Exception):
    status = 400

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class BadRequestError(CatalogError):
    status = 400


class ForbiddenError(CatalogError):
    status = 403


class NotFoundError(CatalogError):
    status = 404


class ConflictError(CatalogError):
    status = 409


class TooLargeError(CatalogError):
    status = 413


class UnprocessableError(CatalogError):
    """Well-formed request that the stored data cannot satisfy (e.g. a render with a wrong variable)."""

    status = 422


def field_path(loc: tuple[int | str, ...], prefix: str = "") -> str:
    parts = [prefix] if prefix else []
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        else:
            parts.append(str(item))
    return ".".join(parts) or "body"


def from_validation_error(exc: ValidationError, prefix: str = "body") -> BadRequestError:
    """The first pydantic error, naming its field (e.g. `body.model_parameters.temperature`)."""
    first = exc.errors()[0]
    return BadRequestError(field_path(tuple(first["loc"]), prefix), first["msg"])

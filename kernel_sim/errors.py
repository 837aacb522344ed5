"""Errors that describe bad user input (exit status 2) rather than a guest failure."""

from __future__ import annotations


class InputError(Exception):
    """A malformed or out-of-range input: reported as one line naming what and where."""

    def __init__(self, message: str, where: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.where = where

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message

"""Errors a subcommand raises for a usage mistake the argument parser cannot see."""

from __future__ import annotations

__all__ = ["UsageError"]


class UsageError(ValueError):
    """Options that do not fit together or name something unknown (exit code 2)."""

"""Local process supervisor for Vigil."""

from .stack import Stack

__all__ = ["Stack"]

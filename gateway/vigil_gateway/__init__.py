"""Vigil gateway."""

"""Vigil property service."""

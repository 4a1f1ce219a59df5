"""Vigil credit service."""

"""Vigil billing service."""

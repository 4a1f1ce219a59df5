"""Vigil customer service."""

"""Vigil's sandbox credit bureau: a separate process that answers like a real bureau."""

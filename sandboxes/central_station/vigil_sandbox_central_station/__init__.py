"""The sandbox central station (see app.py)."""

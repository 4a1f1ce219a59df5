"""The gateway's own operations; everything else under /api/v1 is forwarded to a service."""

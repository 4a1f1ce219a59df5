"""HTTP views of the billing service. None yet: every /api/v1 path answers 401 without an identity, 404 with one."""

BLUEPRINTS: list = []

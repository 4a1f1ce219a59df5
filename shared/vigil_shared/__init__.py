"""Code every Vigil service and the gateway share. Nothing service-specific lives here."""

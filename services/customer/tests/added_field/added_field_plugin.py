"""pytest plugin (``-p added_field_plugin``): adds fields to the registry the way a developer would,
one line each, before the application and its models are imported. Loaded only by
``test_field_registry.py``, which runs ``added_field_checks.py`` in its own pytest process."""

from vigil_customer import registry
from vigil_customer.registry import INSTALLATION_ONLY, F, Secret, Text

# The whole change a new optional text field needs (besides its migration, done by the fixture):
registry.register(F("gate_instructions", Text(200), INSTALLATION_ONLY, "How to get through the gate"))
# …and a confidential one, to show masking follows too.
registry.register(F("gate_code", Secret(20), INSTALLATION_ONLY, confidential="installation_codes", copied=False))

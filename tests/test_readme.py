"""The README is the front door: its settings table must list exactly what the code reads."""

import re
from pathlib import Path

from vigil_shared.config import SETTINGS

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_setting_is_in_the_readme_table():
    table = set(re.findall(r"^\| `(VIGIL_[A-Z_<>]+)` \|", README, flags=re.M))
    expected = {s.readme_name for s in SETTINGS}
    assert expected - table == set(), "settings the README does not document"
    assert table - expected == set(), "README documents settings the code does not read"


def test_the_two_commands_come_first():
    assert README.index("make run") < README.index("## Architecture")
    assert README.index("make test") < README.index("## Architecture")

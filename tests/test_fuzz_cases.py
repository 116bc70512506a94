"""Every input that once broke a fuzz target (fuzz/targets.py) stays a test:
tests/fuzz_cases/TARGET/NAME is run through TARGET, which raises if an
exception escapes the stage or an invariant breaks.  A few seconds of each
target's own seeds run too, so a target that no longer works shows here
before a fuzzing campaign wastes an hour on it."""
from pathlib import Path

import pytest

from fuzz.targets import TARGETS

CASES = Path(__file__).resolve().parent / "fuzz_cases"
FILES = sorted(p for p in CASES.glob("*/*") if p.is_file())


@pytest.mark.parametrize("path", FILES, ids=lambda p: "%s/%s" % (p.parent.name, p.name))
def test_input_that_once_broke_a_target(path):
    assert path.parent.name in TARGETS, "no fuzz target %r" % path.parent.name
    one = TARGETS[path.parent.name].setup()
    one(path.read_bytes())


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_every_target_runs_its_first_seeds(name):
    one = TARGETS[name].setup()
    seeds = list(TARGETS[name].seeds())
    assert seeds, "target %s has no seed" % name
    for data in seeds[:5]:
        one(data)

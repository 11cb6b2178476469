"""Rule logs: an uncaught error ends up in the rule's log file, with an exit status that tells bad
input apart."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO

SCRIPT = """
import logging, sys
from weightspace import WeightspaceError, logs
logs.to_file(sys.argv[1])
logging.getLogger("weightspace.test").info("started")
raise {error}
"""


@pytest.mark.parametrize(
    "error, status",
    [
        # logs.BAD_INPUT_EXIT
        ("WeightspaceError(\"dataset 'x': no column 'text' in train.csv\")", 3),
        ("ValueError('something broke')", 1),
    ],
)
def test_an_uncaught_error_goes_to_the_rule_log(tmp_path, error, status):
    log = tmp_path / "logs" / "rule.log"
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(error=error), str(log)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO / "src")},
        timeout=120,
    )
    assert result.returncode == status
    text = log.read_text()
    assert "started" in text and "uncaught" in text and "Traceback" in text
    # the cluster job's log has it too
    assert error.split("(")[0] in text and error.split("(")[0] in result.stderr

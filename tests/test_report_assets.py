"""tunegate.report.assets: the summary's one inline script keeps to itself and is valid JavaScript."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tunegate.report.assets import _SCRIPT


def test_the_script_marks_every_image_and_keeps_to_itself() -> None:
    # pytest-html's own script shares the page's top-level scope: ours declares nothing there.
    assert _SCRIPT.strip().startswith("(function () {") and _SCRIPT.strip().endswith("})();")
    assert "img.onload = ok;" in _SCRIPT and "img.onerror = bad;" in _SCRIPT
    assert "setAttribute('data-loaded', '1')" in _SCRIPT and "setAttribute('data-loaded', 'error')" in _SCRIPT
    assert "innerHTML" not in _SCRIPT and "</" not in _SCRIPT  # no markup from data; nothing closes the tag early
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the script's syntax is checked where it is")
    check = subprocess.run([node, "--check", "-"], input=_SCRIPT, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr

"""The HTML report in a real browser: headless Chromium renders it offline, every plot loads, and
hostile eval data (a `<script>`, an `<img onerror>`, an `<svg onload>` in the prompt, reference and
sample id) shows as text and never runs.

The gate runs in a subprocess on a 3-sample hostile eval set with the demo model and adapter, then
Chromium loads the file with `--dump-dom` after the page's own scripts ran: the report's script
marks each plot `data-loaded="1"` from the image's load event, and any injected handler would mark
the document `data-pwned`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PAYLOAD = "document.documentElement.setAttribute('data-pwned','{where}')"
HOSTILE = [
    {"id": f"\"><svg onload=\"{PAYLOAD.format(where='id')}\">", "prompt": "Where is my order NW-48213?",
     "reference": "Order NW-48213 ships today."},
    {"id": "prompt-script", "prompt": f"<script>{PAYLOAD.format(where='prompt')}</script> Can I return boots?",
     "reference": "Yes, within 30 days of delivery."},
    {"id": "reference-img", "prompt": "How do I reset my password?",
     "reference": f"<img src=x onerror=\"{PAYLOAD.format(where='reference')}\"> Use 'Forgot password'."},
]

pytestmark = pytest.mark.slow


def chromium() -> str:
    found = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome") if shutil.which(name)),
                 None)
    if found is None:
        pytest.skip("no Chromium on PATH: install the Debian package (apt-get install chromium) to check the report "
                    "in a real browser")
    return found


def browser(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--hide-scrollbars", f"--user-data-dir={profile}", "--virtual-time-budget=10000"]
    return subprocess.run([chromium(), *flags, *args], capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory: pytest.TempPathFactory, demo_model_dir: Path) -> Path:
    work = tmp_path_factory.mktemp("browser")
    (work / "eval.jsonl").write_text("".join(json.dumps(record) + "\n" for record in HOSTILE), encoding="utf-8")
    (work / "cache").mkdir()
    (work / "cache" / "models").symlink_to(demo_model_dir.parent, target_is_directory=True)
    (work / "pyproject.toml").write_text(
        "[tool.tunegate]\n"
        f'adapter = "{REPO / "fixtures" / "demo" / "adapter"}"\n'
        'eval_set = "eval.jsonl"\ncache_dir = "cache"\nreport_dir = "reports"\nmax_new_tokens = 24\n'
        'metrics = ["rouge1", "rougeL", "bertscore"]\nbootstrap_iters = 1000\n',
        encoding="utf-8",
    )
    gate = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "evals/test_samples.py", "evals/test_gates.py",
            "evals/test_training.py", "--tunegate-config", str(work / "pyproject.toml"),
            f"--html={work / 'report.html'}", "--self-contained-html"]
    result = subprocess.run(gate, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert (work / "report.html").is_file(), result.stdout[-3000:] + result.stderr[-2000:]
    return work


def test_the_report_renders_offline_with_every_plot_loaded(hostile_report: Path) -> None:
    report = hostile_report / "report.html"
    assert "http://" not in report.read_text(encoding="utf-8").split('id="data-container"')[0].replace(
        "http://www.w3.org", "")  # nothing fetched from the network before pytest-html's own data
    dom = browser("--dump-dom", report.as_uri(), profile=hostile_report / "profile").stdout
    assert "Release gate verdicts" in dom and "Answers side by side" in dom
    loaded, failed = dom.count('data-loaded="1"'), dom.count('data-loaded="error"')
    plots = len(json.loads((hostile_report / "reports" / "results.json").read_text(encoding="utf-8"))["plots"])
    assert plots >= 4 and loaded == plots and failed == 0, (loaded, failed, plots)
    assert 'class="results-table-row' in dom  # pytest-html's own script rendered the results table too


def test_injected_markup_from_the_eval_data_never_runs(hostile_report: Path) -> None:
    dom = browser("--dump-dom", (hostile_report / "report.html").as_uri(), profile=hostile_report / "profile").stdout
    assert "data-pwned=" not in dom, "an injected script or handler ran in the report"
    assert "&lt;script&gt;document.documentElement.setAttribute" in dom  # shown as text
    assert "&lt;img src=x onerror=" in dom


def test_a_screenshot_shows_the_summary(hostile_report: Path) -> None:
    shot = hostile_report / "shot.png"
    browser(f"--screenshot={shot}", "--window-size=1280,1600", (hostile_report / "report.html").as_uri(),
            profile=hostile_report / "profile")
    from PIL import Image

    with Image.open(shot) as image:
        colours = image.convert("RGB").resize((64, 80)).getcolors(maxcolors=64 * 80)
    assert image.size == (1280, 1600)
    assert colours is not None and len(colours) > 50  # text, tables and plots, not a blank page

"""report.html in a real browser (Debian's headless chromium): the page renders (not a
blank screenshot) and every inlined plot decodes as an image."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from report_nights import baseline, config, confirmed, hand_store, trial

from nightlab.report import write_report

pytestmark = pytest.mark.browser

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars",
]  # fmt: skip
# After the load event (every <img> loaded or failed), each image is drawn on a canvas and
# counts as decoded when its pixels hold several colours; "decoded/total" lands on <body>.
PROBE = """<script>
window.addEventListener("load", () => {
  let ok = 0;
  for (const img of document.images) {
    if (!img.complete || img.naturalWidth === 0) continue;
    const c = document.createElement("canvas");
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    const ctx = c.getContext("2d");
    ctx.drawImage(img, 0, 0);
    const px = ctx.getImageData(0, 0, c.width, c.height).data;
    const seen = new Set();
    for (let i = 0; i < px.length; i += 4 * 97) seen.add(px[i] << 16 | px[i + 1] << 8 | px[i + 2]);
    if (seen.size > 5) ok++;
  }
  document.body.setAttribute("data-images", ok + "/" + document.images.length);
});
</script>"""
BROKEN = '<img src="data:image/png;base64,AAAA" alt="a broken control image">'


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail(
            "chromium is not installed: `make test` should have installed Debian's chromium "
            "(apt-get install -y chromium) before running the browser tests"
        )
    pytest.skip("chromium is not installed (Debian: apt-get install -y chromium)")


def run_chromium(exe: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [exe, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    trials = [
        *baseline([1.0, 1.01, 0.99]),
        *confirmed(4, 1.3, [1.31, 1.29], 1.0, commit="a", params={"lr": 0.01, "depth": 2},
                   dimension="optimization", hypothesis="a larger lr"),
        trial(7, None, status="timeout", commit="b", params={"lr": 0.1, "depth": 8},
              reason="budget_seconds=60 exceeded", dimension="model_arch"),
        trial(8, 1.29, commit="c", params={"lr": 0.01, "depth": 3}, dimension="model_arch"),
    ]  # fmt: skip
    return write_report(hand_store(root / "lab", trials), config()) / "report.html"


def test_the_page_renders_as_a_non_blank_screenshot(report, tmp_path):
    exe = chromium()
    shot = tmp_path / "shot.png"
    proc = run_chromium(
        exe, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1200,2000",
        report.as_uri(),
    )  # fmt: skip
    assert shot.is_file() and shot.stat().st_size > 0, proc.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as img:
        assert img.size == (1200, 2000)
        colours = img.convert("RGB").getcolors(maxcolors=1 << 24)
    assert len(colours) > 200  # text, tables and plots; a blank page has a handful
    assert max(n for n, _ in colours) < 0.9 * 1200 * 2000  # not one colour everywhere


def test_every_inlined_plot_decodes_in_the_browser(report, tmp_path):
    exe = chromium()
    page = report.read_text()
    n_images = len(re.findall(r"<img ", page))
    assert n_images == 5  # the five plots, σ over the night among them
    probe = tmp_path / "probe.html"  # the report plus one broken control image, and the probe
    probe.write_text(page.replace("</body>", f"{BROKEN}{PROBE}</body>"))
    proc = run_chromium(
        exe, tmp_path / "profile", "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()
    )
    found = re.search(r'data-images="(\d+)/(\d+)"', proc.stdout)
    assert found, f"the probe did not run: {proc.stderr[-2000:]}"
    decoded, total = map(int, found.groups())
    assert total == n_images + 1
    assert decoded == n_images  # every plot, and not the broken control

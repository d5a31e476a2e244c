"""The interactive surface view: its JSON matches the grids, it is self-contained and small, and in
Chromium it draws, reads out the hovered point and switches scale without a JavaScript error."""

import html
import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from bnlib.plots import explore, label

GRID = np.linspace(-1, 1, 5)
A, B = np.meshgrid(GRID, GRID, indexing="ij")
LABELS = {"lenet": "LeNet", "vgg16": "VGG-16"}


def planes(n: int = 5) -> dict:
    g = np.linspace(-1, 1, n)
    a, b = np.meshgrid(g, g, indexing="ij")
    return {("lenet", "none"): {"plane": {"grid": g, "loss": 1 + 3 * a**2 + b**2 + a}},
            ("lenet", "bn"): {"plane": {"grid": g, "loss": 0.5 + a**2 + b**2}},
            ("vgg16", "none"): {"plane": {"grid": g, "loss": np.where(a > 0.9, np.inf, 2 + a**2)}},
            ("vgg16", "bn"): {"plane": {"grid": g, "loss": 0.1 + b**2}}}


def view(res=None, archs=("lenet", "vgg16")) -> str:
    return explore.surfaces_html(planes() if res is None else res, archs=archs, norms=("none", "bn"), labels=LABELS)


def inlined(fragment: str) -> dict:
    return json.loads(re.search(r'<script type="application/json">(.*?)</script>', fragment, re.S).group(1))


def test_the_json_holds_every_plane_as_the_contours_draw_it():
    data = inlined(view())
    assert [n["name"] for n in data["networks"]] == ["LeNet", "VGG-16"]
    lenet = data["networks"][0]["surfaces"]
    assert [s["label"] for s in lenet] == [label("none"), label("bn")]
    np.testing.assert_allclose(lenet[0]["grid"], GRID)
    np.testing.assert_allclose(lenet[0]["loss"], 1 + 3 * A**2 + B**2 + A, rtol=1e-3)  # loss[i][j] at (a_i, b_j)
    assert lenet[0]["loss"][4][2] == pytest.approx(5.0)  # a = 1, b = 0: the first index is direction 1


def test_non_finite_losses_become_null_and_values_are_rounded():
    vgg = inlined(view())["networks"][1]["surfaces"][0]["loss"]
    assert vgg[4] == [None] * 5 and vgg[0][0] == 3.0
    res = {("lenet", n): {"plane": {"grid": GRID, "loss": np.full((5, 5), 1 / 3)}} for n in ("none", "bn")}
    assert inlined(view(res, archs=("lenet",)))["networks"][0]["surfaces"][0]["loss"][0][0] == 0.3333


def test_the_fragment_is_self_contained_and_each_view_has_its_own_ids():
    a, b = view(), view()
    assert "http" not in a and " src=" not in a and "<link" not in a  # nothing fetched: reads offline
    assert explore.JS.read_text() in a and a.startswith("<details") and a.rstrip().endswith("</details>")
    ids = lambda h: set(re.findall(r'id="([^"]+)"', h))  # noqa: E731
    assert ids(a) and not ids(a) & ids(b)
    assert "$" not in re.sub(r"<script.*?</script>", "", a, flags=re.S)  # the browser check's literal-$ rule


def test_a_label_cannot_close_the_script_early():
    data = {"networks": [], "xlabel": "</script><b>", "ylabel": "", "zlabel": ""}
    assert "</script>" not in explore._json_in_script(data)


def test_the_size_limit_holds_at_the_paper_grid_and_is_enforced():
    paper = planes(51)  # both networks, 51 x 51 points: the paper profile
    assert len(view(paper).encode()) < explore.MAX_BYTES
    with pytest.raises(ValueError, match="over"):
        view(planes(161))


_DRIVE = """<script>
addEventListener('load', () => {
  const errors = [];
  addEventListener('error', e => errors.push(String(e.message)));
  const root = document.querySelector('[data-bnlib-explore]'), c = root.querySelector('canvas');
  const r = c.getBoundingClientRect(), out = {canvases: root.querySelectorAll('canvas').length};
  const size = r.width - 58;  // the map's side: the canvas less its margins (explore.js)
  c.dispatchEvent(new MouseEvent('mousemove', {clientX: r.left + 50 + size / 2, clientY: r.top + 6 + size / 2}));
  out.hover = root.querySelector('[data-role=readout]').textContent;
  const log = root.querySelector('[data-role=scale][value=log]');
  log.checked = true; log.dispatchEvent(new Event('change'));
  out.bar = root.querySelector('[data-role=bar]').textContent;
  const sel = root.querySelector('[data-role=net]');
  sel.value = '1'; sel.dispatchEvent(new Event('change'));
  out.caption = root.querySelector('figcaption').textContent;
  out.errors = errors.concat(window.__errors);
  document.body.setAttribute('data-out', JSON.stringify(out));
});
</script>"""


@pytest.mark.skipif(not shutil.which("chromium"), reason="needs Debian's chromium")
def test_in_chromium_it_draws_reads_out_and_switches_without_errors(tmp_path):
    page = tmp_path / "view.html"
    page.write_text("<html><head><meta charset='utf-8'><script>window.__errors = [];"
                    "addEventListener('error', e => __errors.push(String(e.message)));</script></head><body>"
                    + view().replace("data-bnlib-explore>", "data-bnlib-explore open>", 1) + _DRIVE + "</body></html>")
    dom = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path}/p",
                          "--window-size=1000,800", "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    out = json.loads(html.unescape(re.search(r'data-out="([^"]*)"', dom).group(1)))
    assert out["errors"] == [] and out["canvases"] == 3  # two maps and the colour bar
    assert "direction 1 = 0.00, direction 2 = 0.00: training loss 1.00 (Standard)" in out["hover"]
    assert "0.500 (Standard + BatchNorm)" in out["hover"]
    assert out["bar"].startswith("log10 of the training loss") and out["caption"].startswith("VGG-16")

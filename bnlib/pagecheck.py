"""Load every page of a built book in headless Chromium and report what a reader would see
broken: MathJax errors, unrendered markup (``$``, ``\\(``, ``{glue``, ``{numref``), missing
images, tables or equations wider than the content column, figures shrunk to fit it (their
text shrinks with them), JavaScript errors, links to pages or anchors that do not exist.

Each page is copied beside itself with two scripts injected (one first in ``<head>`` that
records errors, one at the end that measures the page once it and MathJax are done); Chromium
dumps the DOM and the measurements are read back from an attribute. No driver is needed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

WIDTH = 1400  # px: the window the readers used
SHRINK = 0.85  # a figure drawn below this fraction of its size is reported: its ticks become unreadable
SKIP = {"search.html", "genindex.html", "index.html"}  # index.html only redirects to the intro

_RECORD = """<script>
window.__bnlib = {errors: []};
addEventListener('error', e => __bnlib.errors.push(e.message ? 'JavaScript error: ' + e.message
    : 'failed to load ' + (e.target && (e.target.src || e.target.href))), true);
addEventListener('unhandledrejection', e => __bnlib.errors.push('unhandled rejection: ' + e.reason));
(c => { console.error = (...a) => { __bnlib.errors.push('console error: ' + a.join(' ')); c(...a); }; })(console.error);
</script>"""

_MEASURE = """<script>
addEventListener('load', async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  const col = document.querySelector('.bd-article') || document.querySelector('main') || document.body;
  const width = col.getBoundingClientRect().width, out = {errors: __bnlib.errors, wide: [], images: []};
  const scrolls = el => { for (let p = el.parentElement; p && p !== col; p = p.parentElement)
      if (['auto', 'scroll'].includes(getComputedStyle(p).overflowX)) return p; return null; };
  for (const el of col.querySelectorAll('table, mjx-container[display="true"], img')) {
    const box = scrolls(el) || el, w = box.getBoundingClientRect().width;
    if (w > width + 1) out.wide.push(`${el.tagName.toLowerCase()} ${Math.round(w)} px in a `
        + `${Math.round(width)} px column: ` + (el.textContent || el.getAttribute('src') || '').trim().slice(0, 60));
  }
  for (const img of document.images)
    if (!img.complete || img.naturalWidth === 0) out.images.push(img.getAttribute('src'));
  out.shrunk = [];  // a figure drawn smaller than it was made shrinks its text with it
  for (const img of col.querySelectorAll('.cell_output img')) {
    const meant = parseFloat(img.style.width) || img.naturalWidth, drawn = img.getBoundingClientRect().width;
    if (meant > 0 && drawn < SHRINK * meant) out.shrunk.push(`${Math.round(100 * drawn / meant)}% `
        + `(${Math.round(meant)} px wide, drawn at ${Math.round(drawn)} px): ${img.getAttribute('src')}`);
  }
  out.merror = [...document.querySelectorAll('mjx-merror')].map(e => e.textContent.slice(0, 80));
  const text = col.cloneNode(true);
  text.querySelectorAll('pre, code, script, style, mjx-container, .cell_input, .MathJax').forEach(e => e.remove());
  out.text = text.textContent;
  document.body.setAttribute('data-bnlib-check', JSON.stringify(out));
});
</script>"""

RAW = [("$", re.compile(r"\$")), ("\\(", re.compile(r"\\\(")), ("{glue", re.compile(r"\{glue")),
       ("{numref", re.compile(r"\{numref")), ("{ref", re.compile(r"\{ref\}"))]


def chromium() -> str:
    """The Chromium executable (Debian's ``chromium`` package), or an error saying how to get it."""
    for name in (os.environ.get("BNLIB_CHROMIUM", ""), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    raise FileNotFoundError("No Chromium found: install Debian's package (apt-get install chromium) "
                            "or set BNLIB_CHROMIUM to a Chrome/Chromium executable")


def measure(page: Path, *, budget_ms: int = 20000) -> dict:
    """Load ``page`` in headless Chromium at ``WIDTH`` px and return the injected measurements."""
    html = page.read_text(encoding="utf-8")
    measure_js = _MEASURE.replace("SHRINK", str(SHRINK))
    html = html.replace("<head>", "<head>" + _RECORD, 1).replace("</body>", measure_js + "</body>", 1)
    with tempfile.TemporaryDirectory() as profile:
        probe = page.with_name(f".check-{page.name}")
        probe.write_text(html, encoding="utf-8")
        try:
            dom = subprocess.run(
                [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                 f"--user-data-dir={profile}", f"--window-size={WIDTH},1000", "--allow-file-access-from-files",
                 f"--virtual-time-budget={budget_ms}", "--dump-dom", probe.as_uri()],
                capture_output=True, text=True, timeout=120).stdout
        finally:
            probe.unlink(missing_ok=True)
    m = re.search(r'data-bnlib-check="([^"]*)"', dom)
    if not m:
        return {"errors": ["the page never finished loading (no measurements)"], "wide": [], "images": [],
                "merror": [], "shrunk": [], "text": ""}
    import html as html_
    return json.loads(html_.unescape(m.group(1)))


def problems(m: dict) -> list[str]:
    """What a reader would see broken, from one page's measurements."""
    out = list(m["errors"])
    out += [f"MathJax error: {e}" for e in m["merror"]]
    out += [f"missing image: {s}" for s in m["images"]]
    out += [f"too wide: {w}" for w in m["wide"]]
    out += [f"figure shrunk to {w}" for w in m.get("shrunk", [])]
    for name, rx in RAW:
        for hit in rx.finditer(m["text"]):
            around = m["text"][max(0, hit.start() - 40):hit.end() + 40].replace("\n", " ")
            out.append(f"literal {name} in the text: ...{around}...")
            break
    return out


_HREF = re.compile(r'<a [^>]*href="([^"#:]*\.html)?(#[^"]*)?"')


def broken_links(page: Path) -> list[str]:
    """Links to pages or anchors of this book that do not exist (external links are not followed)."""
    out, ids = [], {}
    for target, anchor in set(_HREF.findall(page.read_text(encoding="utf-8"))):
        dest = (page.parent / target).resolve() if target else page
        if dest not in ids:
            ids[dest] = (set(re.findall(r'id="([^"]+)"', dest.read_text(encoding="utf-8")))
                         if dest.exists() else None)
        if ids[dest] is None or (len(anchor) > 1 and anchor[1:] not in ids[dest]):
            out.append(f"broken link: {target}{anchor}")
    return sorted(out)


def pages(html_dir: Path) -> list[Path]:
    """The book's content pages in a built HTML tree."""
    return sorted(p for p in Path(html_dir).rglob("*.html")
                  if p.name not in SKIP and not p.name.startswith(".check-") and "_static" not in p.parts
                  and "_sources" not in p.parts)


def check(html_dir: Path, *, jobs: int = 2) -> dict[str, list[str]]:
    """Every page of ``html_dir`` with its problems (pages without problems included, empty)."""
    html_dir = Path(html_dir).resolve()
    todo = pages(html_dir)
    if not todo:
        raise FileNotFoundError(f"No HTML pages under {html_dir}: build the book first")
    with ThreadPoolExecutor(jobs) as pool:
        found = list(pool.map(lambda p: problems(measure(p)) + broken_links(p), todo))
    return {str(p.relative_to(html_dir)): f for p, f in zip(todo, found)}


def report(found: dict[str, list[str]]) -> str:
    """One line per page: OK, or its problems indented below it."""
    lines = []
    for page, probs in found.items():
        lines.append(f"{'OK  ' if not probs else 'FAIL'} {page}")
        lines += [f"       {p}" for p in probs]
    return "\n".join(lines)

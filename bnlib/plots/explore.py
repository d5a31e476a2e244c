"""Interactive views for the book: the 2-D loss surfaces as heat maps a reader can hover over.

``surfaces_html`` returns one self-contained HTML fragment (a closed ``<details>`` dropdown): the
grids inlined as JSON and the plain JavaScript of ``explore.js`` (this folder, read at run time)
inlined after them. Nothing is fetched, so the book reads offline; the static figures stay for
print. Show it in a notebook with ``IPython.display.HTML``.
"""

from __future__ import annotations

import html
import json
import math
import uuid
from pathlib import Path

import numpy as np

from . import label

JS = Path(__file__).with_name("explore.js")
MAX_BYTES = 300_000  # per view: a page must stay light


def _rounded(x: float, digits: int) -> float | None:
    """``x`` to ``digits`` significant digits; None (JSON null) where it is not finite."""
    return float(f"{x:.{digits}g}") if math.isfinite(x) else None


def surface_data(res: dict, *, archs, norms, labels: dict, digits: int = 4) -> dict:
    """The JSON the view reads: per architecture (``labels[arch]``) the plane of every norm,
    ``loss[i][j]`` at (grid[i], grid[j]) as ``plots.surfaces.contours`` draws it."""
    nets = []
    for arch in archs:
        surfaces = []
        for norm in norms:
            plane = res[arch, norm]["plane"]
            loss = np.asarray(plane["loss"], float)
            surfaces.append({"label": label(norm), "grid": [_rounded(float(g), digits) for g in plane["grid"]],
                             "loss": [[_rounded(float(v), digits) for v in row] for row in loss]})
        nets.append({"name": labels[arch], "surfaces": surfaces})
    return {"networks": nets, "xlabel": "direction 1", "ylabel": "direction 2",
            "zlabel": "training loss (cross-entropy)"}


def _json_in_script(data: dict) -> str:
    """JSON that cannot close its ``<script>`` element early."""
    return json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")


def surfaces_html(res: dict, *, archs, norms, labels: dict, title: str = "Explore the surfaces") -> str:
    """The interactive view of the planes in ``res[(arch, norm)]`` (``surface_data``): one heat map
    per norm side by side with a shared colour scale, a hover read-out of (direction 1, direction 2,
    loss) on every map, a network menu and a linear / log colour switch."""
    uid = "bnlib-explore-" + uuid.uuid4().hex[:8]
    body = f"""<details class="bnlib-explore" id="{uid}" data-bnlib-explore>
<summary>{html.escape(title)} (interactive)</summary>
<div style="display:flex;flex-wrap:wrap;gap:1.2em;align-items:center;margin:0.5em 0">
<label>Network <select data-role="net"></select></label>
<span>Colour scale:
<label><input type="radio" name="{uid}-scale" data-role="scale" value="linear" checked> linear</label>
<label><input type="radio" name="{uid}-scale" data-role="scale" value="log"> log</label></span>
</div>
<div data-role="maps" style="display:flex;flex-wrap:wrap;gap:0.5em"></div>
<div data-role="bar" style="font-size:0.9em"></div>
<p data-role="readout" style="min-height:3em"></p>
<script type="application/json">{_json_in_script(surface_data(res, archs=archs, norms=norms, labels=labels))}</script>
<script>{JS.read_text(encoding="utf-8")}</script>
</details>"""
    size = len(body.encode("utf-8"))
    if size > MAX_BYTES:
        raise ValueError(f"the interactive view is {size:,} bytes, over {MAX_BYTES:,}: round or subsample the grids")
    return body

// Interactive loss-surface heat maps for bnlib's book (no dependencies, nothing fetched).
// bnlib/plots/explore.py inlines this file after each view's JSON data; every view is a
// [data-bnlib-explore] element holding a <script type="application/json"> with
// {networks: [{name, surfaces: [{label, grid, loss}]}], xlabel, ylabel, zlabel}; loss[i][j] is the
// loss at (grid[i], grid[j]) and null where it was not finite.
(function () {
  "use strict";
  const VIRIDIS = [[68, 1, 84], [72, 35, 116], [64, 67, 135], [52, 94, 141], [41, 120, 142], [32, 144, 140],
    [34, 167, 132], [68, 190, 112], [121, 209, 81], [189, 222, 38], [253, 231, 37]];
  const SIZE = 280, LEFT = 50, BOTTOM = 34, TOP = 6, RIGHT = 8;

  function colour(t) {
    const x = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1);
    const i = Math.min(Math.floor(x), VIRIDIS.length - 2), f = x - i;
    const a = VIRIDIS[i], b = VIRIDIS[i + 1];
    return "rgb(" + [0, 1, 2].map(k => Math.round(a[k] + f * (b[k] - a[k]))).join(",") + ")";
  }

  function fmt(v) {
    if (v === null || !isFinite(v)) return "n/a";
    const a = Math.abs(v);
    return a !== 0 && (a >= 1e4 || a < 1e-2) ? v.toExponential(2) : v.toPrecision(3);
  }

  function canvas(width, height) {
    const c = document.createElement("canvas"), r = window.devicePixelRatio || 1;
    c.width = Math.round(width * r);
    c.height = Math.round(height * r);
    c.style.width = width + "px";
    c.style.height = height + "px";
    c.getContext("2d").setTransform(r, 0, 0, r, 0, 0);
    return c;
  }

  function setup(root) {
    const data = JSON.parse(root.querySelector("script[type='application/json']").textContent);
    const select = root.querySelector("[data-role=net]"), maps = root.querySelector("[data-role=maps]");
    const bar = root.querySelector("[data-role=bar]"), readout = root.querySelector("[data-role=readout]");
    const scaleInputs = root.querySelectorAll("[data-role=scale]");
    const state = {net: 0, log: false, hover: null};
    data.networks.forEach((n, i) => select.add(new Option(n.name, String(i))));
    if (data.networks.length < 2) select.parentElement.style.display = "none";

    const value = v => (v === null ? null : state.log ? (v > 0 ? Math.log10(v) : null) : v);
    function limits(net) {
      let lo = Infinity, hi = -Infinity;
      net.surfaces.forEach(s => s.loss.forEach(row => row.forEach(v => {
        const z = value(v);
        if (z !== null && isFinite(z)) { lo = Math.min(lo, z); hi = Math.max(hi, z); }
      })));
      return hi > lo ? [lo, hi] : [lo - 0.5, lo + 0.5];
    }

    function drawMap(c, s, lim) {
      const ctx = c.getContext("2d"), n = s.grid.length, cell = SIZE / n;
      ctx.clearRect(0, 0, LEFT + SIZE + RIGHT, TOP + SIZE + BOTTOM);
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < n; j++) {  // i along direction 1 (x), j along direction 2 (y, upwards)
          const z = value(s.loss[i][j]);
          ctx.fillStyle = z === null ? "#bbb" : colour((z - lim[0]) / (lim[1] - lim[0]));
          ctx.fillRect(LEFT + i * cell, TOP + (n - 1 - j) * cell, cell + 0.5, cell + 0.5);
        }
      }
      const x0 = s.grid[0], x1 = s.grid[n - 1];
      const px = g => LEFT + ((g - x0) / (x1 - x0) * (n - 1) + 0.5) * cell;  // the centre of g's cell
      const py = g => TOP + SIZE - (px(g) - LEFT);
      ctx.strokeStyle = "#fff";
      ctx.lineWidth = 1.5;
      ctx.beginPath();  // the trained weights
      ctx.moveTo(px(0) - 6, py(0)); ctx.lineTo(px(0) + 6, py(0));
      ctx.moveTo(px(0), py(0) - 6); ctx.lineTo(px(0), py(0) + 6);
      ctx.stroke();
      if (state.hover) {
        ctx.strokeStyle = "#e8000b";
        ctx.strokeRect(LEFT + state.hover[0] * cell, TOP + (n - 1 - state.hover[1]) * cell, cell, cell);
      }
      ctx.fillStyle = "#222";
      ctx.font = "13px sans-serif";
      ctx.textAlign = "center";
      [x0, 0, x1].forEach(g => ctx.fillText(fmt(g), px(g), TOP + SIZE + 14));
      ctx.fillText(data.xlabel, LEFT + SIZE / 2, TOP + SIZE + 29);
      ctx.textAlign = "right";
      [x0, 0, x1].forEach(g => ctx.fillText(fmt(g), LEFT - 4, py(g) + 4));
      ctx.save();
      ctx.translate(11, TOP + SIZE / 2);
      ctx.rotate(-Math.PI / 2);
      ctx.textAlign = "center";
      ctx.fillText(data.ylabel, 0, 0);
      ctx.restore();
    }

    function drawBar(lim) {
      bar.textContent = "";
      const c = canvas(2 * SIZE + 40, 34), ctx = c.getContext("2d");
      for (let x = 0; x < 2 * SIZE; x++) {
        ctx.fillStyle = colour(x / (2 * SIZE - 1));
        ctx.fillRect(20 + x, 0, 1.5, 14);
      }
      ctx.fillStyle = "#222";
      ctx.font = "13px sans-serif";
      ctx.textAlign = "center";
      [0, 0.25, 0.5, 0.75, 1].forEach(t => ctx.fillText(fmt(lim[0] + t * (lim[1] - lim[0])), 20 + t * 2 * SIZE, 28));
      const label = document.createElement("div");
      label.textContent = (state.log ? "log10 of the " : "") + data.zlabel + " (one colour scale for the network's maps)";
      bar.append(c, label);
    }

    let drawn = [];  // [canvas, surface] of the network shown

    function build() {
      maps.textContent = "";
      const net = data.networks[state.net];
      drawn = net.surfaces.map(s => {
        const fig = document.createElement("figure"), cap = document.createElement("figcaption");
        fig.style.margin = "0";
        const c = canvas(LEFT + SIZE + RIGHT, TOP + SIZE + BOTTOM);
        cap.textContent = net.name + ", " + s.label;
        fig.append(cap, c);
        maps.append(fig);
        c.addEventListener("mousemove", e => hover(e, c, s));
        c.addEventListener("mouseleave", () => { state.hover = null; show(); });
        return [c, s];
      });
      show();
    }

    function show() {
      const net = data.networks[state.net], lim = limits(net);
      drawn.forEach(([c, s]) => drawMap(c, s, lim));
      drawBar(lim);
      if (state.hover) {
        const s0 = net.surfaces[0], [i, j] = state.hover;
        readout.textContent = data.xlabel + " = " + fmt(s0.grid[i]) + ", " + data.ylabel + " = " + fmt(s0.grid[j])
          + ": training loss " + net.surfaces.map(s => fmt(s.loss[i][j]) + " (" + s.label + ")").join(", ");
      } else {
        readout.textContent = "Move the pointer over a map to read the loss of every map at that point.";
      }
    }

    function hover(e, c, s) {
      const r = c.getBoundingClientRect(), n = s.grid.length;
      const i = Math.floor((e.clientX - r.left - LEFT) / SIZE * n);
      const j = n - 1 - Math.floor((e.clientY - r.top - TOP) / SIZE * n);
      const next = i >= 0 && i < n && j >= 0 && j < n ? [i, j] : null;
      if (String(next) !== String(state.hover)) { state.hover = next; show(); }
    }

    select.addEventListener("change", () => { state.net = Number(select.value); state.hover = null; build(); });
    scaleInputs.forEach(inp => inp.addEventListener("change", () => {
      if (inp.checked) { state.log = inp.value === "log"; show(); }
    }));
    build();
  }

  document.querySelectorAll("[data-bnlib-explore]").forEach(root => {
    if (!root.dataset.ready) {
      root.dataset.ready = "1";
      setup(root);
    }
  });
})();

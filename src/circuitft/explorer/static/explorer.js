/* circuitft circuit explorer: one self-contained component (plain JS + SVG, no dependencies).
 *
 * CircuitExplorer.mount(root, source) draws it into the element `root`. `source` is
 *   { runs: [run index, ...], graph(runName, task, step) -> Promise<packed graph> }
 * with the run indexes and packed graphs of circuitft.explorer.pack (report: embedded; TensorBoard: fetched).
 * Packed edges come strongest first, so the top-n circuit is always the first n edges.
 */
(function (global) {
  "use strict";
  var SVGNS = "http://www.w3.org/2000/svg";
  var KIND_OFFSET = { q: -0.22, k: 0, v: 0.22, mlp: 0, logits: 0 };
  var TASK_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"];
  var TABLE_ROWS = 500; // rows rendered in the edge table (Copy copies every row)
  var SLIDER_STEPS = 1000;
  var EDGE_COLOURS = { pos: "#1f77b4", neg: "#d62728", kept: "#8c8c8c", gained: "#2ca02c", lost: "#d62728" };
  var COLOUR_ORDER = ["pos", "neg", "kept", "gained", "lost"];
  var DASHES = { s: [], k: [6, 3], v: [2, 2] };
  var HIT_PX = 5; // how near (in drawing units) the mouse must be to an edge to hover it
  var now = function () { return (global.performance || Date).now(); };

  function decode(str, Type) {
    var bin = atob(str), bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new Type(bytes.buffer);
  }

  function decodeGraph(p) {
    return {
      nEdges: p.n_edges, nCircuit: p.n_circuit, count: p.count,
      src: decode(p.src, Uint16Array), dst: decode(p.dst, Uint16Array),
      score: decode(p.score, Float32Array), inCircuit: decode(p.in_circuit, Uint8Array),
      nodeScores: p.node_scores || null
    };
  }

  var logFactCache = [0];
  function logFact(n) {
    for (var i = logFactCache.length; i <= n; i++) logFactCache[i] = logFactCache[i - 1] + Math.log(i);
    return logFactCache[n];
  }
  function logComb(n, k) { return logFact(n) - logFact(k) - logFact(n - k); }

  /* Expected Jaccard index of two independent uniformly random subsets of sizes a and b of N items:
   * the overlap K is hypergeometric, P(K = k) = C(a,k) C(N-a,b-k) / C(N,b), and E[J] = sum P(k) k / (a+b-k). */
  function expectedJaccardChance(N, a, b) {
    if (a + b === 0) return 1;
    var lo = Math.max(0, a + b - N), hi = Math.min(a, b), total = 0, denom = logComb(N, b);
    for (var k = Math.max(lo, 1); k <= hi; k++) {
      total += Math.exp(logComb(a, k) + logComb(N - a, b - k) - denom) * k / (a + b - k);
    }
    return total;
  }

  function el(tag, attrs, parent, text) {
    var e = tag.indexOf("svg:") === 0 ? document.createElementNS(SVGNS, tag.slice(4)) : document.createElement(tag);
    for (var key in attrs || {}) e.setAttribute(key, attrs[key]);
    if (text !== undefined) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }
  function esc(v) { return String(v).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;"); }
  function fmt(v, digits) { return v === null || v === undefined || !isFinite(v) ? "n/a" : Number(v).toPrecision(digits || 6); }
  function options(select, values, labels) {
    select.innerHTML = "";
    values.forEach(function (v, i) { el("option", { value: String(v) }, select, labels ? labels[i] : String(v)); });
  }

  function mount(root, source) {
    root.classList.add("cx");
    root.innerHTML = "";
    var ui = {};
    var bar = el("div", { "class": "cx-controls" }, root);
    function labelled(text, node) { var l = el("label", {}, bar, text + " "); l.appendChild(node); return node; }
    ui.run = labelled("run", el("select", { "class": "cx-run" }));
    ui.task = labelled("task", el("select", { "class": "cx-task" }));
    ui.step = labelled("step", el("select", { "class": "cx-step" }));
    ui.slider = labelled("edges", el("input", { "class": "cx-size", type: "range", min: "0", max: String(SLIDER_STEPS) }));
    ui.size = el("input", { "class": "cx-size-n", type: "number", min: "1" }, bar);
    ui.sizeText = el("span", { "class": "cx-size-text" }, bar);
    ui.search = labelled("node", el("input", { "class": "cx-search", type: "search", placeholder: "find a node, e.g. a3.h1", list: "" }));
    ui.clear = el("button", { "class": "cx-clear", type: "button" }, bar, "show all");
    var bar2 = el("div", { "class": "cx-controls" }, root);
    var cl = el("label", {}, bar2, "");
    ui.compare = el("input", { "class": "cx-compare", type: "checkbox" }, cl);
    cl.appendChild(document.createTextNode(" compare with task "));
    ui.taskB = el("select", { "class": "cx-task-b" }, bar2);
    bar2.appendChild(document.createTextNode(" step "));
    ui.stepB = el("select", { "class": "cx-step-b" }, bar2);
    ui.stats = el("span", { "class": "cx-stats" }, bar2);
    var main = el("div", { "class": "cx-main" }, root);
    var fig = el("div", { "class": "cx-figure" }, main);
    var stage = el("div", { "class": "cx-stage" }, fig);
    ui.canvas = el("canvas", { "class": "cx-canvas" }, stage); // the edges (thousands: canvas, not SVG)
    ui.svg = el("svg:svg", { "class": "cx-svg" }, stage); // nodes, labels and the hovered edge, on top
    ui.axis = el("svg:g", { "class": "cx-axis" }, ui.svg);
    ui.hover = el("svg:line", { "class": "cx-hover", visibility: "hidden" }, ui.svg);
    ui.nodes = el("svg:g", { "class": "cx-nodes" }, ui.svg);
    ui.tip = el("div", { "class": "cx-tooltip", hidden: "" }, fig);
    ui.legend = el("div", { "class": "cx-legend" }, fig);
    var side = el("div", { "class": "cx-side" }, main);
    var head = el("div", { "class": "cx-table-head" }, side);
    ui.caption = el("span", { "class": "cx-caption" }, head);
    ui.copy = el("button", { "class": "cx-copy", type: "button" }, head, "copy table");
    ui.tableWrap = el("div", { "class": "cx-table-wrap" }, side);
    ui.table = el("table", { "class": "cx-table" }, ui.tableWrap);
    ui.curves = el("svg:svg", { "class": "cx-curves", viewBox: "0 0 900 190" }, root);
    ui.status = el("div", { "class": "cx-status" }, root);
    var datalist = el("datalist", { id: "cx-nodes-" + Math.random().toString(36).slice(2) }, root);
    ui.search.setAttribute("list", datalist.id);

    var state = { run: null, task: null, step: null, n: 1, focus: null, compare: false, taskB: null, stepB: null,
      sort: { key: "rank", dir: 1 }, A: null, B: null, rows: [], token: 0, drawn: 0 };
    var geo = null;

    function runByName(name) { return source.runs.filter(function (r) { return r.name === name; })[0]; }
    function status(text) { ui.status.textContent = text || ""; }

    function setupRun(name) {
      state.run = runByName(name);
      var L = state.run.layout, cfg = L.cfg, nodes = L.nodes;
      var width = 900, rows = 2 * cfg.n_layers + 2.6;
      var sy = Math.max(22, Math.min(44, 1300 / rows)), height = Math.round(rows * sy + 30);
      var sx = (width - 90) / (cfg.n_heads + 2);
      geo = { x: function (x) { return 70 + (x + 1) * sx; }, y: function (y) { return height - 20 - (y + 0.8) * sy; }, width: width, height: height };
      ui.svg.setAttribute("viewBox", "0 0 " + width + " " + height);
      var dpr = Math.min(2, global.devicePixelRatio || 1);
      ui.canvas.width = Math.round(width * dpr);
      ui.canvas.height = Math.round(height * dpr);
      geo.dpr = dpr;
      ui.axis.innerHTML = ""; ui.nodes.innerHTML = ""; datalist.innerHTML = "";
      for (var l = 0; l < cfg.n_layers; l++) {
        el("svg:text", { x: "4", y: String(geo.y(1 + 2 * l) + 4), "class": "cx-layer" }, ui.axis, "layer " + l);
      }
      var labelAll = nodes.name.length <= 96;
      nodes.name.forEach(function (n, i) {
        var x = geo.x(nodes.x[i]), y = geo.y(nodes.y[i]), shape;
        if (nodes.kind[i] === "mlp") shape = el("svg:rect", { x: String(x - 5), y: String(y - 5), width: "10", height: "10" }, ui.nodes);
        else shape = el("svg:circle", { cx: String(x), cy: String(y), r: nodes.kind[i] === "head" ? "4.5" : "6" }, ui.nodes);
        shape.setAttribute("class", "cx-node");
        shape.setAttribute("data-n", String(i));
        if (labelAll || nodes.kind[i] === "input" || nodes.kind[i] === "logits") {
          el("svg:text", { x: String(x), y: String(y - 8), "class": "cx-label" }, ui.nodes, n);
        }
        el("option", { value: n }, datalist);
      });
      options(ui.run, source.runs.map(function (r) { return r.name; }));
      ui.run.value = state.run.name;
      options(ui.task, state.run.tasks);
      options(ui.taskB, state.run.tasks);
      drawCurves();
    }

    function stepsOf(task) { return state.run.steps[task] || []; }
    function pickTask(task, step) {
      state.task = task;
      ui.task.value = task;
      var steps = stepsOf(task);
      options(ui.step, steps);
      state.step = steps.indexOf(step) >= 0 ? step : steps[steps.length - 1];
      ui.step.value = String(state.step);
    }
    function pickTaskB(task, step) {
      state.taskB = task;
      ui.taskB.value = task;
      var steps = stepsOf(task);
      options(ui.stepB, steps);
      state.stepB = steps.indexOf(step) >= 0 ? step : steps[steps.length - 1];
      ui.stepB.value = String(state.stepB);
    }
    function defaultB() {
      var steps = stepsOf(state.task), i = steps.indexOf(state.step);
      if (i > 0) return pickTaskB(state.task, steps[i - 1]);
      var other = state.run.tasks.filter(function (t) { return t !== state.task; })[0];
      pickTaskB(other || state.task, state.step);
    }

    function maxN() { return state.compare && state.B ? Math.min(state.A.count, state.B.count) : state.A.count; }
    function setN(n, fromSlider) {
      var max = maxN();
      n = Math.max(1, Math.min(max, Math.round(n) || 1));
      state.n = n;
      ui.size.max = String(max);
      ui.size.value = String(n);
      if (!fromSlider) ui.slider.value = String(max > 1 ? Math.round(SLIDER_STEPS * Math.log(n) / Math.log(max)) : SLIDER_STEPS);
      var N = state.A.nEdges;
      ui.sizeText.textContent = " of " + N + " edges (" + (100 * n / N).toPrecision(3) + "%; the strongest " + max + " are loaded)";
    }

    function load() {
      var token = ++state.token, run = state.run.name;
      var wants = [source.graph(run, state.task, state.step)];
      if (state.compare) wants.push(source.graph(run, state.taskB, state.stepB));
      status("loading ...");
      return Promise.all(wants).then(function (graphs) {
        if (token !== state.token) return;
        var first = state.A === null;
        state.A = decodeGraph(graphs[0]);
        state.B = graphs.length > 1 ? decodeGraph(graphs[1]) : null;
        var circuit = state.A.nCircuit > 0 && state.A.nCircuit <= state.A.count ? state.A.nCircuit : Math.round(0.05 * state.A.nEdges);
        setN(first ? circuit : state.n); // first: the size of the run's circuit (else 5% of the edges)
        status("");
        draw();
        if (first) root.setAttribute("data-first-picture-ms", now().toFixed(1)); // since navigation start
      }, function (err) { if (token === state.token) status("cannot load the graph: " + err); });
    }

    function key(s, d) { return s * 65536 + d; }
    function edgeInfo(G, i) {
      var L = state.run.layout, s = G.src[i], d = G.dst[i], owner = L.dst.node[d];
      return { src: s, dst: d, owner: owner, kind: L.dst.kind[d], score: G.score[i], name: L.nodes.name[s] + "->" + L.dst.name[d] };
    }

    function selection() {
      var rows = [], A = state.A, n = state.n, i, e;
      if (!state.compare || !state.B) {
        for (i = 0; i < n; i++) { e = edgeInfo(A, i); e.rank = i + 1; e.inCircuit = A.inCircuit[i] ? "yes" : "no"; rows.push(e); }
        return { rows: rows };
      }
      var B = state.B, inA = new Map(), inB = new Map(), counts = { kept: 0, gained: 0, lost: 0 };
      for (i = 0; i < n; i++) inA.set(key(A.src[i], A.dst[i]), i);
      for (i = 0; i < n; i++) inB.set(key(B.src[i], B.dst[i]), i);
      for (i = 0; i < n; i++) {
        e = edgeInfo(A, i); e.rank = i + 1; e.scoreA = e.score;
        var j = inB.get(key(e.src, e.dst));
        e.status = j === undefined ? "lost" : "kept";
        e.scoreB = j === undefined ? null : B.score[j];
        counts[e.status]++; rows.push(e);
      }
      for (i = 0; i < n; i++) {
        if (inA.has(key(B.src[i], B.dst[i]))) continue;
        e = edgeInfo(B, i); e.rank = n + i + 1; e.scoreA = null; e.scoreB = e.score; e.status = "gained";
        counts.gained++; rows.push(e);
      }
      return { rows: rows, counts: counts };
    }

    function draw() {
      var t = now(), sel = selection(), rows = sel.rows, focus = state.focus;
      if (focus !== null) rows = rows.filter(function (e) { return e.src === focus || e.owner === focus; });
      state.rows = rows;
      var L = state.run.layout, X = L.nodes.x, Y = L.nodes.y, maxAbs = 0, active = new Set(), r, e;
      rows.forEach(function (e) { maxAbs = Math.max(maxAbs, Math.abs(e.score)); });
      // one stroke per (colour, dash, width step): a few hundred strokes draw thousands of edges
      var segs = new Float32Array(rows.length * 4), widths = new Float32Array(rows.length), groups = new Map();
      for (r = 0; r < rows.length; r++) {
        e = rows[r];
        var w = maxAbs > 0 ? 0.4 + 3.6 * Math.abs(e.score) / maxAbs : 1;
        var colour = state.compare && state.B ? e.status : (e.score >= 0 ? "pos" : "neg");
        active.add(e.src); active.add(e.owner);
        segs[4 * r] = geo.x(X[e.src]); segs[4 * r + 1] = geo.y(Y[e.src]);
        segs[4 * r + 2] = geo.x(X[e.owner] + KIND_OFFSET[e.kind]); segs[4 * r + 3] = geo.y(Y[e.owner]);
        var dash = e.kind === "k" || e.kind === "v" ? e.kind : "s", step = Math.round(w * 10);
        widths[r] = step / 10;
        var gk = step * 100 + COLOUR_ORDER.indexOf(colour) * 3 + "skv".indexOf(dash); // sorts by width first
        if (!groups.has(gk)) groups.set(gk, { colour: colour, dash: dash, width: step / 10, rows: [] });
        groups.get(gk).rows.push(r);
      }
      state.segs = segs;
      state.widths = widths;
      var ctx = ui.canvas.getContext("2d");
      ctx.setTransform(geo.dpr, 0, 0, geo.dpr, 0, 0);
      ctx.clearRect(0, 0, geo.width, geo.height);
      ctx.globalAlpha = 0.75;
      ctx.lineCap = "butt";
      var drawn = 0;
      Array.from(groups.keys()).sort(function (a, b) { return a - b; }).forEach(function (gk) { // thin first: strong on top
        var g = groups.get(gk);
        ctx.strokeStyle = EDGE_COLOURS[g.colour];
        ctx.lineWidth = g.width;
        ctx.setLineDash(DASHES[g.dash]);
        g.rows.forEach(function (r) { // one path per edge: Skia strokes a path of many crossing lines far slower
          ctx.beginPath(); ctx.moveTo(segs[4 * r], segs[4 * r + 1]); ctx.lineTo(segs[4 * r + 2], segs[4 * r + 3]); ctx.stroke(); drawn++;
        });
      });
      ui.hover.setAttribute("visibility", "hidden");
      state.drawn = drawn;
      root.setAttribute("data-drawn", String(drawn));
      Array.prototype.forEach.call(ui.nodes.querySelectorAll(".cx-node"), function (node) {
        var i = Number(node.getAttribute("data-n"));
        node.classList.toggle("on", active.has(i));
        node.classList.toggle("focus", i === focus);
      });
      var c = sel.counts;
      if (c) {
        var union = c.kept + c.gained + c.lost, jac = union ? c.kept / union : 1;
        var chance = expectedJaccardChance(state.A.nEdges, state.n, state.n);
        ui.stats.innerHTML = ' <span class="kept">kept <b class="cx-kept">' + c.kept + '</b></span> <span class="gained">gained <b class="cx-gained">' +
          c.gained + '</b></span> <span class="lost">lost <b class="cx-lost">' + c.lost + '</b></span> Jaccard <b class="cx-jaccard">' +
          jac.toFixed(4) + '</b>, chance level <b class="cx-chance">' + chance.toFixed(4) + "</b> (two random sets of " + state.n +
          " of the " + state.A.nEdges + " edges)";
      } else ui.stats.textContent = "";
      ui.legend.innerHTML = state.compare && state.B
        ? '<span class="kept">kept</span> in both, <span class="gained">gained</span> only in ' + esc(state.taskB) + " @ " + state.stepB +
          ', <span class="lost">lost</span> only in ' + esc(state.task) + " @ " + state.step + "; q solid, k dashed, v dotted"
        : '<span class="pos">score &gt; 0</span>, <span class="neg">score &lt; 0</span>; width |score|; q solid, k dashed, v dotted';
      drawTable();
      drawMarker();
      root.setAttribute("data-redraw-ms", (now() - t).toFixed(1));
    }

    var COLUMNS = [["rank", "#"], ["name", "edge"], ["score", "score"], ["kind", "input"], ["layer", "layer"], ["head", "head"], ["inCircuit", "in circuit"]];
    var COMPARE_COLUMNS = [["rank", "#"], ["status", "status"], ["name", "edge"], ["scoreA", "score A"], ["scoreB", "score B"], ["kind", "input"]];
    function cell(e, k) {
      var L = state.run.layout;
      if (k === "layer") return L.nodes.layer[e.owner];
      if (k === "head") { var h = L.nodes.head[e.owner]; return h === null ? "" : h; }
      return e[k];
    }
    function columns() { return state.compare && state.B ? COMPARE_COLUMNS : COLUMNS; }
    function sortedRows() {
      var k = state.sort.key, dir = state.sort.dir;
      if (columns().every(function (c) { return c[0] !== k; })) k = "rank";
      return state.rows.slice().sort(function (a, b) {
        var x = cell(a, k), y = cell(b, k);
        if (x === null || x === "") x = -Infinity;
        if (y === null || y === "") y = -Infinity;
        return (x < y ? -1 : x > y ? 1 : a.rank - b.rank) * dir;
      });
    }
    function drawTable() {
      var cols = columns(), rows = sortedRows(), html = ["<thead><tr>"];
      cols.forEach(function (c) {
        var mark = state.sort.key === c[0] ? (state.sort.dir > 0 ? " \u25b2" : " \u25bc") : "";
        html.push('<th data-k="' + c[0] + '">' + c[1] + mark + "</th>");
      });
      html.push("</tr></thead><tbody>");
      rows.slice(0, TABLE_ROWS).forEach(function (e) {
        html.push('<tr class="' + (e.status || "") + '">');
        cols.forEach(function (c) {
          var v = cell(e, c[0]);
          html.push("<td>" + esc(typeof v === "number" && c[0].indexOf("score") === 0 ? fmt(v) : v === null ? "" : v) + "</td>");
        });
        html.push("</tr>");
      });
      ui.table.innerHTML = html.join("") + "</tbody>";
      var what = state.compare && state.B ? state.task + " @ " + state.step + " vs " + state.taskB + " @ " + state.stepB : state.task + " @ step " + state.step;
      ui.caption.textContent = rows.length + " edges, " + what + (state.focus !== null ? ", at node " + state.run.layout.nodes.name[state.focus] : "") +
        (rows.length > TABLE_ROWS ? " (first " + TABLE_ROWS + " shown; copy copies all)" : "");
    }
    function tableText() {
      var cols = columns();
      return [cols.map(function (c) { return c[1]; }).join("\t")].concat(sortedRows().map(function (e) {
        return cols.map(function (c) { var v = cell(e, c[0]); return v === null ? "" : String(v); }).join("\t");
      })).join("\n");
    }

    function drawCurves() {
      var svg = ui.curves, run = state.run, H = 190, panels = [["accuracy", "model_accuracy", "circuit_accuracy"], ["faithfulness", "faithfulness", null]];
      svg.innerHTML = "";
      svg.__scales = []; svg.__panels = [];
      var steps = [];
      run.tasks.forEach(function (t) { steps = steps.concat(run.curves[t].step); });
      var lo = Math.min.apply(null, steps), hi = Math.max.apply(null, steps);
      if (hi === lo) hi = lo + 1;
      panels.forEach(function (p, k) {
        var x0 = 50 + k * 450, pw = 380, y0 = 20, ph = 130;
        var px = function (s) { return x0 + pw * (s - lo) / (hi - lo); };
        var vals = [];
        run.tasks.forEach(function (t) { [p[1], p[2]].forEach(function (c) { if (c) vals = vals.concat(run.curves[t][c].filter(function (v) { return v !== null; })); }); });
        var ylo = Math.min(0, Math.min.apply(null, vals.concat([0]))), yhi = Math.max(1, Math.max.apply(null, vals.concat([1])));
        var py = function (v) { return y0 + ph * (1 - (v - ylo) / (yhi - ylo)); };
        el("svg:rect", { x: String(x0), y: String(y0), width: String(pw), height: String(ph), "class": "cx-panel", "data-x0": String(x0) }, svg);
        el("svg:text", { x: String(x0), y: "12", "class": "cx-title" }, svg, p[0] + (p[2] ? " (model solid, circuit dashed)" : ""));
        [ylo, yhi].forEach(function (v) { el("svg:text", { x: String(x0 - 6), y: String(py(v) + 4), "class": "cx-tick", "text-anchor": "end" }, svg, String(+v.toFixed(2))); });
        [lo, hi].forEach(function (s) { el("svg:text", { x: String(px(s)), y: String(y0 + ph + 14), "class": "cx-tick", "text-anchor": "middle" }, svg, String(s)); });
        run.tasks.forEach(function (t, ti) {
          [p[1], p[2]].forEach(function (c, ci) {
            if (!c) return;
            var pts = [];
            run.curves[t].step.forEach(function (s, i) { var v = run.curves[t][c][i]; if (v !== null) pts.push(px(s).toFixed(1) + "," + py(v).toFixed(1)); });
            el("svg:polyline", { points: pts.join(" "), fill: "none", stroke: TASK_COLOURS[ti % TASK_COLOURS.length], "stroke-width": "1.6", "stroke-dasharray": ci ? "5 3" : "" }, svg);
          });
        });
        el("svg:line", { "class": "cx-marker", y1: String(y0), y2: String(y0 + ph) }, svg);
        svg.__scales = svg.__scales || []; svg.__scales[k] = px;
        svg.__panels = svg.__panels || []; svg.__panels[k] = { x0: x0, pw: pw, lo: lo, hi: hi };
      });
      var legend = run.tasks.map(function (t, ti) { return '<tspan fill="' + TASK_COLOURS[ti % TASK_COLOURS.length] + '">\u2014 ' + esc(t) + "</tspan>"; }).join("  ");
      var lg = el("svg:text", { x: "50", y: String(H - 4), "class": "cx-tick" }, svg);
      lg.innerHTML = legend + "  (click a chart to pick a step)";
    }
    function drawMarker() {
      var markers = ui.curves.querySelectorAll(".cx-marker"), scales = ui.curves.__scales || [];
      Array.prototype.forEach.call(markers, function (m, k) {
        var x = scales[k](state.step).toFixed(1);
        m.setAttribute("x1", x); m.setAttribute("x2", x); m.setAttribute("data-step", String(state.step));
      });
    }

    function showTip(ev, text) {
      ui.tip.hidden = false;
      ui.tip.textContent = text;
      var box = ui.svg.parentNode.getBoundingClientRect();
      ui.tip.style.left = Math.min(box.width - 260, ev.clientX - box.left + 12) + "px";
      ui.tip.style.top = (ev.clientY - box.top + 12) + "px";
    }
    function nodeText(i) {
      var L = state.run.layout, N = L.nodes, ins = 0, outs = 0;
      state.rows.forEach(function (e) { if (e.src === i) outs++; if (e.owner === i) ins++; });
      var sc = state.A.nodeScores ? state.A.nodeScores[i] : null;
      return N.name[i] + "\nlayer " + (N.kind[i] === "input" ? "input" : N.kind[i] === "logits" ? "logits" : N.layer[i]) +
        (N.head[i] === null ? "" : ", head " + N.head[i]) + (sc !== null && sc !== undefined ? "\nnode score " + fmt(sc) : "") +
        "\nshown edges: " + ins + " in, " + outs + " out";
    }
    function edgeText(e) {
      var N = state.run.layout.nodes, h = N.head[e.owner];
      var score = state.compare && state.B ? "score A " + fmt(e.scoreA) + ", score B " + fmt(e.scoreB) + " (" + e.status + ")" : "score " + fmt(e.score);
      return e.name + "\n" + score + "\nlayer " + (N.kind[e.owner] === "logits" ? "logits" : N.layer[e.owner]) + (h === null ? "" : ", head " + h) +
        ", input " + e.kind + "\nfrom " + N.name[e.src];
    }
    ui.curves.addEventListener("click", function (ev) {
      var box = ui.curves.getBoundingClientRect(), x = (ev.clientX - box.left) * 900 / box.width;
      (ui.curves.__panels || []).forEach(function (p) {
        if (x < p.x0 || x > p.x0 + p.pw) return;
        var s = p.lo + (x - p.x0) / p.pw * (p.hi - p.lo), st = stepsOf(state.task), best = st[0];
        st.forEach(function (c) { if (Math.abs(c - s) < Math.abs(best - s)) best = c; });
        pickTask(state.task, best); load();
      });
    });
    /* The drawn edge at viewport point (cx, cy): of the edges whose stroke covers it (within a pixel), the one
     * drawn on top (the widest, i.e. strongest); else the nearest within HIT_PX; -1 if none. */
    function edgeAt(cx, cy) {
      var box = ui.svg.getBoundingClientRect(), k = geo.width / box.width;
      var px = (cx - box.left) * k, py = (cy - box.top) * k, segs = state.segs, widths = state.widths;
      var top = -1, near = -1, nearD = HIT_PX * HIT_PX;
      for (var r = 0; segs && r < state.rows.length; r++) {
        var x1 = segs[4 * r], y1 = segs[4 * r + 1], dx = segs[4 * r + 2] - x1, dy = segs[4 * r + 3] - y1;
        var len = dx * dx + dy * dy, u = len > 0 ? Math.max(0, Math.min(1, ((px - x1) * dx + (py - y1) * dy) / len)) : 0;
        var ex = x1 + u * dx - px, ey = y1 + u * dy - py, d = ex * ex + ey * ey, reach = widths[r] / 2 + 1;
        if (d <= reach * reach && (top < 0 || widths[r] > widths[top])) top = r;
        if (d < nearD) { near = r; nearD = d; }
      }
      return top >= 0 ? top : near;
    }
    function edgeScreenPoint(r) {
      var box = ui.svg.getBoundingClientRect(), k = box.width / geo.width, s = state.segs;
      return [box.left + k * (s[4 * r] + s[4 * r + 2]) / 2, box.top + k * (s[4 * r + 1] + s[4 * r + 3]) / 2];
    }
    ui.svg.addEventListener("mousemove", function (ev) {
      var t = ev.target;
      if (t.hasAttribute && t.hasAttribute("data-n")) { ui.hover.setAttribute("visibility", "hidden"); return showTip(ev, nodeText(Number(t.getAttribute("data-n")))); }
      var r = edgeAt(ev.clientX, ev.clientY);
      if (r < 0) { ui.tip.hidden = true; ui.hover.setAttribute("visibility", "hidden"); return; }
      var s = state.segs;
      ["x1", "y1", "x2", "y2"].forEach(function (a, j) { ui.hover.setAttribute(a, s[4 * r + j].toFixed(1)); });
      ui.hover.setAttribute("visibility", "visible");
      showTip(ev, edgeText(state.rows[r]));
    });
    ui.svg.addEventListener("mouseleave", function () { ui.tip.hidden = true; ui.hover.setAttribute("visibility", "hidden"); });
    ui.svg.addEventListener("click", function (ev) {
      var t = ev.target;
      if (t.hasAttribute("data-n")) { var i = Number(t.getAttribute("data-n")); state.focus = state.focus === i ? null : i; }
      else if (edgeAt(ev.clientX, ev.clientY) < 0) state.focus = null;
      draw();
    });
    ui.clear.addEventListener("click", function () { state.focus = null; ui.search.value = ""; draw(); });
    ui.search.addEventListener("change", function () {
      var q = ui.search.value.trim().toLowerCase(), names = state.run.layout.nodes.name;
      if (!q) { state.focus = null; draw(); return; }
      var i = names.findIndex(function (n) { return n.toLowerCase() === q; });
      if (i < 0) i = names.findIndex(function (n) { return n.toLowerCase().indexOf(q) === 0; });
      if (i < 0) { status("no node named " + ui.search.value); return; }
      status(""); state.focus = i; draw();
    });
    ui.table.addEventListener("click", function (ev) {
      var th = ev.target.closest("th");
      if (!th) return;
      var k = th.getAttribute("data-k");
      state.sort = { key: k, dir: state.sort.key === k ? -state.sort.dir : (k === "rank" || k === "name" ? 1 : -1) };
      drawTable();
    });
    ui.copy.addEventListener("click", function () {
      var text = tableText();
      var done = function () { status("copied " + (text.split("\n").length - 1) + " rows"); };
      if (navigator.clipboard && global.isSecureContext) navigator.clipboard.writeText(text).then(done, fallback);
      else fallback();
      function fallback() {
        var ta = el("textarea", {}, document.body); ta.value = text; ta.select();
        var ok = false;
        try { ok = document.execCommand("copy"); } catch (err) { ok = false; }
        if (ok) done(); else status("the browser refused to copy: select the table and copy it instead");
        ta.remove();
      }
    });
    ui.slider.addEventListener("input", function () {
      var max = maxN();
      setN(Math.exp(Number(ui.slider.value) / SLIDER_STEPS * Math.log(max)), true);
      draw();
    });
    ui.size.addEventListener("change", function () { setN(Number(ui.size.value)); draw(); });
    ui.run.addEventListener("change", function () { state.A = null; setupRun(ui.run.value); pickTask(state.run.tasks[0]); defaultB(); state.focus = null; load(); });
    ui.task.addEventListener("change", function () { pickTask(ui.task.value, state.step); load(); });
    ui.step.addEventListener("change", function () { pickTask(state.task, Number(ui.step.value)); load(); });
    ui.taskB.addEventListener("change", function () { pickTaskB(ui.taskB.value, state.stepB); load(); });
    ui.stepB.addEventListener("change", function () { pickTaskB(state.taskB, Number(ui.stepB.value)); load(); });
    ui.compare.addEventListener("change", function () { state.compare = ui.compare.checked; if (state.compare) defaultB(); load(); });

    if (!source.runs.length) { status("no run with analysed circuits yet"); return null; }
    setupRun(source.runs[0].name);
    pickTask(state.run.tasks[0]);
    defaultB();
    var api = {
      ready: load(),
      state: state,
      select: function (task, step) { pickTask(task, step); return load(); },
      compareWith: function (task, step) { ui.compare.checked = state.compare = true; pickTaskB(task, step); return load(); },
      setSize: function (n) { setN(n); draw(); return state.drawn; },
      edgeScreenPoint: edgeScreenPoint,
      /* New run indexes (a training run analysed more steps): refresh the pickers and curves, keep the view. */
      updateRuns: function (runs) {
        if (!runs.length) return;
        source.runs = runs;
        state.run = runByName(state.run.name) || runs[0];
        options(ui.run, runs.map(function (r) { return r.name; }));
        ui.run.value = state.run.name;
        options(ui.task, state.run.tasks);
        options(ui.taskB, state.run.tasks);
        var has = function (t) { return state.run.tasks.indexOf(t) >= 0; };
        pickTask(has(state.task) ? state.task : state.run.tasks[0], state.step);
        pickTaskB(has(state.taskB) ? state.taskB : state.task, state.stepB);
        drawCurves();
        drawMarker();
      },
      tableText: tableText
    };
    root.__explorer = api;
    return api;
  }

  /* A source over data embedded in the page: {runs: [run index with graphs[task][step]]}. */
  function embeddedSource(data) {
    return {
      runs: data.runs,
      graph: function (run, task, step) {
        var r = data.runs.filter(function (x) { return x.name === run; })[0];
        var g = r && r.graphs[task] && r.graphs[task][String(step)];
        return g ? Promise.resolve(g) : Promise.reject(new Error("no graph of " + task + " at step " + step));
      }
    };
  }

  global.CircuitExplorer = { mount: mount, embeddedSource: embeddedSource, expectedJaccardChance: expectedJaccardChance, decodeGraph: decodeGraph };
})(typeof window !== "undefined" ? window : globalThis);

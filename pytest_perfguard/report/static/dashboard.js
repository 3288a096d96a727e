// perfguard dashboard: draws the trend charts of the embedded history as inline SVG.
// No library, no network: data comes from the JSON block #perfguard-data and every piece of
// text that came from the data is set with textContent, never parsed as HTML.
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  // Platform colours; red is kept for regressions.
  var COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#17becf", "#8c564b",
                "#e377c2", "#7f7f7f", "#bcbd22"];
  var MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  var H = 230, M = {l: 66, r: 14, t: 16, b: 26};
  var body = document.body;

  window.addEventListener("error", function (event) {
    body.setAttribute("data-error", String(event.message || "error"));
  });

  // -- formatting (mirrors pytest_perfguard/report/formatting.py) ------------------------
  var TIME_UNITS = {s: 1, ms: 1e-3, us: 1e-6, "\u00b5s": 1e-6, ns: 1e-9};
  var TIME_SCALE = [["s", 1], ["ms", 1e-3], ["\u00b5s", 1e-6], ["ns", 1e-9]];

  function num(v) {
    var m = Math.abs(v);
    if (m >= 100) return v.toFixed(0);
    if (m >= 10) return v.toFixed(1);
    if (m >= 1) return v.toFixed(2);
    if (m === 0) return "0";
    return String(Number(v.toPrecision(3)));
  }

  function formatValue(v, unit) {
    if (v === null || v === undefined) return "\u2014";
    if (Object.prototype.hasOwnProperty.call(TIME_UNITS, unit)) {
      var s = v * TIME_UNITS[unit];
      if (s === 0) return "0 s";
      for (var i = 0; i < TIME_SCALE.length; i++) {
        if (Math.abs(s) >= TIME_SCALE[i][1]) return num(s / TIME_SCALE[i][1]) + " " + TIME_SCALE[i][0];
      }
      return num(s / 1e-9) + " ns";
    }
    return unit ? num(v) + " " + unit : num(v);
  }

  function formatChange(c) {
    return (c > 0 ? "+" : "") + (c * 100).toFixed(1) + "%";
  }

  function pad(n) { return n < 10 ? "0" + n : String(n); }

  function formatTime(t) {
    var d = new Date(t * 1000);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
           pad(d.getHours()) + ":" + pad(d.getMinutes());
  }

  function formatTick(t, withTime) {
    var d = new Date(t * 1000), day = MONTHS[d.getMonth()] + " " + d.getDate();
    return withTime ? day + " " + pad(d.getHours()) + ":" + pad(d.getMinutes()) : day;
  }

  // -- small DOM helpers ----------------------------------------------------------------
  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function svg(tag, attrs, parent) {
    var node = document.createElementNS(SVG, tag);
    for (var k in attrs) node.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(node);
    return node;
  }

  function niceTicks(lo, hi, count) {
    var span = hi - lo;
    if (!(span > 0)) return [lo];
    var step = Math.pow(10, Math.floor(Math.log10(span / count)));
    var err = span / count / step;
    if (err >= 7.5) step *= 10; else if (err >= 3.5) step *= 5; else if (err >= 1.5) step *= 2;
    var ticks = [];
    for (var v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
      ticks.push(Math.abs(v) < step * 1e-9 ? 0 : v);
    }
    return ticks;
  }

  var TIME_STEPS = [60, 300, 900, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400,
                    3 * 86400, 5 * 86400, 7 * 86400, 14 * 86400, 30 * 86400, 91 * 86400, 365 * 86400];

  function timeTicks(lo, hi, count) {
    var step = TIME_STEPS[TIME_STEPS.length - 1];
    for (var i = 0; i < TIME_STEPS.length; i++) {
      if ((hi - lo) / TIME_STEPS[i] <= count) { step = TIME_STEPS[i]; break; }
    }
    var offset = new Date(lo * 1000).getTimezoneOffset() * 60;  // ticks at local midnight
    var ticks = [];
    for (var t = Math.ceil((lo - offset) / step) * step + offset; t <= hi; t += step) ticks.push(t);
    return {ticks: ticks, withTime: step < 86400};
  }

  // -- data -----------------------------------------------------------------------------
  var data = JSON.parse(document.getElementById("perfguard-data").textContent);
  var runs = data.runs;  // [run id, time (s), platform index, commit]
  var enabled = data.platforms.map(function () { return true; });
  // A labelled platform key ends in its sorted label set: "box[dataset=v2,model=openai]".
  var labelsOf = data.platforms.map(function (key) {
    var found = {}, m = /\[([^\]]*)\]$/.exec(key);
    if (m) {
      m[1].split(",").forEach(function (pair) {
        var i = pair.indexOf("=");
        if (i > 0) found[pair.slice(0, i)] = pair.slice(i + 1);
      });
    }
    return found;
  });
  var labelFilter = null;  // [key, value] the trends keep, or null for every line
  // The x axis: "time" (dates) or "run" (runs numbered in time order, the run id on the axis).
  var xMode = "time";
  var order = runs.map(function (run, r) { return r; });
  order.sort(function (a, b) { return runs[a][1] - runs[b][1] || runs[a][0] - runs[b][0]; });
  var rankOf = [];
  order.forEach(function (r, k) { rankOf[r] = k; });
  var sortedTimes = order.map(function (r) { return runs[r][1]; });

  function runX(r) { return xMode === "time" ? runs[r][1] : rankOf[r]; }

  // Where a time falls on the x axis: itself, or half a run before the first run at or after it.
  function timeX(t) {
    if (xMode === "time") return t;
    var lo = 0, hi = sortedTimes.length;
    while (lo < hi) { var mid = (lo + hi) >> 1; if (sortedTimes[mid] < t) lo = mid + 1; else hi = mid; }
    return lo - 0.5;
  }

  function lineShown(line) {
    if (!enabled[line.p]) return false;
    return !labelFilter || labelsOf[line.p][labelFilter[0]] === labelFilter[1];
  }
  var tooltip = el("div", "tooltip");
  tooltip.hidden = true;
  body.appendChild(tooltip);

  function baselineAt(line, t) {
    var segments = line.bl, found = null;
    for (var i = 0; i < segments.length; i++) {
      if (segments[i][0] === null || segments[i][0] <= t || found === null) found = segments[i];
    }
    return found;
  }

  function Chart(series, index, card) {
    this.s = series;
    this.card = card;
    this.id = index;
    series.lines.forEach(function (line) {
      line.failed = {};
      line.x.forEach(function (i) { line.failed[i] = true; });
      line.regressed = {};
      line.reg.forEach(function (i) { line.regressed[i] = true; });
    });
    this.fit();
    this.svg = svg("svg", {"class": "chart", height: H, role: "img"});
    this.svg.setAttribute("aria-label", series.metric + " of " + series.test);
    this.reset = el("button", "reset", "reset zoom");
    this.reset.type = "button";
    this.reset.hidden = true;
    var self = this;
    this.reset.addEventListener("click", function () { self.zoom(self.full[0], self.full[1]); });
    this.drawn = false;
    this.bind();
  }

  // The whole x range of the chart's points on the current axis.
  Chart.prototype.fit = function () {
    var lo = Infinity, hi = -Infinity;
    this.s.lines.forEach(function (line) {
      line.r.forEach(function (r) { lo = Math.min(lo, runX(r)); hi = Math.max(hi, runX(r)); });
    });
    var pad = xMode === "time" ? 3600 : 1;
    if (lo === hi) { lo -= pad; hi += pad; }
    var margin = (hi - lo) * 0.02;
    this.full = [lo - margin, hi + margin];
    this.x0 = this.full[0];
    this.x1 = this.full[1];
    if (this.reset) this.reset.hidden = true;
  };

  Chart.prototype.zoom = function (x0, x1) {
    var full = this.full, span = Math.max(x1 - x0, xMode === "time" ? 60 : 2);
    span = Math.min(span, full[1] - full[0]);
    x0 = Math.max(full[0], Math.min(x0, full[1] - span));
    this.x0 = x0;
    this.x1 = x0 + span;
    this.reset.hidden = this.x0 <= full[0] && this.x1 >= full[1];
    this.draw();
  };

  Chart.prototype.visibleLines = function () {
    return this.s.lines.filter(lineShown);
  };

  Chart.prototype.draw = function () {
    var s = this.s, root = this.svg, x0 = this.x0, x1 = this.x1;
    var W = Math.max(root.getBoundingClientRect().width || root.parentNode.clientWidth || 600, 200);
    root.setAttribute("viewBox", "0 0 " + W + " " + H);
    root.setAttribute("width", W);
    while (root.firstChild) root.removeChild(root.firstChild);
    var lines = this.visibleLines();
    var lo = Infinity, hi = -Infinity, seen = [];
    lines.forEach(function (line) {
      line.v.forEach(function (v, i) {
        var t = runX(line.r[i]);
        if (t >= x0 && t <= x1) { lo = Math.min(lo, v); hi = Math.max(hi, v); seen.push(v); }
      });
      line.bl.forEach(function (seg) {
        lo = Math.min(lo, seg[1] * (1 - seg[2]));
        hi = Math.max(hi, seg[1] * (1 + seg[2]));
      });
    });
    if (lo === Infinity) { lo = 0; hi = 1; }
    // Never zoom into noise: the axis spans at least the threshold band around the middle
    // value (the baseline's band is in view already when there is one), so a wobble of a
    // few per cent under a 10 % threshold fills a few tenths of the height, not all of it.
    seen.sort(function (a, b) { return a - b; });
    var middle = seen.length ? seen[seen.length >> 1] : (lo + hi) / 2;
    var least = Math.abs(middle) * (data.threshold || 0.1);
    if (hi - lo < 2 * least) {
      var centre = (lo + hi) / 2;
      lo = Math.min(lo, centre - least);
      hi = Math.max(hi, centre + least);
    }
    if (lo === hi) { lo -= Math.abs(lo) * 0.1 || 1; hi += Math.abs(hi) * 0.1 || 1; }
    var padY = (hi - lo) * 0.06;
    lo -= padY; hi += padY;
    var pw = W - M.l - M.r, ph = H - M.t - M.b;
    function X(t) { return M.l + (t - x0) / (x1 - x0) * pw; }
    function Y(v) { return M.t + (hi - v) / (hi - lo) * ph; }
    this.X = X; this.Y = Y;

    var axes = svg("g", {"class": "axes"}, root);
    niceTicks(lo, hi, 4).forEach(function (v) {
      svg("line", {x1: M.l, x2: W - M.r, y1: Y(v), y2: Y(v), "class": "grid"}, axes);
      var label = svg("text", {x: M.l - 6, y: Y(v) + 4, "text-anchor": "end"}, axes);
      label.textContent = formatValue(v, s.unit);
    });
    if (xMode === "time") {
      var tt = timeTicks(x0, x1, Math.max(2, Math.floor(pw / (x1 - x0 < 86400 * 4 ? 110 : 70))));
      tt.ticks.forEach(function (t) {
        svg("line", {x1: X(t), x2: X(t), y1: M.t, y2: H - M.b, "class": "grid"}, axes);
        var label = svg("text", {x: X(t), y: H - 8, "text-anchor": "middle"}, axes);
        label.textContent = formatTick(t, tt.withTime);
      });
    } else {
      niceTicks(Math.max(0, x0), Math.min(order.length - 1, x1), Math.max(2, Math.floor(pw / 80)))
        .forEach(function (k) {
          if (k !== Math.round(k)) return;
          svg("line", {x1: X(k), x2: X(k), y1: M.t, y2: H - M.b, "class": "grid"}, axes);
          var label = svg("text", {x: X(k), y: H - 8, "text-anchor": "middle", "class": "run-tick"}, axes);
          label.textContent = "#" + runs[order[k]][0];
        });
    }
    // The scale, said once: values do not start at zero, so a gap is not a ratio.
    if (lo > 0 || hi < 0) {
      svg("text", {x: M.l + 4, y: H - M.b - 4, "class": "scale-note"}, axes).textContent =
        "axis from " + formatValue(lo, s.unit) + ", not 0";
    }

    var clipId = "clip-" + this.id;
    var defs = svg("defs", {}, root);
    var clip = svg("clipPath", {id: clipId}, defs);
    svg("rect", {x: M.l, y: M.t, width: pw, height: ph}, clip);
    var plot = svg("g", {"clip-path": "url(#" + clipId + ")"}, root);

    lines.forEach(function (line) {
      var color = COLORS[line.p % COLORS.length];
      var segs = line.bl;
      var d = "";
      segs.forEach(function (seg, i) {
        var a = seg[0] === null || i === 0 ? x0 - (x1 - x0) : timeX(seg[0]);
        var b = i + 1 < segs.length ? timeX(segs[i + 1][0]) : x1 + (x1 - x0);
        var top = seg[1] * (1 + seg[2]), bottom = seg[1] * (1 - seg[2]);
        svg("rect", {x: X(a), y: Y(top), width: Math.max(0, X(b) - X(a)), height: Math.max(0, Y(bottom) - Y(top)),
                     fill: color, "class": "band"}, plot);
        d += (i === 0 ? "M" : "L") + X(a) + " " + Y(seg[1]) + "L" + X(b) + " " + Y(seg[1]);
      });
      if (d) svg("path", {d: d, stroke: color, "class": "baseline"}, plot);
    });

    lines.forEach(function (line, li) {
      var color = COLORS[line.p % COLORS.length];
      var d = "", dots = 0;
      line.v.forEach(function (v, i) {
        if (line.failed[i]) return;
        d += (d ? "L" : "M") + X(runX(line.r[i])).toFixed(1) + " " + Y(v).toFixed(1);
        dots++;
      });
      if (d) svg("path", {d: d, stroke: color, "class": "series"}, plot);
      line.v.forEach(function (v, i) {
        var x = X(runX(line.r[i])), y = Y(v);
        if (x < M.l - 5 || x > W - M.r + 5) return;
        if (line.failed[i]) {
          svg("path", {d: "M" + (x - 3) + " " + (y - 3) + "l6 6m0 -6l-6 6", "class": "failed"}, plot);
        } else if (line.regressed[i]) {
          svg("circle", {cx: x, cy: y, r: 4.5, "class": "regression"}, plot);
        } else if (dots <= 150) {
          svg("circle", {cx: x, cy: y, r: 2.4, fill: color}, plot);
        }
      });
      line.cp.forEach(function (cp) {
        var x = X(runX(line.r[cp[0]]));
        var worse = cp[2] > 0;
        svg("line", {x1: x, x2: x, y1: M.t, y2: H - M.b, "class": worse ? "cp worse" : "cp better"}, plot);
        var label = svg("text", {x: x + 3, y: M.t + 10 + 12 * li, "class": worse ? "cp-label worse" : "cp-label better"}, plot);
        label.textContent = (cp[1] > 0 ? "\u25b2 " : "\u25bc ") + formatChange(cp[1]);
      });
    });
    this.hover = svg("circle", {r: 6, "class": "hover", visibility: "hidden"}, root);
    this.brush = svg("rect", {y: M.t, height: ph, "class": "brush", visibility: "hidden"}, root);
    this.pw = pw;
    this.drawn = true;
  };

  Chart.prototype.nearest = function (px, py) {
    var best = null, bestD = 400, self = this;
    this.visibleLines().forEach(function (line) {
      line.v.forEach(function (v, i) {
        var dx = self.X(runX(line.r[i])) - px, dy = self.Y(v) - py;
        var dist = dx * dx + dy * dy * 0.25;
        if (dist < bestD) { bestD = dist; best = {line: line, i: i}; }
      });
    });
    return best;
  };

  Chart.prototype.showTip = function (hit, event) {
    var s = this.s, line = hit.line, i = hit.i, v = line.v[i], run = runs[line.r[i]];
    var parts = [data.platforms[line.p], "run #" + run[0] + (run[3] ? " \u00b7 " + run[3] : ""),
                 formatTime(run[1]), formatValue(v, s.unit)];
    var seg = baselineAt(line, run[1]);
    if (seg && seg[1] !== 0) {
      parts[3] += "  (" + formatChange((v - seg[1]) / seg[1]) + " vs baseline " + formatValue(seg[1], s.unit) + ")";
    }
    if (line.failed[i]) parts.push("test failed: not judged");
    if (line.regressed[i]) parts.push("regression (threshold " + Math.round(seg[2] * 1000) / 10 + "%)");
    while (tooltip.firstChild) tooltip.removeChild(tooltip.firstChild);
    parts.forEach(function (text, k) { tooltip.appendChild(el("div", k === 0 ? "tip-title" : "", text)); });
    tooltip.hidden = false;
    var x = event.pageX + 14, y = event.pageY + 14;
    if (x + 320 > window.scrollX + window.innerWidth) x = event.pageX - 330;
    tooltip.style.left = x + "px";
    tooltip.style.top = y + "px";
    this.hover.setAttribute("cx", this.X(runX(line.r[i])));
    this.hover.setAttribute("cy", this.Y(v));
    this.hover.setAttribute("stroke", COLORS[line.p % COLORS.length]);
    this.hover.setAttribute("visibility", "visible");
  };

  Chart.prototype.bind = function () {
    var self = this, root = this.svg, drag = null;
    function local(event) {
      var box = root.getBoundingClientRect();
      return [event.clientX - box.left, event.clientY - box.top];
    }
    function timeAt(px) { return self.x0 + (px - M.l) / self.pw * (self.x1 - self.x0); }
    root.addEventListener("pointerdown", function (event) {
      if (!self.drawn || event.button !== 0) return;
      var p = local(event);
      drag = {x: p[0], pan: event.shiftKey, x0: self.x0, x1: self.x1};
      try { root.setPointerCapture(event.pointerId); } catch (e) { /* synthetic pointer */ }
      tooltip.hidden = true;
    });
    root.addEventListener("pointermove", function (event) {
      if (!self.drawn) return;
      var p = local(event);
      if (drag && drag.pan) {
        var shift = (drag.x - p[0]) / self.pw * (drag.x1 - drag.x0);
        self.zoom(drag.x0 + shift, drag.x1 + shift);
        return;
      }
      if (drag) {
        var a = Math.max(M.l, Math.min(drag.x, p[0])), b = Math.min(M.l + self.pw, Math.max(drag.x, p[0]));
        self.brush.setAttribute("x", a);
        self.brush.setAttribute("width", Math.max(0, b - a));
        self.brush.setAttribute("visibility", "visible");
        return;
      }
      var hit = self.nearest(p[0], p[1]);
      if (hit) self.showTip(hit, event);
      else { tooltip.hidden = true; self.hover.setAttribute("visibility", "hidden"); }
    });
    root.addEventListener("pointerup", function (event) {
      if (!drag) return;
      var p = local(event), start = drag;
      drag = null;
      self.brush.setAttribute("visibility", "hidden");
      if (!start.pan && Math.abs(p[0] - start.x) > 5) {
        var a = timeAt(Math.min(start.x, p[0])), b = timeAt(Math.max(start.x, p[0]));
        self.zoom(a, b);
      }
    });
    root.addEventListener("pointerleave", function () {
      tooltip.hidden = true;
      if (self.drawn) self.hover.setAttribute("visibility", "hidden");
    });
    root.addEventListener("dblclick", function () { self.zoom(self.full[0], self.full[1]); });
    root.addEventListener("wheel", function (event) {
      if (!(event.ctrlKey || event.metaKey || event.altKey)) return;  // plain wheel scrolls the page
      event.preventDefault();
      var t = timeAt(local(event)[0]), factor = event.deltaY < 0 ? 0.8 : 1.25;
      self.zoom(t - (t - self.x0) * factor, t + (self.x1 - t) * factor);
    }, {passive: false});
  };

  // -- page -----------------------------------------------------------------------------
  var grid = document.getElementById("charts");
  var charts = data.series.map(function (series, index) {
    var card = el("article", "card");
    card.id = "chart-" + index;
    var head = el("header");
    var title = el("h3", "", series.metric);
    if (series.regressed) title.appendChild(el("span", "badge bad", "regression"));
    head.appendChild(title);
    head.appendChild(el("div", "test-id", series.test || "(no test)"));
    var meta = (series.dir === "higher" ? "higher is better" : "lower is better") +
               (series.unit ? " \u00b7 " + series.unit : "") + " \u00b7 " + series.kind;
    head.appendChild(el("div", "meta", meta));
    card.appendChild(head);
    var chart = new Chart(series, index, card);
    card.appendChild(chart.svg);
    var foot = el("div", "chart-foot");
    foot.appendChild(chart.reset);
    card.appendChild(foot);
    grid.appendChild(card);
    return chart;
  });

  var controls = {
    text: document.getElementById("filter-text"),
    regressed: document.getElementById("filter-regressed"),
    kinds: Array.prototype.slice.call(document.querySelectorAll("input[data-kind]"))
  };

  function shown(chart) {
    var s = chart.s, query = controls.text.value.trim().toLowerCase();
    var kinds = {};
    controls.kinds.forEach(function (box) {
      box.getAttribute("data-kind").split(" ").forEach(function (k) { kinds[k] = box.checked; });
    });
    if (!kinds[s.kind]) return false;
    if (controls.regressed.checked && !s.regressed) return false;
    if (!chart.visibleLines().length) return false;
    return !query || (s.test + " " + s.metric).toLowerCase().indexOf(query) >= 0;
  }

  function refresh(redraw) {
    var count = 0, visible = 0;
    charts.forEach(function (chart) {
      var show = shown(chart);
      chart.card.hidden = !show;
      if (show) {
        visible++;
        if (redraw || !chart.drawn) chart.draw();
      }
      if (chart.drawn) count++;
    });
    document.getElementById("chart-count").textContent = visible + " of " + charts.length + " charts";
    var lines = 0;
    charts.forEach(function (chart) { if (!chart.card.hidden) lines += chart.visibleLines().length; });
    body.setAttribute("data-trend-lines", String(lines));
    body.setAttribute("data-rendered", String(count));
  }

  var legend = document.getElementById("platform-legend");
  data.platforms.forEach(function (name, p) {
    var label = el("label", "platform");
    var box = el("input");
    box.type = "checkbox";
    box.checked = true;
    box.addEventListener("change", function () { enabled[p] = box.checked; refresh(true); });
    var swatch = el("span", "swatch");
    swatch.style.background = COLORS[p % COLORS.length];
    label.appendChild(box);
    label.appendChild(swatch);
    label.appendChild(document.createTextNode(name));
    legend.appendChild(label);
  });

  // Trends by label: "model=openai" keeps the lines of platforms labelled so.
  var labelPick = document.getElementById("filter-label");
  var pairs = [];
  labelsOf.forEach(function (found) {
    Object.keys(found).forEach(function (k) {
      var pair = k + "=" + found[k];
      if (pairs.indexOf(pair) < 0) pairs.push(pair);
    });
  });
  pairs.sort();
  if (labelPick) {
    labelPick.parentNode.hidden = !pairs.length;
    pairs.forEach(function (pair) {
      var node = el("option", "", pair);
      node.value = pair;
      labelPick.appendChild(node);
    });
    labelPick.addEventListener("change", function () {
      var v = labelPick.value, i = v.indexOf("=");
      labelFilter = v ? [v.slice(0, i), v.slice(i + 1)] : null;
      refresh(true);
    });
  }
  var axisPick = document.getElementById("x-axis");
  if (axisPick) {
    axisPick.addEventListener("change", function () {
      xMode = axisPick.value === "run" ? "run" : "time";
      charts.forEach(function (chart) { chart.fit(); });
      body.setAttribute("data-x-axis", xMode);
      refresh(true);
    });
  }

  controls.text.addEventListener("input", function () { refresh(false); });
  controls.regressed.addEventListener("change", function () { refresh(false); });
  controls.kinds.forEach(function (box) { box.addEventListener("change", function () { refresh(false); }); });
  var resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () { refresh(true); }, 150);
  });
  // -- experiments: a metric against a param, one point per trial, the best one ringed --
  function experimentsView() {
    var exps = data.experiments || [];
    var pick = document.getElementById("exp-select");
    if (!pick || !exps.length) return;
    var metricPick = document.getElementById("exp-metric");
    var paramPick = document.getElementById("exp-param");
    var directionPick = document.getElementById("exp-direction");
    var box = document.getElementById("exp-chart");
    var bestText = document.getElementById("exp-best");

    function option(select, value, text) {
      var node = el("option", "", text);
      node.value = String(value);
      select.appendChild(node);
    }

    function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

    exps.forEach(function (e, i) { option(pick, i, "#" + e.id + " " + e.name); });

    function fill() {
      var e = exps[+pick.value];
      clear(metricPick);
      clear(paramPick);
      e.metrics.forEach(function (name, i) { option(metricPick, i, name); });
      option(paramPick, -1, "trial number");
      e.params.forEach(function (name, i) { option(paramPick, i, name); });
      paramPick.value = e.params.length ? "0" : "-1";
      draw();
    }

    function draw() {
      var e = exps[+pick.value], m = +metricPick.value, p = +paramPick.value;
      clear(box);
      box.appendChild(el("h3", "", e.name + (e.cut ? " (newest trials only)" : "")));
      var points = [];
      e.trials.forEach(function (t) {
        var y = t[2][m], x = p < 0 ? t[0] : t[1][p];
        if (y === null || y === undefined || x === null || x === undefined) return;
        points.push({n: t[0], x: x, y: y, ok: t[3]});
      });
      body.setAttribute("data-exp-points", String(points.length));
      var W = Math.max(box.clientWidth - 24, 320);
      var root = svg("svg", {"class": "chart", width: W, height: H, viewBox: "0 0 " + W + " " + H}, box);
      if (!points.length) {
        svg("text", {x: M.l, y: H / 2}, root).textContent = "no trial has both";
        bestText.textContent = "";
        body.setAttribute("data-exp-best", "");
        return;
      }
      // Numbers on a linear axis; anything else (text, booleans) as sorted categories.
      var numeric = points.every(function (q) { return typeof q.x === "number"; });
      var categories = [];
      if (!numeric) {
        points.forEach(function (q) {
          if (categories.indexOf(String(q.x)) < 0) categories.push(String(q.x));
        });
        categories.sort();
      }
      var xs = points.map(function (q) { return numeric ? q.x : categories.indexOf(String(q.x)); });
      var ys = points.map(function (q) { return q.y; });
      var x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs);
      var y0 = Math.min.apply(null, ys), y1 = Math.max.apply(null, ys);
      if (x1 === x0) { x0 -= 1; x1 += 1; }
      if (y1 === y0) { var half = Math.abs(y0) * 0.1 || 1; y0 -= half; y1 += half; }
      var padX = (x1 - x0) * 0.06, padY = (y1 - y0) * 0.1;
      x0 -= padX; x1 += padX; y0 -= padY; y1 += padY;
      var pw = W - M.l - M.r, ph = H - M.t - M.b;
      function X(v) { return M.l + (v - x0) / (x1 - x0) * pw; }
      function Y(v) { return M.t + (y1 - v) / (y1 - y0) * ph; }
      niceTicks(y0, y1, 4).forEach(function (v) {
        svg("line", {"class": "grid", x1: M.l, x2: W - M.r, y1: Y(v), y2: Y(v)}, root);
        svg("text", {x: M.l - 6, y: Y(v) + 4, "text-anchor": "end"}, root).textContent = formatValue(v, "");
      });
      var ticks = numeric ? niceTicks(x0, x1, 6) : categories.map(function (c, i) { return i; });
      ticks.forEach(function (v) {
        svg("text", {x: X(v), y: H - 8, "text-anchor": "middle"}, root).textContent =
          numeric ? formatValue(v, "") : categories[v];
      });
      var higher = directionPick.value === "higher", best = 0;
      points.forEach(function (q, i) {
        if (higher ? q.y > points[best].y : q.y < points[best].y) best = i;
        var cx = X(xs[i]), cy = Y(q.y), node;
        if (q.ok === 0) {
          node = svg("path", {"class": "trial-failed",
                              d: "M" + (cx - 4) + "," + (cy - 4) + "l8,8m0,-8l-8,8"}, root);
        } else {
          node = svg("circle", {"class": "trial", cx: cx, cy: cy, r: 4, fill: COLORS[0]}, root);
        }
        svg("title", {}, node).textContent =
          "trial " + q.n + ": " + formatValue(q.y, "") + " at " + String(q.x) +
          (q.ok === 0 ? " (validation failed)" : "");
      });
      svg("circle", {"class": "best", cx: X(xs[best]), cy: Y(points[best].y), r: 8}, root);
      bestText.textContent = "best: trial " + points[best].n + " (" + formatValue(points[best].y, "") + ")";
      body.setAttribute("data-exp-best", String(points[best].n));
    }

    pick.addEventListener("change", fill);
    [metricPick, paramPick, directionPick].forEach(function (select) {
      select.addEventListener("change", draw);
    });
    fill();
  }

  // -- compare: one metric per platform or per label value, side by side -------------
  function compareView() {
    var metricPick = document.getElementById("cmp-metric");
    if (!metricPick || !data.series.length) return;
    var byPick = document.getElementById("cmp-by");
    var rows = document.querySelector("#cmp-table tbody");
    var box = document.getElementById("cmp-chart");
    var RECENT = 5;
    var labelKeys = [];
    labelsOf.forEach(function (found) {
      Object.keys(found).forEach(function (k) { if (labelKeys.indexOf(k) < 0) labelKeys.push(k); });
    });
    labelKeys.sort();

    function option(select, value, text) {
      var node = el("option", "", text);
      node.value = String(value);
      select.appendChild(node);
    }

    data.series.forEach(function (s, i) {
      if (s.kind !== "system") option(metricPick, i, s.test + " \u00b7 " + s.metric);
    });
    option(byPick, "", "platform");
    labelKeys.forEach(function (k) { option(byPick, k, "label " + k); });
    if (labelKeys.length) byPick.value = labelKeys[0];

    function median(values) {
      var sorted = values.slice().sort(function (a, b) { return a - b; }), n = sorted.length;
      return n % 2 ? sorted[(n - 1) / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
    }

    function draw() {
      var s = data.series[+metricPick.value], by = byPick.value, groups = {}, order = [];
      s.lines.forEach(function (line) {
        var name = by ? labelsOf[line.p][by] : data.platforms[line.p];
        if (name === undefined) name = "(no " + by + ")";
        if (!groups[name]) { groups[name] = []; order.push(name); }
        var failed = {};
        line.x.forEach(function (i) { failed[i] = true; });
        line.v.forEach(function (v, j) {
          if (!failed[j]) groups[name].push([runs[line.r[j]][1], v]);
        });
      });
      order.sort();
      var summary = order.map(function (name) {
        var points = groups[name].sort(function (a, b) { return a[0] - b[0]; });
        var recent = points.slice(-RECENT).map(function (q) { return q[1]; });
        return {name: name, points: points, newest: points.length ? points[points.length - 1][1] : null,
                median: recent.length ? median(recent) : null};
      });
      var lower = s.dir !== "higher", best = null;
      summary.forEach(function (g) {
        if (g.median !== null && (best === null || (lower ? g.median < best : g.median > best))) best = g.median;
      });
      while (rows.firstChild) rows.removeChild(rows.firstChild);
      summary.forEach(function (g) {
        var tr = el("tr");
        tr.appendChild(el("td", "id", g.name));
        tr.appendChild(el("td", "num", String(g.points.length)));
        tr.appendChild(el("td", "num", formatValue(g.newest, s.unit)));
        tr.appendChild(el("td", "num" + (g.median === best ? " best" : ""), formatValue(g.median, s.unit)));
        tr.appendChild(el("td", "num", g.median === null || !best ? "\u2014" :
          (g.median === best ? "best" : formatChange((g.median - best) / best))));
        rows.appendChild(tr);
      });
      body.setAttribute("data-cmp", summary.map(function (g) {
        return g.name + ":" + formatValue(g.median, s.unit);
      }).join("|"));
      drawTrends(s, summary);
    }

    function drawTrends(s, summary) {
      while (box.firstChild) box.removeChild(box.firstChild);
      var all = [];
      summary.forEach(function (g) { all = all.concat(g.points); });
      if (!all.length) return;
      var W = Math.max(box.clientWidth - 24, 320);
      var root = svg("svg", {"class": "chart", width: W, height: H, viewBox: "0 0 " + W + " " + H}, box);
      var t0 = Math.min.apply(null, all.map(function (q) { return q[0]; }));
      var t1 = Math.max.apply(null, all.map(function (q) { return q[0]; }));
      var lo = Math.min.apply(null, all.map(function (q) { return q[1]; }));
      var hi = Math.max.apply(null, all.map(function (q) { return q[1]; }));
      if (t1 === t0) { t0 -= 3600; t1 += 3600; }
      // Zero stays in view for values of one sign, so a small difference does not look
      // like a cliff; the scale is marked on the axis either way.
      if (lo > 0) lo = 0;
      if (hi < 0) hi = 0;
      if (hi === lo) hi = lo + 1;
      hi += (hi - lo) * 0.08;
      var pw = W - M.l - M.r, ph = H - M.t - M.b;
      function X(t) { return M.l + (t - t0) / (t1 - t0) * pw; }
      function Y(v) { return M.t + (hi - v) / (hi - lo) * ph; }
      niceTicks(lo, hi, 4).forEach(function (v) {
        svg("line", {"class": "grid", x1: M.l, x2: W - M.r, y1: Y(v), y2: Y(v)}, root);
        svg("text", {x: M.l - 6, y: Y(v) + 4, "text-anchor": "end"}, root).textContent = formatValue(v, s.unit);
      });
      var tt = timeTicks(t0, t1, 5);
      tt.ticks.forEach(function (t) {
        svg("text", {x: X(t), y: H - 8, "text-anchor": "middle"}, root).textContent = formatTick(t, tt.withTime);
      });
      summary.forEach(function (g, i) {
        var color = COLORS[i % COLORS.length];
        if (g.points.length > 1) {
          svg("path", {"class": "series", stroke: color, d: g.points.map(function (q, j) {
            return (j ? "L" : "M") + X(q[0]).toFixed(1) + "," + Y(q[1]).toFixed(1);
          }).join("")}, root);
        }
        g.points.forEach(function (q) {
          var dot = svg("circle", {cx: X(q[0]), cy: Y(q[1]), r: 3, fill: color}, root);
          svg("title", {}, dot).textContent = g.name + ": " + formatValue(q[1], s.unit) + " \u00b7 " + formatTime(q[0]);
        });
        var label = svg("text", {x: W - M.r, y: M.t + 12 + 14 * i, "text-anchor": "end", fill: color}, root);
        label.textContent = g.name;
      });
    }

    metricPick.addEventListener("change", draw);
    byPick.addEventListener("change", draw);
    draw();
  }

  // -- baseline history: one update at a time, its changes and the baselines after it --
  function snapshotsView() {
    var snaps = data.snapshots || [];  // oldest first
    var pick = document.getElementById("snap-pick");
    if (!pick || !snaps.length) return;
    var view = document.getElementById("snap-view");
    var older = document.getElementById("snap-older");
    var newer = document.getElementById("snap-newer");

    for (var k = snaps.length - 1; k >= 0; k--) {
      var node = el("option", "", "#" + snaps[k].id + " \u00b7 " + snaps[k].when + " \u00b7 " +
                    snaps[k].platform + (snaps[k].reason ? " \u00b7 " + snaps[k].reason : ""));
      node.value = String(k);
      pick.appendChild(node);
    }

    function table(id, head, rows) {
      var t = el("table");
      t.id = id;
      var tr = el("tr");
      head.forEach(function (h) { tr.appendChild(el("th", "", h)); });
      t.appendChild(el("thead")).appendChild(tr);
      var tbody = t.appendChild(el("tbody"));
      rows.forEach(function (row) {
        var line = el("tr", row.changed ? "changed" : "");
        row.cells.forEach(function (text, i) { line.appendChild(el("td", i === 0 ? "id" : "", text)); });
        tbody.appendChild(line);
      });
      view.appendChild(t);
    }

    function show() {
      var k = +pick.value, snap = snaps[k];
      while (view.firstChild) view.removeChild(view.firstChild);
      view.appendChild(el("h3", "", "Update #" + snap.id + " on " + snap.platform));
      var about = [snap.when];
      if (snap.commit) about.push("commit " + snap.commit);
      if (snap.who) about.push("by " + snap.who);
      if (snap.reason) about.push(snap.reason);
      view.appendChild(el("div", "meta", about.join(" \u00b7 ")));
      view.appendChild(el("h4", "", "Changed from the update before"));
      table("snap-changes", ["Test", "Metric", "Before", "After", "Change", "Reason"],
        snap.changes.map(function (c) {
          return {cells: [c[0] || "(no test)", c[1], c[2] === null ? "(added)" : c[2], c[3], c[4], c[5]]};
        }));
      // An update stores only what it changed: replay the platform's updates up to this one.
      var state = {};
      for (var j = 0; j <= k; j++) {
        if (snaps[j].platform !== snap.platform) continue;
        snaps[j].changes.forEach(function (c) {
          state[c[0] + "\u0000" + c[1]] = {test: c[0], metric: c[1], value: c[3], at: j};
        });
      }
      var keys = Object.keys(state).sort();
      view.appendChild(el("h4", "", "Baselines after this update (" + keys.length + ")"));
      table("snap-state", ["Test", "Metric", "Baseline", "Set by"], keys.map(function (key) {
        var e = state[key];
        return {changed: e.at === k,
                cells: [e.test || "(no test)", e.metric, e.value, "#" + snaps[e.at].id + " \u00b7 " + snaps[e.at].when]};
      }));
      older.disabled = k === 0;
      newer.disabled = k === snaps.length - 1;
      body.setAttribute("data-snapshot", String(snap.id));
    }

    pick.value = String(snaps.length - 1);
    pick.addEventListener("change", show);
    older.addEventListener("click", function () { pick.value = String(+pick.value - 1); show(); });
    newer.addEventListener("click", function () { pick.value = String(+pick.value + 1); show(); });
    show();
  }

  refresh(false);
  experimentsView();
  compareView();
  snapshotsView();
})();

// Small SVG charts for the manager's page, drawn from the analytics API's rows: horizontal bars and
// a line chart over dates with an optional band (the forecast's interval). Each mark carries the
// API's value verbatim in data- attributes (data-label, data-value, …), so the page can be checked
// against the API; the text beside it is only that value formatted.
"use strict";

const Charts = (() => {
  const NS = "http://www.w3.org/2000/svg";

  function svgEl(tag, attrs, ...children) {
    const node = document.createElementNS(NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null) continue;
      if (key === "dataset") for (const [k, v] of Object.entries(value)) node.dataset[k] = v === null ? "" : String(v);
      else node.setAttribute(key, value);
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  // a round upper end for an axis: 1, 2 or 5 times a power of ten, at least `max`
  function niceMax(max) {
    if (!(max > 0)) return 1;
    const power = 10 ** Math.floor(Math.log10(max));
    for (const step of [1, 2, 5, 10]) if (step * power >= max) return step * power;
    return 10 * power;
  }

  const empty = (text) => {
    const p = document.createElement("p");
    p.className = "empty";
    p.textContent = text;
    return p;
  };

  // items: [{label, value, text, data}] -> one bar each, longest first as given; `segments` (optional)
  // splits a bar: [{key, className}] reads item.parts[key]
  function bars(items, { segments = null, format = String, emptyText = "Nothing in this range.", width = 600 } = {}) {
    if (!items.length) return empty(emptyText);
    const labelWidth = Math.min(200, Math.round(width * 0.32));
    const valueWidth = segments ? 170 : 70;
    const row = 28;
    const height = items.length * row + 4;
    const top = niceMax(Math.max(...items.map((i) => Number(i.value) || 0)));
    const scale = (v) => ((Number(v) || 0) / top) * (width - labelWidth - valueWidth);
    const svg = svgEl("svg", { viewBox: `0 0 ${width} ${height}`, role: "img" });
    items.forEach((item, index) => {
      const y = index * row + 2;
      const g = svgEl("g", { class: "bar-item", dataset: { label: item.label, value: item.value, ...(item.data || {}) } });
      g.append(svgEl("text", { x: labelWidth - 8, y: y + row / 2 + 4, "text-anchor": "end" }, item.label));
      if (segments) {
        let x = labelWidth;
        for (const seg of segments) {
          const w = scale(item.parts[seg.key]);
          g.append(svgEl("rect", { class: `bar ${seg.className || ""}`, x, y: y + 4, width: w, height: row - 8, rx: 2 }));
          x += w;
        }
      } else {
        g.append(svgEl("rect", { class: "bar", x: labelWidth, y: y + 4, width: scale(item.value), height: row - 8, rx: 2 }));
      }
      g.append(
        svgEl("text", { class: "value", x: labelWidth + scale(item.value) + 6, y: y + row / 2 + 4 }, item.text ?? format(item.value)),
      );
      svg.append(g);
    });
    return svg;
  }

  // `width`: the container's width in pixels, so that 11 px text stays 11 px
  // series: [{name, className, dotClass, points: [{date: "YYYY-MM-DD", value, lower, upper, data}], band}]
  // on one date axis; `yMax` fixes the top (rates: 1), `format` writes axis labels
  function lines(series, { yMax = null, integer = false, format = String, emptyText = "Nothing in this range.", width = 600 } = {}) {
    const all = series.flatMap((s) => s.points);
    if (!all.length) return empty(emptyText);
    const height = 230;
    const pad = { left: 44, right: 12, top: 10, bottom: 34 };
    const day = (iso) => Date.parse(iso + "T00:00:00Z") / 86400000;
    const days = all.map((p) => day(p.date));
    const first = Math.min(...days);
    const last = Math.max(...days);
    const highest = Math.max(...all.map((p) => Math.max(Number(p.value) || 0, Number(p.upper) || 0)));
    // counts: four whole steps on the axis
    const top = yMax ?? (integer ? 4 * Math.max(1, Math.ceil(niceMax(highest / 4))) : niceMax(highest));
    const x = (iso) =>
      pad.left + (last === first ? 0.5 : (day(iso) - first) / (last - first)) * (width - pad.left - pad.right);
    const y = (v) => height - pad.bottom - ((Number(v) || 0) / top) * (height - pad.top - pad.bottom);
    const svg = svgEl("svg", { viewBox: `0 0 ${width} ${height}`, role: "img" });
    for (let k = 0; k <= 4; k += 1) {
      const v = (top * k) / 4;
      svg.append(
        svgEl("line", { class: k ? "grid" : "axis", x1: pad.left, x2: width - pad.right, y1: y(v), y2: y(v) }),
        svgEl("text", { x: pad.left - 6, y: y(v) + 4, "text-anchor": "end" }, format(v)),
      );
    }
    // date labels: at most 8, spread over the points
    const dates = [...new Set(all.map((p) => p.date))].sort();
    const every = Math.max(1, Math.ceil(dates.length / 8));
    dates.forEach((d, i) => {
      if (i % every) return;
      svg.append(svgEl("text", { x: x(d), y: height - pad.bottom + 16, "text-anchor": "middle" }, d.slice(5)));
    });
    for (const s of series) {
      if (!s.points.length) continue;
      if (s.band) {
        const upper = s.points.map((p) => `${x(p.date)},${y(p.upper)}`);
        const lower = [...s.points].reverse().map((p) => `${x(p.date)},${y(p.lower)}`);
        svg.append(svgEl("polygon", { class: "band", points: [...upper, ...lower].join(" ") }));
      }
      svg.append(svgEl("polyline", { class: s.className, points: s.points.map((p) => `${x(p.date)},${y(p.value)}`).join(" ") }));
      for (const p of s.points) {
        svg.append(
          svgEl(
            "circle",
            {
              class: `point ${s.dotClass}`,
              cx: x(p.date),
              cy: y(p.value),
              r: 3.5,
              dataset: { series: s.name, date: p.date, value: p.value, ...(p.data || {}) },
            },
            svgEl("title", {}, `${p.date}: ${p.text ?? p.value}`),
          ),
        );
      }
    }
    return svg;
  }

  return { bars, lines };
})();

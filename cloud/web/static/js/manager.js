// The manager's page (/manager): the analytics API's figures for a range of days, a site, a building
// and a type of ticket — key figures, tickets per week with the forecast, by category and channel,
// SLA compliance per week, ratings, the devices with the most alarms — and the same views as CSV and
// Excel downloads. Every number is the API's (in data-value beside its formatted text); nothing is
// computed here. The filters live in the address (?from=&to=&site=&building_id=&type=).
"use strict";

(() => {
  const { api, el } = Web;
  const $ = (id) => document.getElementById(id);
  const form = $("filters");
  const FILTERS = ["from", "to", "site", "building_id", "type"];

  // ---- formatting only
  const dash = "—";
  const pct = (v) => (v === null || v === undefined ? dash : `${(v * 100).toFixed(1)} %`);
  const count = (v) => (v === null || v === undefined ? dash : Number(v).toLocaleString());
  const score = (v) => (v === null || v === undefined ? dash : `${Number(v).toFixed(2)} / 5`);
  function duration(s) {
    if (s === null || s === undefined) return dash;
    if (s < 90) return `${Math.round(s)} s`;
    if (s < 90 * 60) return `${Math.round(s / 60)} min`;
    if (s < 48 * 3600) return `${(s / 3600).toFixed(1)} h`;
    return `${(s / 86400).toFixed(1)} d`;
  }
  const words = (v) => String(v).replaceAll("_", " ");

  // ---- filters <-> address
  function chosen() {
    const query = new URLSearchParams(window.location.search);
    const out = {};
    for (const key of FILTERS) if (query.get(key)) out[key] = query.get(key);
    return out;
  }

  function queryOf(filters, extra = {}) {
    const q = new URLSearchParams();
    for (const [key, value] of Object.entries({ ...filters, ...extra })) {
      if (value !== undefined && value !== "") q.set(key, value);
    }
    return q.toString();
  }

  // the forecast has no range: it looks ahead from today; its type "all" is the page's empty type
  const forecastQueryOf = (filters) =>
    queryOf({ site: filters.site, building_id: filters.building_id, type: filters.type || "all" });

  async function fillSites(filters) {
    const sites = await api("GET", "/api/v1/sites");
    const select = form.elements.site;
    select.replaceChildren(
      el("option", { value: "" }, "All my sites"),
      ...sites.map((s) => el("option", { value: s.id }, s.name)),
    );
    select.value = filters.site || "";
    await fillBuildings(filters);
  }

  async function fillBuildings(filters) {
    const site = form.elements.site.value;
    const buildings = await api("GET", "/api/v1/buildings" + (site ? `?site=${encodeURIComponent(site)}` : ""));
    const select = form.elements.building_id;
    select.replaceChildren(
      el("option", { value: "" }, "All buildings"),
      ...buildings.map((b) => el("option", { value: b.id }, site ? b.name : `${b.name} (${b.site_id})`)),
    );
    const known = buildings.some((b) => String(b.id) === filters.building_id);
    select.value = known ? filters.building_id : "";
  }

  form.elements.site.addEventListener("change", () => fillBuildings({}));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const filters = {};
    for (const key of FILTERS) if (form.elements[key].value) filters[key] = form.elements[key].value;
    const q = queryOf(filters);
    window.history.pushState(null, "", q ? `?${q}` : window.location.pathname);
    load(filters);
  });
  window.addEventListener("popstate", () => start());

  // ---- the figures
  // one number: its formatted text, and the API's value in data-value
  const num = (row, column, format) =>
    el(
      "span",
      { class: "num", dataset: { kpi: column, value: row[column] === null ? "" : String(row[column]) } },
      format(row[column]),
    );

  // each tile: its label, its main figure and the line under it; [column, format] is a figure
  const TILES = [
    ["Tickets received", ["tickets", count], [["cancelled", count], " cancelled · ", ["redirected", count], " redirected"]],
    ["Resolved", ["resolution_rate", pct], [["resolved", count], " resolved"]],
    [
      "First answer, mean",
      ["response_mean_s", duration],
      ["median ", ["response_p50_s", duration], " · 90 % within ", ["response_p90_s", duration]],
    ],
    [
      "Handling, mean",
      ["handling_mean_s", duration],
      ["median ", ["handling_p50_s", duration], " · 90 % within ", ["handling_p90_s", duration]],
    ],
    ["Answered in time (SLA)", ["sla_response_rate", pct], [["sla_response_met", count], " of ", ["sla_response_due", count]]],
    [
      "Resolved in time (SLA)",
      ["sla_resolution_rate", pct],
      [["sla_resolution_met", count], " of ", ["sla_resolution_due", count]],
    ],
    ["Satisfaction", ["satisfaction_mean", score], [["rated", count], " ratings"]],
    ["Re-complaints", ["recomplaint_rate", pct], [["recomplaints", count], " about a recent fix"]],
    ["Reopened", ["reopen_rate", pct], [["reopened", count], " fixes rejected"]],
  ];

  function renderKpis(row) {
    const part = (p) => (Array.isArray(p) ? num(row, p[0], p[1]) : p);
    $("kpis").replaceChildren(
      ...TILES.map(([label, main, details]) =>
        el(
          "div",
          { class: "kpi" },
          el("div", { class: "label" }, label),
          el("div", { class: "value" }, part(main)),
          el("div", { class: "detail" }, details.map(part)),
        ),
      ),
    );
  }

  // charts are drawn at their box's width in pixels, so their text keeps its size
  const widthOf = (id) => Math.max(280, Math.round($(id).clientWidth || 600));
  const groupBars = (id, rows) =>
    Charts.bars(
      rows.map((r) => ({ label: words(r.group), value: r.tickets, data: { group: r.group } })),
      { format: count, width: widthOf(id) },
    );

  function renderRatings(row) {
    $("ratings-chart").replaceChildren(
      row.rated
        ? Charts.bars(
            [5, 4, 3, 2, 1].map((k) => ({ label: "★".repeat(k), value: row[`rating_${k}`], data: { rating: k } })),
            { format: count, width: widthOf("ratings-chart") },
          )
        : el("p", { class: "empty" }, "No ratings in this range."),
    );
  }

  function renderTrend(weeks, forecast) {
    const history = weeks.rows.map((r) => ({ date: r.group, value: r.tickets, data: { kind: "history" } }));
    const series = [{ name: "tickets", className: "history", dotClass: "history-dot", points: history }];
    if (forecast) {
      const points = forecast.rows
        .filter((r) => r.series === "total")
        .map((r) => ({
          date: r.week_start,
          value: r.forecast,
          lower: r.lower,
          upper: r.upper,
          text: `${r.forecast} (${r.lower}–${r.upper})`,
          data: { kind: "forecast", lower: r.lower, upper: r.upper },
        }));
      series.push({ name: "forecast", className: "forecast", dotClass: "forecast-dot", points, band: true });
      const m = forecast.meta;
      $("forecast-note").textContent =
        `Forecast of ${m.type === "all" ? "all tickets" : words(m.type) + " tickets"} (sites: ${m.sites}) for the next ` +
        `${m.weeks} weeks from ${m.first_week}, interval at ${Math.round(m.level * 100)} %, method: ${m["total.method"]}` +
        (m["total.reason"] ? ` (${m["total.reason"]})` : "") +
        `. History ${m.history_from || dash} to ${m.history_to}.`;
    } else {
      $("forecast-note").textContent = "No forecast: the forecast could not be computed for these filters.";
    }
    $("trend-chart").replaceChildren(
      Charts.lines(series, { integer: true, format: (v) => String(v), width: widthOf("trend-chart") }),
    );
  }

  function renderSla(weeks) {
    const points = (column) =>
      weeks.rows
        .filter((r) => r[column] !== null)
        .map((r) => ({ date: r.group, value: r[column], text: pct(r[column]), data: { column } }));
    const line = (column, className, dotClass) => ({ name: column, className, dotClass, points: points(column) });
    $("sla-chart").replaceChildren(
      Charts.lines(
        [
          line("sla_response_rate", "history", "history-dot"),
          line("sla_resolution_rate", "forecast", "forecast-dot"),
        ],
        {
          yMax: 1,
          format: (v) => `${Math.round(v * 100)} %`,
          emptyText: "No deadline fell due in this range.",
          width: widthOf("sla-chart"),
        },
      ),
    );
  }

  function renderTop(top) {
    $("top-chart").replaceChildren(
      Charts.bars(
        top.rows.map((r) => ({
          label: r.building ? `${r.device} (${r.building})` : r.device,
          value: r.total,
          parts: r,
          text: `${r.alarms} alarms · ${r.complaints} complaints`,
          data: { deviceId: r.device_id, alarms: r.alarms, complaints: r.complaints, total: r.total, rank: r.rank },
        })),
        {
          segments: [{ key: "alarms" }, { key: "complaints", className: "alt" }],
          emptyText: "No device alarmed in this range.",
          width: widthOf("top-chart"),
        },
      ),
    );
  }

  function renderDownloads(filters) {
    const base = queryOf(filters);
    const forecastQuery = forecastQueryOf(filters);
    const views = [
      ["Key figures", `/api/v1/analytics/kpis?${base}`],
      ["By category", `/api/v1/analytics/kpis?${queryOf(filters, { group_by: "category" })}`],
      ["By channel", `/api/v1/analytics/kpis?${queryOf(filters, { group_by: "channel" })}`],
      ["Per week", `/api/v1/analytics/kpis?${queryOf(filters, { group_by: "week" })}`],
      ["By technician", `/api/v1/analytics/kpis?${queryOf(filters, { group_by: "technician" })}`],
      ["Causes", `/api/v1/analytics/causes?${base}`],
      ["Top devices", `/api/v1/analytics/top?${queryOf(filters, { by: "device", limit: 100 })}`],
      ["Alarm to fix", `/api/v1/analytics/alarm-fix?${base}`],
      ["Forecast", `/api/v1/analytics/forecast?${forecastQuery}`],
    ];
    const link = (url, format, text) =>
      el("a", { href: `${url}${url.endsWith("?") ? "" : "&"}format=${format}`, download: "", dataset: { format } }, text);
    $("downloads").replaceChildren(
      ...views.map(([name, url]) =>
        el("span", { dataset: { view: name } }, `${name}: `, link(url, "csv", "CSV"), " · ", link(url, "xlsx", "Excel")),
      ),
    );
  }

  function chartError(id, err) {
    $(id).replaceChildren(el("p", { class: "notice error" }, err.message || String(err)));
  }

  let generation = 0;
  async function load(filters) {
    const mine = ++generation;
    const content = $("content");
    content.classList.add("loading");
    content.setAttribute("aria-busy", "true");
    $("error").textContent = "";
    const q = (extra) => queryOf(filters, extra);
    const forecastQuery = forecastQueryOf(filters);
    const [overall, byCategory, byChannel, byWeek, top, forecast] = await Promise.allSettled([
      api("GET", `/api/v1/analytics/kpis?${q()}`),
      api("GET", `/api/v1/analytics/kpis?${q({ group_by: "category" })}`),
      api("GET", `/api/v1/analytics/kpis?${q({ group_by: "channel" })}`),
      api("GET", `/api/v1/analytics/kpis?${q({ group_by: "week" })}`),
      api("GET", `/api/v1/analytics/top?${q({ by: "device", limit: 10 })}`),
      api("GET", `/api/v1/analytics/forecast?${forecastQuery}&weeks=4`),
    ]);
    if (mine !== generation) return; // newer filters were chosen meanwhile
    if (overall.status === "rejected") {
      // the same refusal (a range that makes no sense, a site out of reach) for every view: say it once
      $("error").textContent = overall.reason.message;
      content.hidden = true;
      $("range").textContent = "";
    } else {
      content.hidden = false;
      const meta = overall.value.meta;
      if (!form.elements.from.value) form.elements.from.value = meta.from;
      if (!form.elements.to.value) form.elements.to.value = meta.to;
      const range = $("range");
      range.dataset.from = meta.from;
      range.dataset.to = meta.to;
      range.textContent = `${meta.from} to ${meta.to} (days in ${meta.time_zone}) · sites: ${meta.sites.join(", ") || dash}`;
      renderKpis(overall.value.rows[0]);
      renderRatings(overall.value.rows[0]);
      for (const [id, answer] of [
        ["category-chart", byCategory],
        ["channel-chart", byChannel],
      ]) {
        if (answer.status === "fulfilled") $(id).replaceChildren(groupBars(id, answer.value.rows));
        else chartError(id, answer.reason);
      }
      if (byWeek.status === "fulfilled") {
        renderTrend(byWeek.value, forecast.status === "fulfilled" ? forecast.value : null);
        renderSla(byWeek.value);
      } else {
        chartError("trend-chart", byWeek.reason);
        chartError("sla-chart", byWeek.reason);
      }
      if (top.status === "fulfilled") renderTop(top.value);
      else chartError("top-chart", top.reason);
      renderDownloads(filters);
    }
    content.classList.remove("loading");
    content.removeAttribute("aria-busy");
    content.dataset.loaded = String(mine);
  }

  async function start() {
    const filters = chosen();
    form.elements.from.value = filters.from || "";
    form.elements.to.value = filters.to || "";
    form.elements.type.value = filters.type || "";
    try {
      await fillSites(filters);
    } catch (err) {
      $("error").textContent = "Could not load the sites: " + err.message;
    }
    await load(filters);
  }
  start();
})();

// The resident's screen (/resident): report a problem with photos (the classifier's guess shown while
// typing; the category may be left to it), follow my requests on their shared timeline, rate the fix
// or reject it, my door entries, and visitor passes (the PIN and QR code shown once). The view is in
// the address (#requests, #report, #ticket/T-…, #entries, #passes), so the phone's back button works.
"use strict";

(() => {
  const { api, el, throttle } = Web;
  const T = Tickets;
  const when = T.when;
  const $ = (id) => document.getElementById(id);
  let current = null; // the ticket shown, when the view is a ticket

  // ---- views
  function route(scroll = true) {
    const hash = decodeURIComponent(window.location.hash.slice(1)) || "requests";
    const ticket = /^ticket\/(T-\d{8}-\d{4,})$/.exec(hash);
    const view = ticket ? "ticket" : ["requests", "report", "entries", "passes"].includes(hash) ? hash : "requests";
    current = ticket ? ticket[1] : null;
    document.querySelectorAll("[data-view]").forEach((s) => (s.hidden = s.dataset.view !== view));
    document.querySelectorAll(".tabs a").forEach((a) => {
      if (a.dataset.tab === (view === "ticket" ? "requests" : view)) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    });
    if (view === "requests") loadRequests();
    if (current !== shown.number()) shown.open(current);
    else if (current) shown.refresh(); // a reload (reconnected): keep what is being typed
    if (view === "entries") loadEntries();
    if (view === "passes") loadPasses();
    if (scroll) window.scrollTo(0, 0);
  }
  window.addEventListener("hashchange", route);

  // ---- my requests
  const loadRequests = T.latestOnly(async (isLatest) => {
    try {
      const tickets = await api("GET", "/api/v1/tickets?limit=100");
      if (!isLatest()) return;
      $("requests").replaceChildren(...tickets.map((t) => T.card(t, "#ticket/" + t.number)));
      $("no-requests").hidden = tickets.length > 0;
      T.say($("requests-error"), "");
    } catch (err) {
      if (isLatest()) T.say($("requests-error"), "Could not load your requests: " + err.message);
    }
  });

  const shown = T.follower($("ticket"), renderTicket);

  // the ticket's parts, which the follower puts into #ticket
  function renderTicket(t) {
    const notice = el("div", { class: "notice", role: "alert", dataset: { testid: "ticket-notice" } });
    const step = (form, path, body) =>
      T.submitting(form, notice, async () => shown.render(await api("POST", `/api/v1/tickets/${t.number}/${path}`, body)));
    const parts = [
      T.head(t, "ticket-status", false),
      T.facts([
        ["Reported", when(t.created_at)],
        ["Kind", [T.words(t.type), T.words(t.category), T.words(t.subcategory)].filter(Boolean).join(" · ")],
        ["Where", T.place(t)],
        ["Handled by", t.department_name],
        ["Expected fixed by", t.resolution_due_at && !t.resolved_at ? when(t.resolution_due_at) : null],
        ["Result", t.result_note],
        ["Turn to", t.redirect_to ? `${t.redirect_to} (${t.redirect_reason})` : null],
        ["Your rating", t.rating ? `${"★".repeat(t.rating)}${"☆".repeat(5 - t.rating)} ${t.rating_comment || ""}` : null],
      ]),
      t.description ? el("div", { class: "description" }, t.description) : null,
      notice,
    ];
    if (t.status === "resolved") parts.push(rateStep(t, step), rejectStep(t, step));
    parts.push(el("h2", {}, "Photos"), T.photos(t));
    if (!["closed", "cancelled", "redirected"].includes(t.status)) parts.push(photoStep(t, notice), commentStep(t, step));
    if (["new", "triaged"].includes(t.status)) parts.push(cancelStep(t, step));
    parts.push(el("h2", {}, "What happened"), T.timeline(t));
    return parts;
  }

  function rateStep(t, step) {
    const stars = el(
      "div",
      { class: "stars", role: "radiogroup", "aria-label": "Rating" },
      [1, 2, 3, 4, 5].map((n) =>
        el(
          "label",
          {},
          el("input", { type: "radio", name: "rating", value: n, required: true, dataset: { testid: `star-${n}` } }),
          el("span", { title: `${n} of 5` }, "★".repeat(n)),
        ),
      ),
    );
    const comment = el("textarea", { name: "comment", maxlength: 2000, dataset: { testid: "rate-comment" } });
    const form = el(
      "form",
      { class: "step form", dataset: { testid: "rate-form" } },
      el("h2", {}, "Is it fixed? Rate the work"),
      stars,
      el("label", {}, "Comment (optional)", comment),
      el("button", { type: "submit", class: "primary", dataset: { testid: "rate" } }, "Send the rating"),
    );
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      step(form, "rate", { rating: Number(form.elements.rating.value), comment: comment.value.trim() });
    });
    return form;
  }

  function rejectStep(t, step) {
    const reason = el("input", { name: "reason", required: true, maxlength: 500, dataset: { testid: "reject-reason" } });
    const form = el(
      "form",
      { class: "step form", dataset: { testid: "reject-form" } },
      el("h2", {}, "Still not fixed?"),
      el("label", {}, "What is still wrong", reason),
      el("button", { type: "submit", class: "danger", dataset: { testid: "reject" } }, "Reject the fix"),
    );
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      step(form, "reject", { reason: reason.value.trim() });
    });
    return form;
  }

  function photoStep(t, notice) {
    const input = el("input", { type: "file", accept: "image/*", multiple: true, dataset: { testid: "ticket-photo" } });
    const form = el(
      "form",
      { class: "form" },
      el("label", {}, "Add photos", input),
      el("button", { type: "submit" }, "Upload"),
    );
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      if (!input.files.length) return;
      T.submitting(form, notice, async () => {
        for (const file of input.files) await T.upload(t.number, file);
        await shown.refresh({ force: true });
      });
    });
    return form;
  }

  function commentStep(t, step) {
    const body = el("textarea", { name: "body", required: true, maxlength: 5000 });
    const form = el(
      "form",
      { class: "step form" },
      el("h2", {}, "Write to the office"),
      body,
      el("button", { type: "submit" }, "Send"),
    );
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      step(form, "comments", { body: body.value.trim(), visibility: "shared" });
    });
    return form;
  }

  function cancelStep(t, step) {
    const reason = el("input", { name: "reason", required: true, maxlength: 500 });
    const form = el(
      "form",
      { class: "step form" },
      el("h2", {}, "No longer needed?"),
      el("label", {}, "Why", reason),
      el("button", { type: "submit" }, "Withdraw the request"),
    );
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      step(form, "cancel", { reason: reason.value.trim() });
    });
    return form;
  }

  // ---- report a problem
  const report = $("report-form");
  const suggestion = $("suggestion");
  let suggested = null;
  let asked = "";

  // the classifier's guess for the text so far; only the latest answer is shown
  const suggest = throttle(async () => {
    const text = `${report.elements.title.value}\n${report.elements.description.value}`.trim();
    if (text.length < 8 || text === asked) return;
    asked = text;
    try {
      const guess = await api("POST", "/api/v1/classifier/suggest", { text });
      if (asked !== text) return;
      suggested = guess;
      const use = el("button", { type: "button", dataset: { testid: "use-suggestion" }, onclick: useSuggestion }, "Use this");
      suggestion.replaceChildren(
        guess.above_threshold ? "Looks like " : "Perhaps ",
        el(
          "strong",
          { dataset: { category: guess.category, subcategory: guess.subcategory } },
          `${T.words(guess.category)} › ${T.words(guess.subcategory)}`,
        ),
        guess.department_name ? ` — ${guess.department_name} would handle it. ` : ". ",
        use,
      );
    } catch (err) {
      suggestion.textContent = ""; // the guess is a help, not a step: say nothing when it fails
    }
  }, 700);

  function useSuggestion() {
    if (!suggested) return;
    report.elements.category.value = suggested.category;
    report.elements.subcategory.value = suggested.subcategory;
  }
  report.elements.title.addEventListener("input", suggest);
  report.elements.description.addEventListener("input", suggest);
  report.elements.category.addEventListener("change", () => (report.elements.subcategory.value = ""));

  report.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const f = report.elements;
    const body = { type: f.type.value, title: f.title.value.trim(), description: f.description.value.trim(), channel: "web" };
    if (f.category.value) body.category = f.category.value;
    if (f.category.value && f.subcategory.value) body.subcategory = f.subcategory.value;
    const photos = [...f.photos.files];
    T.submitting(report, $("report-notice"), async () => {
      const ticket = await api("POST", "/api/v1/tickets", body);
      // the request stands once filed; a photo that fails is said, and can be added on the ticket
      const failed = [];
      for (const file of photos) {
        try {
          await T.upload(ticket.number, file);
        } catch (err) {
          failed.push(`${file.name}: ${err.message}`);
        }
      }
      report.reset();
      suggestion.textContent = "";
      suggested = null;
      asked = "";
      window.location.hash = "ticket/" + ticket.number;
      if (failed.length) T.say($("report-notice"), "Filed, but these photos were refused: " + failed.join("; "));
    });
  });

  // ---- door entries
  const METHOD_WORDS = { card: "card", face: "face", pin: "PIN", qr: "QR code", remote: "opened remotely" };

  async function loadEntries() {
    try {
      const events = await api("GET", "/api/v1/access-events?limit=50");
      $("entries").replaceChildren(
        ...events.map((e) =>
          el(
            "li",
            { class: `card ${e.granted ? "entry-in" : "prio-urgent"}`, dataset: { id: e.id, granted: String(e.granted) } },
            el(
              "div",
              { class: "line" },
              el("span", { class: `tag ${e.granted ? "granted" : "denied"}` }, e.granted ? "in" : "refused"),
              el("span", { class: "heading" }, e.door.replaceAll("_", " ")),
              el("span", { class: "number" }, when(e.at)),
            ),
            el(
              "div",
              { class: "sub" },
              METHOD_WORDS[e.method] || e.method,
              e.pass_id ? " · your guest's pass" : "",
              e.granted ? "" : ` · ${T.words(e.reason)}`,
            ),
          ),
        ),
      );
      $("no-entries").hidden = events.length > 0;
      T.say($("entries-error"), "");
    } catch (err) {
      T.say($("entries-error"), "Could not load the entries: " + err.message);
    }
  }

  // ---- visitor passes
  const passForm = $("pass-form");
  const localValue = (d) => {
    const pad = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
  };
  function passDefaults() {
    const now = new Date();
    now.setSeconds(0, 0);
    passForm.elements.valid_from.value = localValue(now);
    passForm.elements.valid_until.value = localValue(new Date(now.getTime() + 24 * 3600 * 1000));
  }

  const loadPasses = T.latestOnly(async (isLatest) => {
    if (!passForm.elements.valid_from.value) passDefaults();
    try {
      const passes = await api("GET", "/api/v1/passes");
      if (!isLatest()) return;
      $("passes").replaceChildren(...passes.map(passCard));
      $("no-passes").hidden = passes.length > 0;
    } catch (err) {
      if (isLatest()) T.say($("pass-notice"), "Could not load your passes: " + err.message);
    }
  });

  function passCard(p) {
    const ended = p.revoked_at || new Date(p.valid_until) < new Date() || p.uses_left === 0;
    return el(
      "li",
      { class: "card", dataset: { id: p.id } },
      el(
        "div",
        { class: "line" },
        el("span", { class: "heading" }, p.guest_name),
        el("span", { class: "tag" }, p.revoked_at ? "revoked" : ended ? "ended" : `${p.uses_left} of ${p.uses_total} left`),
      ),
      el("div", { class: "sub" }, `${when(p.valid_from)} – ${when(p.valid_until)} · ${p.doors.map((d) => d.door).join(", ")}`),
      ended
        ? null
        : el(
            "div",
            { class: "actions" },
            el(
              "button",
              {
                type: "button",
                onclick: async () => {
                  if (!window.confirm(`Revoke the pass for ${p.guest_name}?`)) return;
                  await api("DELETE", `/api/v1/passes/${p.id}`);
                  loadPasses();
                },
              },
              "Revoke",
            ),
          ),
    );
  }

  passForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const f = passForm.elements;
    const body = {
      guest_name: f.guest_name.value.trim(),
      valid_from: new Date(f.valid_from.value).toISOString(),
      valid_until: new Date(f.valid_until.value).toISOString(),
      uses: Number(f.uses.value),
    };
    T.submitting(passForm, $("pass-notice"), async () => {
      const made = await api("POST", "/api/v1/passes", body);
      showSecret(made);
      passForm.reset();
      passDefaults();
      loadPasses();
    });
  });

  // the PIN and the QR code, once: nothing of them is kept in the page after the dialog closes
  function showSecret(made) {
    const dialog = $("pass-dialog");
    $("pass-guest-name").textContent = made.guest_name;
    $("pass-pin").textContent = made.pin;
    $("pass-qr").replaceChildren(QR.svg(made.qr_token, `QR code of the pass for ${made.guest_name}`));
    $("pass-token").textContent = made.qr_token;
    dialog.addEventListener(
      "close",
      () => {
        $("pass-pin").textContent = "";
        $("pass-qr").replaceChildren();
        $("pass-token").textContent = "";
      },
      { once: true },
    );
    dialog.showModal();
  }

  // ---- live: a change to one of my requests reloads what shows it
  const reloadRequests = throttle(loadRequests, 1000);
  Web.live(
    {
      ticket: (event) => {
        if (!$("requests").closest("[data-view]").hidden) reloadRequests();
        if (current && event.number === current) shown.refresh();
      },
    },
    () => route(false),
  );
  route();
})();

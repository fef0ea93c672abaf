// The technician's screen (/tech), made for a phone: the open tickets assigned to me in the API's
// urgency order (priority, then deadline); one ticket at a time (#T-… in the address, so the phone's
// back button returns to the list) with the steps its state allows: accept (start), notes, photos
// from the camera, hold and resume, resolve. Follows the live feed: a change to my tickets reloads.
"use strict";

(() => {
  const { api, el, throttle } = Web;
  const T = Tickets;
  const when = T.when;
  const listNode = document.getElementById("tickets");
  const listError = document.getElementById("list-error");
  const detailNode = document.getElementById("detail");
  let current = null; // the number of the ticket shown, or null for the list

  // ---- the list
  const loadList = T.latestOnly(async (isLatest) => {
    try {
      const tickets = await api("GET", "/api/v1/tickets?assignee=me&open=true&order=urgency&limit=200");
      if (!isLatest()) return;
      listNode.replaceChildren(...tickets.map((t) => T.card(t, "#" + t.number)));
      document.getElementById("ticket-count").textContent = String(tickets.length);
      document.getElementById("no-tickets").hidden = tickets.length > 0;
      T.say(listError, "");
    } catch (err) {
      if (isLatest()) T.say(listError, "Could not load the tickets: " + err.message);
    }
  });

  // ---- one ticket
  const view = T.follower(detailNode, renderDetail);

  const OPEN = ["new", "triaged", "assigned", "in_progress", "on_hold", "reopened"];
  const CAUSE_CODES = [
    "wear",
    "equipment.fault",
    "equipment.sensor",
    "installation",
    "workmanship",
    "cleaning",
    "supplier",
    "weather",
    "resident.misuse",
    "vandalism",
    "unknown",
  ];

  // the ticket's parts, which the follower puts into detailNode
  function renderDetail(t) {
    const notice = el("div", { class: "notice", role: "alert", dataset: { testid: "detail-notice" } });
    // every step answers with the whole ticket: show it, and keep the list behind it current
    const step = (form, path, body) =>
      T.submitting(form, notice, async () => {
        view.render(await api("POST", `/api/v1/tickets/${t.number}/${path}`, body));
        loadList();
      });

    const parts = [
      T.head(t, "detail-status"),
      T.facts([
        ["Type", `${T.words(t.type)} · ${T.words(t.category)}${t.subcategory ? " · " + T.words(t.subcategory) : ""}`],
        ["Where", T.place(t)],
        ["Resident", t.complainant_name],
        ["Alarm", t.alarm_rule ? `${T.words(t.alarm_rule)} (×${t.occurrences})` : null],
        ["Answer by", t.response_due_at && !t.first_response_at ? when(t.response_due_at) : null],
        ["Fix by", t.resolution_due_at && !t.resolved_at ? when(t.resolution_due_at) : null],
        ["On hold since", t.on_hold_since ? when(t.on_hold_since) : null],
        ["Reopened", t.reopen_count ? `${t.reopen_count}×` : null],
      ]),
      t.description ? el("div", { class: "description" }, t.description) : null,
      notice,
    ];

    if (t.status === "assigned" || t.status === "reopened") parts.push(acceptStep(t, step));
    if (t.status === "on_hold") parts.push(resumeStep(t, step));
    if (t.status === "in_progress") parts.push(resolveStep(t, step));
    if (OPEN.includes(t.status)) parts.push(noteStep(t, step));
    parts.push(photoStep(t, notice));
    if (t.status === "in_progress" || t.status === "assigned") parts.push(holdStep(t, step));
    if (t.work_done || t.result_note || t.cause_code)
      parts.push(
        el("h2", {}, "Resolution"),
        T.facts([
          ["Work done", t.work_done],
          ["Told the resident", t.result_note],
          ["Cause", t.cause_code ? `${t.cause_kind}: ${t.cause_code}${t.cause_note ? " — " + t.cause_note : ""}` : null],
          ["Rating", t.rating ? `${t.rating}/5${t.rating_comment ? " — " + t.rating_comment : ""}` : null],
        ]),
      );
    parts.push(el("h2", {}, "Timeline"), T.timeline(t));
    return parts;
  }

  function acceptStep(t, step) {
    const form = el(
      "form",
      { class: "step form", dataset: { testid: "accept-form" } },
      el("h2", {}, t.status === "reopened" ? "The resident rejected the fix" : "New for you"),
      el("button", { type: "submit", class: "primary", dataset: { testid: "accept" } }, "Accept and start"),
    );
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      step(form, "start");
    });
    return form;
  }

  function resumeStep(t, step) {
    const form = el(
      "form",
      { class: "step form" },
      el("h2", {}, "On hold"),
      el("button", { type: "submit", class: "primary", dataset: { testid: "resume" } }, "Resume the work"),
    );
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      step(form, "resume");
    });
    return form;
  }

  function noteStep(t, step) {
    const kind = el(
      "select",
      { name: "kind", dataset: { testid: "note-kind" } },
      el("option", { value: "work" }, "Work done (record)"),
      el("option", { value: "investigation" }, "Finding (record)"),
      el("option", { value: "internal" }, "Note for the office"),
      t.complainant_id ? el("option", { value: "shared" }, "Message to the resident") : null,
    );
    const body = el("textarea", { name: "body", required: true, maxlength: 5000, dataset: { testid: "note-body" } });
    const form = el(
      "form",
      { class: "step form", dataset: { testid: "note-form" } },
      el("h2", {}, "Add a note"),
      el("label", {}, "What kind", kind),
      el("label", {}, "Note", body),
      el("button", { type: "submit", dataset: { testid: "note-add" } }, "Add the note"),
    );
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const text = body.value.trim();
      if (!text) return;
      if (kind.value === "internal" || kind.value === "shared")
        step(form, "comments", { body: text, visibility: kind.value });
      else step(form, "records", { kind: kind.value, body: text });
    });
    return form;
  }

  function photoStep(t, notice) {
    if (!OPEN.includes(t.status) && t.status !== "resolved") return el("div", {}, el("h2", {}, "Photos"), T.photos(t));
    // capture: a phone opens its camera straight away
    const input = el("input", {
      type: "file",
      accept: "image/*",
      capture: "environment",
      name: "photo",
      dataset: { testid: "photo-input" },
    });
    const shared = el("input", { type: "checkbox", name: "shared", checked: Boolean(t.complainant_id) });
    const form = el(
      "form",
      { class: "step form", dataset: { testid: "photo-form" } },
      el("h2", {}, "Photos"),
      T.photos(t),
      el("label", {}, "Take or choose a photo", input),
      t.complainant_id ? el("label", { class: "choice" }, shared, "The resident may see it") : null,
      el("button", { type: "submit", dataset: { testid: "photo-upload" } }, "Upload the photo"),
    );
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const file = input.files[0];
      if (!file) {
        T.say(notice, "Take or choose a photo first.");
        return;
      }
      T.submitting(form, notice, async () => {
        await T.upload(t.number, file, shared.checked ? "shared" : "internal");
        await view.refresh({ force: true });
      });
    });
    return form;
  }

  function holdStep(t, step) {
    const reason = el("input", {
      name: "reason",
      required: true,
      maxlength: 500,
      placeholder: "waiting for a part",
      dataset: { testid: "hold-reason" },
    });
    const form = el(
      "form",
      { class: "step form" },
      el("h2", {}, "Put on hold"),
      el("label", {}, "Why (the deadline stops meanwhile)", reason),
      el("button", { type: "submit", dataset: { testid: "hold" } }, "Put on hold"),
    );
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      step(form, "hold", { reason: reason.value.trim() });
    });
    return form;
  }

  function resolveStep(t, step) {
    const workDone = el("textarea", { name: "work_done", required: true, maxlength: 5000, dataset: { testid: "work-done" } });
    const result = el("textarea", {
      name: "result",
      maxlength: 5000,
      required: Boolean(t.complainant_id),
      dataset: { testid: "result" },
    });
    const kindChoice = (value, text) =>
      el(
        "label",
        { class: "choice" },
        el("input", { type: "radio", name: "cause_kind", value, required: true, dataset: { testid: `cause-${value}` } }),
        text,
      );
    const code = el("input", {
      name: "cause_code",
      required: true,
      list: "cause-codes",
      pattern: "[a-z][a-z0-9_.\\-]*",
      maxlength: 60,
      autocapitalize: "none",
      placeholder: "e.g. wear",
      dataset: { testid: "cause-code" },
    });
    const note = el("input", { name: "cause_note", maxlength: 2000 });
    const form = el(
      "form",
      { class: "step form", dataset: { testid: "resolve-form" } },
      el("h2", {}, "Resolve"),
      el("label", {}, "Work done", workDone),
      t.complainant_id ? el("label", {}, "What the resident is told", result) : null,
      el(
        "fieldset",
        { class: "choices" },
        el("legend", {}, "Cause"),
        kindChoice("internal", "Ours (equipment, work)"),
        kindChoice("external", "Outside (resident, supplier, weather)"),
      ),
      el("label", {}, "Cause code", code),
      el("datalist", { id: "cause-codes" }, CAUSE_CODES.map((c) => el("option", { value: c }))),
      el("label", {}, "About the cause (optional)", note),
      el("button", { type: "submit", class: "primary", dataset: { testid: "resolve" } }, "Resolve the ticket"),
    );
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const body = {
        work_done: workDone.value.trim(),
        cause_kind: form.elements.cause_kind.value,
        cause_code: code.value.trim(),
        cause_note: note.value.trim(),
      };
      if (t.complainant_id) body.result = result.value.trim();
      step(form, "resolve", body);
    });
    return form;
  }

  // ---- which view: the list, or the ticket named after '#'
  function route() {
    const hash = decodeURIComponent(window.location.hash.slice(1));
    current = /^T-\d{8}-\d{4,}$/.test(hash) ? hash : null;
    document.getElementById("list-view").hidden = current !== null;
    document.getElementById("detail-view").hidden = current === null;
    view.open(current);
    window.scrollTo(0, 0);
  }

  document.getElementById("back").addEventListener("click", (ev) => {
    ev.preventDefault();
    window.location.hash = "";
  });
  window.addEventListener("hashchange", route);

  const reloadList = throttle(loadList, 1000);
  function reloadAll() {
    loadList();
    view.refresh();
  }
  Web.live(
    {
      ticket: (event) => {
        reloadList();
        if (current && event.number === current) view.refresh();
      },
    },
    reloadAll,
  );
  loadList();
  route();
})();

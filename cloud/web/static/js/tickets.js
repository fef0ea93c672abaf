// What the technician's and the resident's screens both show of a ticket: its card in a list, its
// facts, photos and timeline, and the photo upload. The data is the API's TicketOut / TicketDetail.
"use strict";

const Tickets = (() => {
  const { api, el } = Web;

  // "14:03" today, "Dec 1, 09:30" on another day: minutes are enough for tickets and passes
  const today = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
  const otherDay = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  function when(iso) {
    if (!iso) return "";
    const at = new Date(iso);
    return (new Date().toDateString() === at.toDateString() ? today : otherDay).format(at);
  }

  const words = (value) => (value ? String(value).replaceAll("_", " ") : "");

  const STATUS_WORDS = {
    new: "received",
    triaged: "accepted by the office",
    assigned: "assigned",
    in_progress: "in progress",
    on_hold: "on hold",
    resolved: "resolved",
    reopened: "reopened",
    closed: "closed",
    cancelled: "cancelled",
    redirected: "redirected",
  };
  const statusWords = (status) => STATUS_WORDS[status] || words(status);

  function place(t) {
    const parts = [];
    if (t.building) parts.push(t.building);
    if (t.unit_number) parts.push("unit " + t.unit_number);
    else if (t.floor) parts.push("floor " + t.floor);
    if (t.location) parts.push(t.location);
    if (t.device_name) parts.push(t.device_name);
    return parts.join(" · ");
  }

  function deadline(t) {
    if (t.resolution_breached_at) return el("span", { class: "tag breached" }, "overdue");
    if (!t.resolution_due_at || ["resolved", "closed", "cancelled", "redirected"].includes(t.status)) return null;
    return el("span", { class: "due" }, "due " + when(t.resolution_due_at));
  }

  // number and status of a ticket in one line; `urgency` adds its priority and deadline (for staff)
  function line(t, statusTestid, urgency = true) {
    return el(
      "div",
      { class: "line" },
      el("span", { class: "number" }, t.number),
      urgency ? el("span", { class: `tag ${t.priority}` }, t.priority) : null,
      el("span", { class: `tag ${t.status}`, dataset: { testid: statusTestid } }, statusWords(t.status)),
      urgency ? deadline(t) : null,
    );
  }

  // the top of an opened ticket: its line and title
  function head(t, statusTestid, urgency = true) {
    return el("div", { class: "ticket-head" }, line(t, statusTestid, urgency), el("div", { class: "title" }, t.title));
  }

  // a card in a list; `href` opens the ticket
  function card(t, href) {
    return el(
      "li",
      { class: `card prio-${t.priority}`, dataset: { number: t.number, status: t.status, priority: t.priority } },
      el(
        "a",
        { href },
        line(t, "status"),
        el("div", { class: "heading" }, t.title),
        el("div", { class: "sub" }, [words(t.category), words(t.subcategory), place(t)].filter(Boolean).join(" · ")),
      ),
    );
  }

  function facts(pairs) {
    return el(
      "dl",
      { class: "facts" },
      pairs.filter(([, value]) => value !== null && value !== undefined && value !== "").flatMap(([key, value]) => [
        el("dt", {}, key),
        el("dd", {}, value),
      ]),
    );
  }

  function photos(detail) {
    if (!detail.attachments.length) return el("p", { class: "empty" }, "No photos yet.");
    return el(
      "div",
      { class: "photos", dataset: { testid: "photos" } },
      detail.attachments.map((a) =>
        a.content_type.startsWith("image/")
          ? el(
              "a",
              { href: `/api/v1/attachments/${a.id}`, target: "_blank", rel: "noopener" },
              el("img", { src: `/api/v1/attachments/${a.id}`, alt: a.original_name, loading: "lazy" }),
            )
          : el("a", { class: "file", href: `/api/v1/attachments/${a.id}` }, a.original_name),
      ),
    );
  }

  function timeline(detail) {
    return el(
      "ol",
      { class: "timeline", dataset: { testid: "timeline" } },
      [...detail.timeline].reverse().map((entry) =>
        el(
          "li",
          { class: entry.visibility, dataset: { kind: entry.kind } },
          el(
            "div",
            { class: "when" },
            `${when(entry.at)} · ${entry.actor} · ${words(entry.kind)}`,
            entry.visibility === "internal" ? " · staff only" : "",
          ),
          entry.body ? el("div", { class: "body" }, entry.body) : null,
        ),
      ),
    );
  }

  // one photo (a File) onto a ticket
  function upload(number, file, visibility) {
    const form = new FormData();
    form.append("file", file, file.name || "photo.jpg");
    if (visibility) form.append("visibility", visibility);
    return api("POST", `/api/v1/tickets/${number}/attachments`, form);
  }

  // a notice line: shows the text (or hides when empty)
  function say(node, text, kind = "error") {
    node.className = `notice ${kind}`;
    node.textContent = text || "";
  }

  // runs `action` with the form's submit button disabled; an ApiFailure's reason goes to `notice`
  async function submitting(form, notice, action) {
    const buttons = form.querySelectorAll("button");
    buttons.forEach((b) => (b.disabled = true));
    say(notice, "");
    try {
      return await action();
    } catch (err) {
      say(notice, err.message || String(err));
      return undefined;
    } finally {
      buttons.forEach((b) => (b.disabled = false));
    }
  }

  // whether the person is in the middle of something inside `node`: a field focused or filled in.
  // A live update then leaves the ticket as it is (the next step shows the fresh one anyway).
  function busy(node) {
    if (node.contains(document.activeElement) && document.activeElement !== document.body) return true;
    return [...node.querySelectorAll("input, textarea")].some((f) => {
      if (f.type === "file") return f.files.length > 0;
      if (f.type === "checkbox" || f.type === "radio") return f.checked !== f.defaultChecked;
      return f.value !== f.defaultValue;
    });
  }

  // One ticket shown in `node` (its children are what `draw(ticket)` answers; data-number and
  // data-status say which ticket and state), kept current without races: one request at a time, and
  // a change announced while one is out asks once more when it returns, so the newest state is the
  // one drawn. A refresh the live feed asks for gives way to a step's own answer drawn meanwhile
  // (render) and to a form being filled in (busy); `force` (opening, after an upload) draws whatever
  // comes.
  function follower(node, draw) {
    let number = null;
    let renders = 0;
    let running = false;
    let again = false;
    let forced = false;

    function render(ticket) {
      renders += 1;
      node.replaceChildren(...draw(ticket).filter(Boolean)); // parts left out are null
      node.dataset.number = ticket.number;
      node.dataset.status = ticket.status;
    }

    async function refresh({ force = false } = {}) {
      forced = forced || force;
      if (running) {
        again = true;
        return;
      }
      running = true;
      while (number !== null) {
        again = false;
        const target = number;
        const seen = renders;
        let ticket = null;
        let failure = null;
        try {
          ticket = await api("GET", `/api/v1/tickets/${target}`);
        } catch (err) {
          failure = err;
        }
        if (again || target !== number) continue; // asked again meanwhile: the next answer is fresher
        if (failure) node.replaceChildren(el("p", { class: "notice error", role: "alert" }, failure.message));
        else if (forced || (renders === seen && !busy(node))) render(ticket);
        break;
      }
      forced = false;
      running = false;
    }

    function open(which) {
      number = which;
      if (which === null) return;
      node.replaceChildren(el("p", { class: "empty" }, "Loading…"));
      refresh({ force: true });
    }

    return { open, refresh, render, number: () => number };
  }

  // wraps an async loader so that only the answer to the latest call is drawn: `load(isLatest)`
  // checks isLatest() after its await (an older, slower answer would show an older list)
  function latestOnly(load) {
    let calls = 0;
    return () => {
      const mine = ++calls;
      return load(() => mine === calls);
    };
  }

  return {
    busy,
    follower,
    latestOnly,
    when,
    words,
    statusWords,
    place,
    deadline,
    head,
    card,
    facts,
    photos,
    timeline,
    upload,
    say,
    submitting,
  };
})();

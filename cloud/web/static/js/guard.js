// The guard console (/guard): open alarms with sound and acknowledge, door events with snapshots,
// the board of gateways and devices with remote door opening, patrol and cameras. Loads from the
// API, then follows the live feed; panels have fixed sizes so nothing jumps as items arrive.
"use strict";

(() => {
  const { api, el, when, throttle } = Web;
  const SEVERITY_RANK = { critical: 0, major: 1, minor: 2, warning: 3 };
  const openAlarms = new Map(); // alarm id -> alarm (active or acknowledged)
  const pendingCommands = new Map(); // command id -> device id, for the board's status text
  const commandText = new Map(); // device id -> text shown beside the door's button

  // ---- sound: browsers allow audio only after a click, hence the toggle
  let audio = null;
  const soundButton = document.getElementById("sound-toggle");
  soundButton.addEventListener("click", () => {
    if (audio === null) {
      audio = new AudioContext();
      beep("warning");
    } else {
      audio.close();
      audio = null;
    }
    soundButton.setAttribute("aria-pressed", audio ? "true" : "false");
    soundButton.textContent = audio ? "Sound on" : "Sound off";
  });

  // a short tone; critical and major alarms repeat it at a higher pitch
  function beep(severity) {
    if (audio === null) return;
    const urgent = severity === "critical" || severity === "major";
    const count = urgent ? 3 : 1;
    for (let i = 0; i < count; i += 1) {
      const start = audio.currentTime + i * 0.25;
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.frequency.value = urgent ? 1046 : 660;
      gain.gain.setValueAtTime(0.3, start);
      gain.gain.exponentialRampToValueAtTime(0.001, start + 0.18);
      osc.connect(gain).connect(audio.destination);
      osc.start(start);
      osc.stop(start + 0.2);
    }
  }

  // ---- alarms
  function alarmPlace(alarm) {
    const source = alarm.device_name || (alarm.gateway_id ? "gateway " + alarm.gateway_id : alarm.source_type);
    return `${alarm.site_id || ""} · ${source}`;
  }

  function alarmRow(alarm) {
    const acked = alarm.state === "acknowledged";
    return el(
      "li",
      { class: `alarm sev-${alarm.severity} state-${alarm.state}`, dataset: { alarmId: alarm.id } },
      el("span", { class: "sev" }, alarm.severity),
      el(
        "div",
        { class: "what" },
        el("div", { class: "title" }, alarm.message || alarm.rule.replaceAll("_", " ")),
        el(
          "div",
          { class: "meta" },
          `${when(alarm.raised_at)} · ${alarmPlace(alarm)}`,
          alarm.ticket_number ? ` · ${alarm.ticket_number}` : "",
          acked ? ` · acknowledged by ${alarm.acknowledged_by}` : "",
        ),
      ),
      alarm.snapshot_id
        ? el("img", { class: "thumb", alt: "snapshot", loading: "lazy", src: `/api/v1/alarms/${alarm.id}/snapshot` })
        : null,
      acked
        ? el("span", { class: "done" }, "ack'd")
        : el("button", { type: "button", class: "ack", onclick: () => acknowledge(alarm.id) }, "Acknowledge"),
    );
  }

  function renderAlarms() {
    const list = document.getElementById("alarm-list");
    const sorted = [...openAlarms.values()].sort(
      (a, b) =>
        (a.state === "active" ? 0 : 1) - (b.state === "active" ? 0 : 1) ||
        (SEVERITY_RANK[a.severity] ?? 9) - (SEVERITY_RANK[b.severity] ?? 9) ||
        b.raised_at.localeCompare(a.raised_at),
    );
    list.replaceChildren(...sorted.map(alarmRow));
    const active = sorted.filter((a) => a.state === "active").length;
    const badge = document.getElementById("alarm-count");
    badge.textContent = String(active);
    badge.classList.toggle("zero", active === 0);
    document.getElementById("alarm-empty").hidden = sorted.length > 0;
  }

  async function loadAlarms() {
    const alarms = await api("GET", "/api/v1/alarms?state=open&limit=200");
    openAlarms.clear();
    for (const alarm of alarms) openAlarms.set(alarm.id, alarm);
    renderAlarms();
  }

  async function refreshAlarm(id) {
    const alarm = await api("GET", `/api/v1/alarms/${id}`);
    if (alarm.state === "cleared") openAlarms.delete(alarm.id);
    else openAlarms.set(alarm.id, alarm);
    renderAlarms();
    return alarm;
  }

  async function acknowledge(id) {
    try {
      const alarm = await api("POST", `/api/v1/alarms/${id}/ack`, {});
      openAlarms.set(alarm.id, alarm);
    } catch (err) {
      if (err.status !== 409) throw err; // someone else was quicker: just show the current state
      await refreshAlarm(id);
      return;
    }
    renderAlarms();
  }

  // ---- door events
  async function loadDoors() {
    const events = await api("GET", "/api/v1/access-events?limit=12");
    const rows = events.map((e) =>
      el(
        "li",
        { class: `door ${e.granted ? "granted" : "denied"}`, dataset: { eventId: e.id } },
        e.has_snapshot
          ? el("img", { class: "thumb", alt: "snapshot", loading: "lazy", src: `/api/v1/access-events/${e.id}/snapshot` })
          : el("span", { class: "thumb none" }, e.method),
        el(
          "div",
          { class: "what" },
          el("div", { class: "title" }, `${e.granted ? "Entered" : "Refused"} · ${e.door}`),
          el(
            "div",
            { class: "meta" },
            `${when(e.at)} · ${e.method}`,
            e.reason ? ` · ${e.reason.replaceAll("_", " ")}` : "",
            e.offline ? " · decided offline" : "",
          ),
        ),
      ),
    );
    document.getElementById("door-list").replaceChildren(...rows);
    document.getElementById("door-empty").hidden = rows.length > 0;
  }

  // ---- board: per site and building, gateways and devices with their last values
  function valueText(name, v) {
    const value = typeof v.value === "number" ? Math.round(v.value * 100) / 100 : v.value;
    return `${name.replaceAll("_", " ")} ${value}${v.unit ? " " + v.unit : ""}`;
  }

  function deviceRow(device) {
    const state = device.gateway_status !== "online" ? "unknown" : device.online === false ? "offline" : "online";
    const values = Object.entries(device.last_values || {})
      .slice(0, 3)
      .map(([name, v]) => valueText(name, v));
    const canOpen = (device.commands || []).some((c) => c.name === "open_door");
    return el(
      "li",
      { class: `device ${state}`, dataset: { deviceId: device.id } },
      el("span", { class: "dot", title: state }),
      el("span", { class: "name" }, device.name),
      el("span", { class: "values" }, values.join(" · ")),
      canOpen
        ? el(
            "span",
            { class: "door-open" },
            el("button", { type: "button", class: "open", onclick: () => askOpen(device) }, "Open"),
            el("span", { class: "cmd-state" }, commandText.get(device.id) || ""),
          )
        : null,
    );
  }

  async function loadBoard() {
    const [gateways, devices] = await Promise.all([
      api("GET", "/api/v1/gateways?limit=1000"),
      api("GET", "/api/v1/devices?limit=1000"),
    ]);
    const sites = new Map();
    for (const g of gateways) {
      if (!sites.has(g.site_id)) sites.set(g.site_id, { gateways: [], buildings: new Map() });
      sites.get(g.site_id).gateways.push(g);
    }
    for (const d of devices) {
      if (!sites.has(d.site_id)) sites.set(d.site_id, { gateways: [], buildings: new Map() });
      const key = d.building || "—";
      const buildings = sites.get(d.site_id).buildings;
      if (!buildings.has(key)) buildings.set(key, []);
      buildings.get(key).push(d);
    }
    const blocks = [];
    for (const [siteId, site] of [...sites.entries()].sort()) {
      blocks.push(
        el(
          "div",
          { class: "site" },
          el("h3", {}, siteId),
          el(
            "ul",
            { class: "gateways" },
            site.gateways.map((g) =>
              el(
                "li",
                { class: `gateway ${g.status}`, dataset: { gatewayId: g.id } },
                el("span", { class: "dot", title: g.status }),
                el("span", { class: "name" }, g.name || g.id),
                el("span", { class: "values" }, g.status_since ? `${g.status} since ${when(g.status_since)}` : g.status),
              ),
            ),
          ),
          [...site.buildings.entries()]
            .sort()
            .map(([building, list]) =>
              el(
                "div",
                { class: "building" },
                el("h4", {}, building === "—" ? "no building" : `building ${building}`),
                el("ul", { class: "devices" }, list.map(deviceRow)),
              ),
            ),
        ),
      );
    }
    document.getElementById("board").replaceChildren(...blocks);
  }

  // ---- opening a door: confirm, send the profile's open_door command, follow its state
  const dialog = document.getElementById("open-door-dialog");
  let doorToOpen = null;

  function askOpen(device) {
    doorToOpen = device;
    document.getElementById("open-door-name").textContent = `${device.name} (${device.site_id})`;
    dialog.returnValue = "";
    dialog.showModal();
  }

  dialog.addEventListener("close", async () => {
    const device = doorToOpen;
    doorToOpen = null;
    if (dialog.returnValue !== "confirm" || device === null) return;
    setCommandText(device.id, "sending…");
    try {
      const command = await api("POST", `/api/v1/devices/${device.id}/commands`, { command: "open_door" });
      pendingCommands.set(command.id, device.id);
      setCommandText(device.id, command.state);
    } catch (err) {
      setCommandText(device.id, `refused: ${err.message}`);
    }
  });

  function setCommandText(deviceId, text) {
    commandText.set(deviceId, text);
    const cell = document.querySelector(`li.device[data-device-id="${deviceId}"] .cmd-state`);
    if (cell) cell.textContent = text;
  }

  async function followCommand(event) {
    const deviceId = pendingCommands.get(event.command_id);
    if (deviceId === undefined) return;
    const command = await api("GET", `/api/v1/commands/${event.command_id}`);
    setCommandText(deviceId, command.reason ? `${command.state}: ${command.reason}` : command.state);
    if (command.state !== "pending") pendingCommands.delete(event.command_id);
  }

  // ---- patrol: the rounds in course, each checkpoint on time, late, missed or still to come
  async function loadPatrol() {
    const box = document.getElementById("patrol");
    let rounds;
    try {
      rounds = await api("GET", "/api/v1/patrol/rounds/current");
    } catch (err) {
      if (err.status !== 404) throw err;
      box.replaceChildren(el("p", { class: "unavailable" }, "patrol: not available"));
      return;
    }
    if (rounds.length === 0) {
      box.replaceChildren(el("p", { class: "empty" }, "No round in course."));
      return;
    }
    box.replaceChildren(
      ...rounds.map((r) =>
        el(
          "div",
          { class: `round ${r.state}`, dataset: { roundId: r.id } },
          el(
            "div",
            { class: "title" },
            `${r.route_name} · ${r.guard_name || r.guard_username || "unassigned"} · `,
            `${r.counts.on_time + r.counts.late}/${r.checkpoints.length} scanned`,
            r.counts.missed ? ` · ${r.counts.missed} missed` : "",
          ),
          el(
            "ol",
            { class: "checkpoints" },
            r.checkpoints.map((c) =>
              el(
                "li",
                {
                  class: `checkpoint ${c.overdue ? "overdue" : c.status}`,
                  title: `${c.name}: ${c.status.replace("_", " ")}, due ${when(c.due_at)}`,
                },
                el("span", { class: "code" }, c.code),
                el("span", { class: "due" }, c.scanned_at ? when(c.scanned_at) : when(c.due_at)),
              ),
            ),
          ),
        ),
      ),
    );
  }

  // ---- cameras: each camera's latest frame (sent by its gateway at most once a second), asked
  // for again every second; a frame older than STALE_SECONDS is marked as such
  const STALE_SECONDS = 10;
  let cameraList = [];

  async function loadCameras() {
    let cameras;
    try {
      cameras = await api("GET", "/api/v1/cameras");
    } catch (err) {
      if (err.status !== 404) throw err;
      cameras = null;
    }
    const box = document.getElementById("cameras");
    if (cameras === null || cameras.length === 0) {
      cameraList = [];
      box.replaceChildren(
        el("p", { class: "unavailable" }, cameras === null ? "camera frames: not available" : "No camera has sent a frame."),
      );
      return;
    }
    const same =
      cameras.length === cameraList.length &&
      cameras.every((c, i) => c.gateway_id === cameraList[i].gateway_id && c.camera === cameraList[i].camera);
    cameraList = cameras;
    if (!same) {
      box.replaceChildren(
        el(
          "div",
          { class: "camera-grid" },
          cameras.map((c) =>
            el(
              "figure",
              { class: "camera", dataset: { camera: `${c.gateway_id}/${c.camera}` } },
              el("img", { alt: c.camera, src: frameUrl(c) }),
              el("figcaption", {}, el("span", { class: "name" }, c.camera), el("span", { class: "age" }, "")),
            ),
          ),
        ),
      );
    }
    showAges();
  }

  function frameUrl(c) {
    return `/api/v1/cameras/${encodeURIComponent(c.gateway_id)}/${encodeURIComponent(c.camera)}/frame?t=${Date.now()}`;
  }

  function showAges() {
    for (const c of cameraList) {
      const fig = document.querySelector(`figure.camera[data-camera="${c.gateway_id}/${c.camera}"]`);
      if (!fig) continue;
      const age = Math.max(0, (Date.now() - Date.parse(c.taken_at)) / 1000);
      fig.classList.toggle("stale", age > STALE_SECONDS);
      fig.querySelector(".age").textContent = age > STALE_SECONDS ? `no frame for ${Math.round(age)} s` : "";
    }
  }

  // every second: the next frame of each camera (the image keeps the old one until the new one loaded)
  setInterval(() => {
    for (const c of cameraList) {
      const img = document.querySelector(`figure.camera[data-camera="${c.gateway_id}/${c.camera}"] img`);
      if (img) img.src = frameUrl(c);
    }
  }, 1000);
  // the list and each frame's age: every 5 s
  setInterval(() => loadCameras(), 5000);

  // ---- the clock in the top bar
  const clock = document.getElementById("clock");
  const tick = () => {
    clock.textContent = new Date().toLocaleTimeString();
  };
  tick();
  setInterval(tick, 1000);
  // a checkpoint turns overdue by the clock alone, with no change to announce
  setInterval(() => loadPatrol(), 30000);

  // ---- live
  const reloadDoors = throttle(loadDoors, 500);
  const reloadBoard = throttle(loadBoard, 1000);
  const reloadPatrol = throttle(loadPatrol, 1000);
  const reloadAll = () => Promise.all([loadAlarms(), loadDoors(), loadBoard(), loadPatrol(), loadCameras()]);

  Web.live(
    {
      alarm_raised: async (e) => {
        if (e.duplicate) return;
        const alarm = await refreshAlarm(e.alarm_id);
        beep(alarm.severity);
      },
      alarm_acknowledged: (e) => refreshAlarm(e.alarm_id),
      alarm_cleared: (e) => refreshAlarm(e.alarm_id),
      alarm_snapshot: (e) => refreshAlarm(e.alarm_id),
      access_event: reloadDoors,
      gateway: reloadBoard,
      device: reloadBoard,
      last_values: reloadBoard,
      command: followCommand,
      patrol_round: reloadPatrol,
      patrol_checkpoint: reloadPatrol,
      patrol_scan: reloadPatrol,
    },
    reloadAll,
  );
  reloadAll();
})();

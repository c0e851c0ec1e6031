// The dashboard's live layer: listens to /events and updates rows and charts in place.
// Pages read fine without it. Data from the grid only ever goes in through textContent or
// attribute setters, never as markup.
"use strict";

(function () {
  const MAX_USAGE_POINTS = 120;
  const MAX_SPARK_POINTS = 40;
  const csrfMeta = document.querySelector('meta[name="csrf"]');
  const csrf = csrfMeta ? csrfMeta.getAttribute("content") : "";

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function stateClass(state) {
    return String(state).toLowerCase().replace(/[^a-z]/g, "");
  }

  // Same scaling as the server's charts: values spread across, `top` at the top edge.
  function points(values, width, height, top) {
    const step = values.length > 1 ? width / (values.length - 1) : 0;
    return values
      .map((v, i) => {
        const y = height - Math.min(Math.max(v, 0) / top, 1) * height;
        return (i * step).toFixed(1) + "," + y.toFixed(1);
      })
      .join(" ");
  }

  function readNumbers(svg, name) {
    const text = svg.getAttribute(name) || "";
    return text === "" ? [] : text.split(",").map(Number);
  }

  function drawSpark(svg, values, cores) {
    const top = Math.max(cores || 1, ...values);
    svg.setAttribute("data-values", values.join(","));
    const line = svg.querySelector("polyline");
    if (line) line.setAttribute("points", points(values, 120, 28, top));
  }

  function drawUsage(svg, busy, total) {
    const top = Math.max(1, ...busy, ...total);
    const busyPoints = points(busy, 600, 160, top);
    svg.setAttribute("data-busy", busy.join(","));
    svg.setAttribute("data-total", total.join(","));
    svg.querySelector(".busy").setAttribute("points", busyPoints);
    svg.querySelector(".total").setAttribute("points", points(total, 600, 160, top));
    svg.querySelector(".area").setAttribute("points", busy.length ? "0,160 " + busyPoints + " 600,160" : "");
  }

  function setBadge(badge, text, cls) {
    if (!badge) return;
    badge.textContent = text;
    badge.className = "badge " + cls;
  }

  function setProgress(holder, percent) {
    if (!holder) return;
    const p = Math.max(0, Math.min(100, Number(percent) || 0));
    holder.querySelector(".bar").style.width = p.toFixed(1) + "%";
    holder.querySelector("span").textContent = p.toFixed(0) + "%";
    holder.title = p.toFixed(0) + "% done";
  }

  function flash(row) {
    row.classList.remove("flash");
    void row.offsetWidth; // restart the animation
    row.classList.add("flash");
  }

  // Mirrors the server's choice of buttons for a job.
  function actionsFor(job) {
    const active = ["Pending", "Prepared", "Running"].includes(job.status);
    const list = [];
    if (active) {
      list.push(["cancel", "Stop"]);
      list.push(job.suspended ? ["resume", "Resume"] : ["suspend", "Suspend"]);
    }
    list.push(["restart", "Restart"], ["remove", "Delete"]);
    return list;
  }

  function buildActions(holder, job, back) {
    if (!holder || !csrf) return;
    holder.replaceChildren();
    for (const [action, label] of actionsFor(job)) {
      const form = el("form", { method: "post", action: "/jobs/" + job.id + "/" + action });
      form.append(el("input", { type: "hidden", name: "csrf", value: csrf }));
      form.append(el("input", { type: "hidden", name: "back", value: back }));
      const danger = action === "cancel" || action === "remove" ? " danger" : "";
      form.append(el("button", { class: "small" + danger, type: "submit" }, label));
      holder.append(form);
    }
  }

  function jobStatus(job) {
    return job.suspended ? [job.status + " (suspended)", "suspended"] : [job.status, stateClass(job.status)];
  }

  function taskText(job) {
    let text = job.finished + " / " + job.total + " done";
    if (job.running > 0) text += ", " + job.running + " running";
    if (job.failed > 0) text += ", " + job.failed + " failed";
    return text;
  }

  function newJobRow(job) {
    const row = el("tr", { id: "job-" + job.id });
    const idCell = el("td", { class: "num" });
    idCell.append(el("a", { href: "/jobs/" + job.id }, String(job.id)));
    const nameCell = el("td");
    nameCell.append(el("a", { href: "/jobs/" + job.id, "data-field": "name" }, job.name));
    const statusCell = el("td");
    statusCell.append(el("span", { class: "badge", "data-field": "status" }));
    const progressCell = el("td");
    const bar = el("div", { class: "progress", "data-field": "progress" });
    bar.append(el("div", { class: "bar" }), el("span"));
    progressCell.append(bar);
    const submitted = el("td", {}, job.submitted ? job.submitted.replace("T", " ").replace("Z", "") : "–");
    const actions = el("td");
    actions.append(el("div", { class: "actions", "data-field": "actions" }));
    row.append(idCell, nameCell, statusCell, progressCell, el("td", { "data-field": "tasks" }),
      submitted, el("td", { "data-field": "took" }, "–"), actions);
    return row;
  }

  function onJob(job) {
    let row = document.getElementById("job-" + job.id);
    const table = document.querySelector("#jobs tbody");
    if (!row && table) {
      row = newJobRow(job);
      table.prepend(row);
      const empty = document.getElementById("no-jobs");
      if (empty) empty.remove();
      buildActions(row.querySelector('[data-field="actions"]'), job, "list");
    }
    if (!row) return;
    const [label, cls] = jobStatus(job);
    setBadge(row.querySelector('[data-field="status"]'), label, cls);
    setProgress(row.querySelector('[data-field="progress"]'), job.percent);
    const tasks = row.querySelector('[data-field="tasks"]');
    if (tasks && table) tasks.textContent = taskText(job);
    if (tasks && !table) {
      tasks.textContent = job.total + " total: " + job.pending + " pending, " + job.running +
        " running, " + job.finished + " finished, " + job.failed + " failed";
    }
    buildActions(row.querySelector('[data-field="actions"]'), job, table ? "list" : "job");
    if (row.tagName === "TR") flash(row);
    else {
      refreshJobParts();
      refreshPicture(job);
    }
  }

  // A render's picture: when the count of finished tiles changes, the new picture is
  // loaded aside and takes the old one's place once whole, so the old one stays up
  // meanwhile. Only the latest request may swap; `data-done` then says how many finished
  // tiles the shown picture holds.
  let pictureWanted = null;
  function refreshPicture(job) {
    const img = document.getElementById("job-picture");
    if (!img || img.getAttribute("data-job") !== String(job.id)) return;
    const done = String(job.finished);
    if (done === (pictureWanted === null ? img.getAttribute("data-done") : pictureWanted)) return;
    pictureWanted = done;
    const next = new Image();
    next.onload = () => {
      const shown = document.getElementById("job-picture");
      if (pictureWanted !== done || !shown) return;
      for (const name of ["id", "width", "height", "data-job"]) {
        next.setAttribute(name, shown.getAttribute(name));
      }
      next.setAttribute("data-done", done);
      next.alt = "The picture so far: " + done + " of " + job.total + " tiles";
      shown.replaceWith(next);
    };
    next.onerror = () => console.error("picture", next.src);
    next.src = "/jobs/" + job.id + "/image.png?done=" + done;
  }

  // On a job's page the tasks, output and files change with the job: fetch the page again
  // (at most once a second) and swap in its server-rendered, server-escaped parts.
  let refreshTimer = null;
  function refreshJobParts() {
    if (refreshTimer) return;
    refreshTimer = setTimeout(async () => {
      refreshTimer = null;
      try {
        const response = await fetch(window.location.pathname, { credentials: "same-origin" });
        if (!response.ok) return;
        const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
        const parts = fresh.getElementById("job-parts");
        const current = document.getElementById("job-parts");
        if (parts && current) current.replaceWith(document.importNode(parts, true));
      } catch (err) {
        console.error("job refresh", err);
      }
    }, 1000);
  }

  function onJobRemoved(data) {
    const row = document.getElementById("job-" + data.id);
    if (row && row.tagName === "TR") row.remove();
  }

  function onAgent(agent) {
    const row = document.getElementById("agent-" + agent.id);
    if (!row) return;
    setBadge(row.querySelector('[data-field="status"]'), agent.state, stateClass(agent.state));
    const set = (field, text) => {
      const cell = row.querySelector('[data-field="' + field + '"]');
      if (cell) cell.textContent = text;
      return cell;
    };
    set("cores", String(agent.cores));
    set("mhz", String(agent.mhz));
    set("load", Number(agent.load).toFixed(2));
    set("running", String(agent.running));
    for (const field of ["ownerPresent", "canCheckpoint"]) {
      const cell = set(field, agent[field] ? "yes" : "no");
      if (cell) cell.className = agent[field] ? "yes" : "no";
    }
    const spark = row.querySelector("svg.spark");
    if (spark) {
      const values = readNumbers(spark, "data-values");
      values.push(Number(agent.load) || 0);
      drawSpark(spark, values.slice(-MAX_SPARK_POINTS), agent.cores);
    }
  }

  function onUsage(sample) {
    const svg = document.getElementById("usage-chart");
    if (!svg) return;
    const busy = readNumbers(svg, "data-busy");
    const total = readNumbers(svg, "data-total");
    busy.push(Number(sample.busy) || 0);
    total.push(Number(sample.total) || 0);
    drawUsage(svg, busy.slice(-MAX_USAGE_POINTS), total.slice(-MAX_USAGE_POINTS));
    const now = document.getElementById("usage-now");
    if (now) now.textContent = Number(sample.busy).toFixed(1) + " of " + sample.total;
  }

  function onMigration(m) {
    const body = document.querySelector("#migrations tbody");
    if (!body) return;
    const row = el("tr");
    const jobCell = el("td");
    jobCell.append(el("a", { href: "/jobs/" + m.job }, String(m.job)));
    row.append(
      el("td", {}, (m.at || "").replace("T", " ").replace("Z", "")),
      jobCell,
      el("td", {}, m.task),
      el("td", {}, m.from),
      el("td", { class: "arrow" }, "→"),
      el("td", {}, m.to),
      el("td", {}, m.reason),
      el("td", { class: "num" }, m.frozen)
    );
    body.prepend(row);
    const empty = document.getElementById("no-migrations");
    if (empty) empty.remove();
    flash(row);
  }

  function listen() {
    // Pages without a form token (login, errors) are outside the dashboard proper.
    if (!window.EventSource || !csrf) return;
    const live = document.getElementById("live");
    const source = new EventSource("/events");
    const on = (name, handler) =>
      source.addEventListener(name, (e) => {
        try {
          handler(JSON.parse(e.data));
        } catch (err) {
          console.error("dashboard event", name, err);
        }
      });
    source.onopen = () => {
      if (live) { live.textContent = "live"; live.classList.add("on"); }
    };
    source.onerror = () => {
      if (live) { live.textContent = "reconnecting"; live.classList.remove("on"); }
    };
    on("job", onJob);
    on("job-removed", onJobRemoved);
    on("agent", onAgent);
    on("usage", onUsage);
    on("migration", onMigration);
    // Too many changes were missed: the page's rows are stale.
    on("lagged", () => window.location.reload());
  }

  listen();
})();

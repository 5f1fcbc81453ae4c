/// The dashboard's page, script and style, served by the server itself (nothing from the
/// internet), under a strict content security policy: no inline script or style.
enum DashboardAssets {
    static let html = """
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>DockerParallel</title>
        <link rel="stylesheet" href="/dashboard.css">
        <script src="/dashboard.js" defer></script>
        </head>
        <body>
        <header><h1>DockerParallel <span id="cluster"></span></h1><p id="server"></p></header>
        <form id="login" hidden>
          <label>Cluster password or API token <input id="token" type="password" autocomplete="off"></label>
          <button type="submit">Open</button>
          <p id="login-error" class="error"></p>
        </form>
        <main id="main" hidden>
          <section><h2>Throughput and latency</h2><svg id="chart" viewBox="0 0 600 120" preserveAspectRatio="none"><polyline id="line" points=""></polyline><polyline id="latency" points=""></polyline></svg>
            <p><span class="key throughput"></span> <span id="rate"></span> <span class="key dispatch"></span> <span id="latency-text"></span></p></section>
          <section><h2>Jobs</h2><div id="jobs"></div></section>
          <section><h2>Failed tasks</h2><div id="failures"><p class="quiet">None.</p></div></section>
          <section><h2>Workers</h2><p id="worker-summary"></p><table><thead><tr><th>worker</th><th>slots</th><th>running</th></tr></thead><tbody id="workers"></tbody></table></section>
        </main>
        </body>
        </html>
        """

    static let css = """
        body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
        h1 { font-size: 1.4em; margin: 0; } h2 { font-size: 1.1em; margin: 1.2em 0 .4em; }
        header p { color: #555; margin: .2em 0 1em; }
        .job { margin: .4em 0; } .job .name { font-family: monospace; }
        .bar { display: flex; height: 14px; background: #eee; border-radius: 3px; overflow: hidden; max-width: 600px; }
        .bar span { display: block; height: 100%; }
        .succeeded { background: #3a3; } .failed { background: #c33; } .cancelled { background: #999; } .running { background: #38c; }
        table { border-collapse: collapse; } td, th { padding: 2px 10px; text-align: left; border-bottom: 1px solid #eee; }
        #chart { width: 600px; height: 120px; background: #f8f8f8; } #line { fill: none; stroke: #38c; stroke-width: 2; }
        #latency { fill: none; stroke: #e80; stroke-width: 1.5; stroke-dasharray: 4 2; }
        .key { display: inline-block; width: 14px; height: 3px; vertical-align: middle; margin-left: .6em; }
        .key.throughput { background: #38c; } .key.dispatch { background: #e80; }
        pre { background: #f6f6f6; padding: .5em; max-width: 900px; overflow-x: auto; }
        .error { color: #c33; } .quiet { color: #777; }
        """

    static let javascript = """
        "use strict";
        const state = { token: null, samples: [], failedSeen: {} };
        const $ = (id) => document.getElementById(id);
        function text(tag, content, cls) { const e = document.createElement(tag); e.textContent = content; if (cls) e.className = cls; return e; }
        function duration(s) { s = Math.floor(s); if (s >= 3600) return Math.floor(s / 3600) + "h " + Math.floor(s % 3600 / 60) + "m"; if (s >= 60) return Math.floor(s / 60) + "m " + (s % 60) + "s"; return s + "s"; }
        async function api(path) {
          const response = await fetch(path, { headers: { "Authorization": "Bearer " + state.token } });
          if (response.status === 401) throw new Error("unauthorized");
          return response;
        }
        function render(report) {
          $("cluster").textContent = report.jobQueueName;
          let server = "up " + duration(report.uptime);
          if (report.firstStarted && report.restarts > 0) server += ", restarted " + report.restarts + (report.restarts === 1 ? " time" : " times") + " since " + new Date(report.firstStarted * 1000).toLocaleString();
          else if (report.firstStarted) server += ", never restarted since " + new Date(report.firstStarted * 1000).toLocaleString();
          $("server").textContent = server;
          const jobs = $("jobs"); jobs.replaceChildren();
          if (report.jobs.length === 0) jobs.append(text("p", "No jobs.", "quiet"));
          for (const job of report.jobs) {
            const done = job.succeeded + job.failed + job.cancelled;
            const row = document.createElement("div"); row.className = "job"; row.dataset.job = job.jobID;
            row.append(text("span", job.jobID, "name"), text("span", " " + done + "/" + job.total + " done, " + job.running + " running, " + job.failed + " failed", "progress"));
            const bar = document.createElement("div"); bar.className = "bar";
            for (const kind of ["succeeded", "failed", "cancelled", "running"]) {
              const part = document.createElement("span"); part.className = kind;
              part.style.width = (job.total ? 100 * job[kind] / job.total : 0) + "%"; bar.append(part);
            }
            row.append(bar); jobs.append(row);
            if (job.failed > 0 && state.failedSeen[job.jobID] !== job.failed) { state.failedSeen[job.jobID] = job.failed; loadFailures(job.jobID); }
          }
          const workers = $("workers"); workers.replaceChildren();
          let running = 0;
          for (const worker of report.workers) {
            running += worker.running;
            const tr = document.createElement("tr");
            tr.append(text("td", worker.name), text("td", String(worker.slots)), text("td", String(worker.running)));
            workers.append(tr);
          }
          $("worker-summary").textContent = report.workers.length + " worker process(es), " + report.workers.reduce((n, w) => n + w.slots, 0) + " slot(s), " + running + " task(s) running";
        }
        // A sample a second from the server: [time, tasks finished, mean dispatch latency,
        // mean commit latency] (seconds; null when nothing was measured that second).
        function addSample(sample) {
          const s = state.samples;
          if (s.length > 0 && s[s.length - 1][0] >= sample[0]) return;
          s.push(sample);
          while (s.length > 300) s.shift();
          drawChart();
        }
        function latency(seconds) { return seconds < 0.01 ? (seconds * 1000).toFixed(2) + " ms" : seconds < 1 ? (seconds * 1000).toFixed(0) + " ms" : seconds.toFixed(1) + " s"; }
        function drawChart() {
          const s = state.samples; if (s.length < 2) return;
          const rates = [], waits = [];
          for (let i = 1; i < s.length; i++) {
            rates.push(Math.max(0, (s[i][1] - s[i - 1][1]) / Math.max(0.001, s[i][0] - s[i - 1][0])));
            waits.push(s[i][2]);
          }
          const x = (i) => (i * 600 / Math.max(1, rates.length - 1)).toFixed(1);
          const top = Math.max(1, ...rates);
          $("line").setAttribute("points", rates.map((r, i) => x(i) + "," + (118 - 116 * r / top).toFixed(1)).join(" "));
          const measured = waits.filter((w) => w !== null && w !== undefined);
          const slowest = Math.max(0.001, ...measured);
          $("latency").setAttribute("points", waits.map((w, i) => w === null || w === undefined ? null : x(i) + "," + (118 - 116 * w / slowest).toFixed(1)).filter((p) => p).join(" "));
          $("rate").textContent = "throughput " + rates[rates.length - 1].toFixed(1) + " tasks/s now, peak " + top.toFixed(1);
          const last = s[s.length - 1];
          $("latency-text").textContent = measured.length === 0 ? "dispatch latency: no task dispatched yet"
            : "dispatch latency " + (last[2] === null ? "idle" : latency(last[2])) + " now, peak " + latency(slowest)
              + (last[3] === null ? "" : "; commit " + latency(last[3]));
        }
        async function loadFailures(jobID) {
          const response = await api("/api/v1/jobs/" + encodeURIComponent(jobID) + "/failures");
          const failures = await response.json();
          const box = $("failures");
          box.querySelectorAll("[data-job='" + CSS.escape(jobID) + "']").forEach((e) => e.remove());
          const quiet = box.querySelector(".quiet"); if (quiet) quiet.remove();
          for (const failure of failures) {
            const item = document.createElement("div"); item.dataset.job = jobID; item.className = "failure";
            item.append(text("p", jobID + " #" + (failure.index + 1) + ": " + (failure.error || failure.status)));
            item.append(text("pre", failure.lastLines));
            box.append(item);
          }
        }
        async function follow() {
          while (true) {
            try {
              const response = await api("/api/v1/events");
              const reader = response.body.getReader();
              const decoder = new TextDecoder();
              let buffered = "";
              while (true) {
                const { value, done } = await reader.read();
                if (done) break;
                buffered += decoder.decode(value, { stream: true });
                let end;
                while ((end = buffered.indexOf("\\n\\n")) >= 0) {
                  const event = buffered.slice(0, end); buffered = buffered.slice(end + 2);
                  const lines = event.split("\\n");
                  const data = lines.filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\\n");
                  if (!data) continue;
                  if (lines.includes("event: history")) { state.samples = JSON.parse(data); drawChart(); continue; }
                  if (lines.includes("event: sample")) { addSample(JSON.parse(data)); continue; }
                  render(JSON.parse(data));
                }
              }
            } catch (error) {
              if (error.message === "unauthorized") { showLogin("That password or token is not this cluster's."); return; }
            }
            await new Promise((resolve) => setTimeout(resolve, 1000));
          }
        }
        function showLogin(message) {
          $("main").hidden = true; $("login").hidden = false; $("login-error").textContent = message || "";
        }
        function start(token) {
          state.token = token; sessionStorage.setItem("dockerparallel-token", token);
          $("login").hidden = true; $("main").hidden = false; follow();
        }
        document.addEventListener("DOMContentLoaded", () => {
          $("login").addEventListener("submit", (event) => { event.preventDefault(); start($("token").value); });
          const fragment = new URLSearchParams(location.hash.slice(1));
          const token = fragment.get("token") || sessionStorage.getItem("dockerparallel-token");
          if (fragment.has("token")) history.replaceState(null, "", location.pathname);
          if (token) start(token); else showLogin();
        });
        """
}

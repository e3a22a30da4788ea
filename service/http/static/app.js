// The page: a form over POST /predict, and the answer drawn. No framework, no CDN.
"use strict";

const $ = (id) => document.getElementById(id);
// Pack labels are free text from an uploaded manifest: never markup in the page.
const escapeXml = (text) => String(text).replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
let recorded = null; // a Blob from the microphone and camera, sent as the video

function show(el, on) { el.hidden = !on; }

function setStatus(text) { $("status").textContent = text; }

function showError(message) {
  $("error").textContent = message;
  show($("error"), true);
}

async function loadPacks() {
  try {
    const r = await fetch("/packs");
    const body = await r.json();
    for (const p of body.packs) {
      const o = document.createElement("option");
      o.value = p.name;
      o.textContent = `${p.name} ${p.version} (${p.labels.join(", ")})`;
      o.selected = p.name === body.default_pack;
      $("pack").append(o);
    }
  } catch (e) {
    showError(`could not list the packs: ${e}`);
  }
}

function bar(label, value, top) {
  const row = document.createElement("div");
  row.className = "bar" + (top ? " top" : "");
  const pct = Math.round(value * 1000) / 10;
  row.innerHTML = `<span></span><div class="track"><div class="fill"></div></div><span></span>`;
  row.children[0].textContent = label;
  row.children[1].firstChild.style.width = `${Math.max(0, Math.min(100, pct))}%`;
  row.children[1].setAttribute("role", "meter");
  row.children[1].setAttribute("aria-label", label);
  row.children[1].setAttribute("aria-valuenow", String(pct));
  row.children[2].textContent = `${pct}%`;
  return row;
}

function drawScores(body) {
  const box = $("scores");
  box.replaceChildren();
  if (body.scores) {
    for (const [label, value] of Object.entries(body.scores)) {
      box.append(bar(label, value, label === body.label));
    }
  } else if (body.score !== null && body.score !== undefined) {
    box.textContent = `score ${body.score.toFixed(3)}`;
  }
}

function drawModalities(body) {
  const list = $("modalities");
  list.replaceChildren();
  for (const [name, m] of Object.entries(body.modalities)) {
    const li = document.createElement("li");
    li.className = m.present ? "present" : "absent";
    li.dataset.modality = name;
    li.textContent = m.present ? `${name}: used` : `${name}: not used (${m.reason})`;
    list.append(li);
  }
  const text = body.modalities.text;
  const said = text && text.details && text.details.transcript;
  show($("transcript"), Boolean(said));
  if (said) $("transcript").textContent = `Transcript: “${said}”`;
}

function drawTimeline(body) {
  const tl = body.timeline;
  const timed = tl ? tl.segments.filter((s) => s.start_s !== null) : [];
  show($("timeline-view"), timed.length > 0);
  if (!timed.length) return;
  const svg = $("chart");
  const W = svg.clientWidth || 800, H = 180, pad = 24;
  const end = tl.duration_s || timed[timed.length - 1].end_s;
  const x = (t) => pad + (W - 2 * pad) * (t / end);
  const y = (v) => H - pad - (H - 2 * pad) * v;
  const labels = Object.keys(timed.find((s) => s.scores)?.scores || {});
  const colours = ["#2a62c9", "#e07b00", "#1b7a43", "#b3261e", "#7b3fbf", "#6d4c41", "#c2185b"];
  let parts = [`<line x1="${pad}" y1="${H - pad}" x2="${W - pad}" y2="${H - pad}" stroke="#99a"/>`];
  for (const s of timed) {
    if (s.label === null) continue;
    const c = colours[labels.indexOf(s.label) % colours.length] || "#999";
    parts.push(`<rect x="${x(s.start_s)}" y="${pad}" width="${x(s.end_s) - x(s.start_s)}"
                height="${H - 2 * pad}" fill="${c}" opacity="0.12"/>`);
    labels.forEach((lab, i) => {
      const v = s.scores ? s.scores[lab] : 0;
      parts.push(`<line x1="${x(s.start_s)}" x2="${x(s.end_s)}" y1="${y(v)}" y2="${y(v)}"
                  stroke="${colours[i % colours.length]}" stroke-width="2"/>`);
    });
  }
  parts.push(`<text x="${W - pad}" y="${H - 6}" text-anchor="end" font-size="11">${end.toFixed(1)} s</text>`);
  labels.forEach((lab, i) => {  // the legend: each label in its colour
    parts.push(`<text x="${pad + i * 90}" y="16" font-size="12" fill="${colours[i % colours.length]}">${escapeXml(lab)}</text>`);
  });
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.innerHTML = parts.join("");
  const list = $("segments");
  list.replaceChildren();
  for (const s of timed) {
    const li = document.createElement("li");
    const what = s.label === null ? "nothing usable" : s.label;
    li.textContent = `${s.start_s.toFixed(1)}–${s.end_s.toFixed(1)} s: ${what}` +
      (s.text ? ` — “${s.text}”` : "");
    list.append(li);
  }
}

function render(body) {
  $("label").textContent = body.label === null ? "nothing usable" : body.label;
  $("who").textContent = `${body.pack.name} ${body.pack.version}, ` +
    `${body.missing_type ? body.missing_type.name : "no modality"}, ${Math.round(body.timings_ms.total)} ms`;
  drawScores(body);
  drawModalities(body);
  drawTimeline(body);
  show($("answer"), true);
}

async function send(event) {
  event.preventDefault();
  show($("error"), false);
  const form = new FormData();
  const text = $("text").value;
  if (text.trim()) form.append("text", text);
  if ($("audio").files[0]) form.append("audio", $("audio").files[0]);
  if ($("video").files[0]) form.append("video", $("video").files[0]);
  else if (recorded) form.append("video", recorded, "recording.webm");
  if ($("pack").value) form.append("pack", $("pack").value);
  if ($("timeline").checked) form.append("timeline", "true");
  if ([...form.keys()].every((k) => k === "pack" || k === "timeline")) {
    showError("Send some text, an audio or video file, or a recording.");
    return;
  }
  setStatus("Predicting…");
  $("send").disabled = true;
  try {
    const r = await fetch("/predict", { method: "POST", body: form });
    const body = await r.json();
    if (!r.ok) {
      show($("answer"), false);
      const e = body.error || {};
      showError(`${r.status} ${e.code || "error"}: ${e.message || JSON.stringify(body)}`);
      setStatus("");
      return;
    }
    render(body);
    setStatus("Done.");
  } catch (e) {
    showError(`the request failed: ${e}`);
    setStatus("");
  } finally {
    $("send").disabled = false;
  }
}

function wireDrop() {
  const drop = $("drop");
  const take = (file) => {
    if (!file) return;
    const target = file.type.startsWith("video/") ? $("video") : $("audio");
    const list = new DataTransfer();
    list.items.add(file);
    target.files = list.files;
    setStatus(`${file.name} ready to send as ${target.id}.`);
  };
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    take(e.dataTransfer.files[0]);
  });
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("audio").click(); }
  });
}

let recorder = null;
async function toggleRecording() {
  const button = $("record");
  if (recorder) { recorder.stop(); return; }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
    const chunks = [];
    recorder = new MediaRecorder(stream);
    recorder.ondataavailable = (e) => chunks.push(e.data);
    recorder.onstop = () => {
      recorded = new Blob(chunks, { type: recorder.mimeType || "video/webm" });
      stream.getTracks().forEach((t) => t.stop());
      show($("preview"), false);
      recorder = null;
      button.textContent = "Record microphone and camera";
      button.setAttribute("aria-pressed", "false");
      setStatus(`Recorded ${(recorded.size / 1024).toFixed(0)} kB: it is sent as the video.`);
    };
    $("preview").srcObject = stream;
    show($("preview"), true);
    $("preview").play();
    recorder.start();
    button.textContent = "Stop recording";
    button.setAttribute("aria-pressed", "true");
    setStatus("Recording…");
  } catch (e) {
    showError(`could not record: ${e}`);
  }
}

$("ask").addEventListener("submit", send);
$("record").addEventListener("click", toggleRecording);
wireDrop();
loadPacks();

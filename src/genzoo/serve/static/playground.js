// The playground: POST the form as JSON, read the server-sent events as they arrive, append each
// piece of text, then show the guardrail verdict and a rating form for the stored generation.
"use strict";
(function () {
  const form = document.getElementById("gen-form");
  if (!form) return;
  const out = document.getElementById("output");
  const status = document.getElementById("gen-status");
  const error = document.getElementById("gen-error");
  const verdict = document.getElementById("verdict");
  const verdictBody = document.getElementById("verdict-body");
  const rateForm = document.getElementById("rate-form");
  const genLink = document.getElementById("gen-link");
  const go = document.getElementById("generate");
  const stop = document.getElementById("stop");
  const token = document.querySelector('meta[name="csrf-token"]').content;
  let controller = null;

  function showError(message) {
    error.textContent = message;
    error.hidden = false;
    status.textContent = "The generation failed.";
  }

  function showVerdict(v) {
    verdictBody.textContent = "";
    for (const [key, value] of Object.entries(v)) {
      if (value === null || value === undefined || key === "text") continue;
      const row = document.createElement("div");
      const dt = document.createElement("dt");
      const dd = document.createElement("dd");
      dt.textContent = key;
      dd.textContent = typeof value === "object" ? JSON.stringify(value) : String(value);
      row.append(dt, dd);
      verdictBody.append(row);
    }
    verdict.hidden = false;
  }

  function finish(event) {
    const parts = [`Done: ${out.textContent.length} characters`];
    if (event.tokens !== undefined) parts.push(`${event.tokens} tokens`);
    if (event.finish_reason) parts.push(`finished by ${event.finish_reason}`);
    status.textContent = parts.join(", ") + "." + (event.note ? " " + event.note : "");
    if (event.guardrails) showVerdict(event.guardrails);
    if (event.generation_id !== null && event.generation_id !== undefined) {
      const id = Number(event.generation_id);
      rateForm.action = `/generations/${id}/feedback`;
      genLink.href = `/generations/${id}`;
      genLink.textContent = `generation #${id}`;
      rateForm.hidden = false;
    }
  }

  function handle(block) {
    const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
    if (!data || data === "[DONE]") return;
    let event;
    try { event = JSON.parse(data); } catch (e) { return; }
    if (event.error) showError(event.error.message || "The generation failed.");
    else if (typeof event.text === "string") out.textContent += event.text;
    else if (event.done) finish(event);
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const fields = new FormData(form);
    const body = Object.fromEntries(fields.entries());
    out.textContent = "";
    error.hidden = true;
    verdict.hidden = true;
    rateForm.hidden = true;
    status.textContent = "Generating…";
    out.setAttribute("aria-busy", "true");
    go.disabled = true;
    stop.disabled = false;
    controller = new AbortController();
    try {
      const response = await fetch("/playground/stream", {
        method: "POST", credentials: "same-origin", signal: controller.signal,
        headers: {"Content-Type": "application/json", "Accept": "text/event-stream", "X-CSRF-Token": token},
        body: JSON.stringify(body),
      });
      if (!response.ok) {
        let message = `The server answered ${response.status}.`;
        try { message = (await response.json()).error.message || message; } catch (err) { /* not JSON */ }
        showError(message);
        return;
      }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, {stream: true}).replace(/\r\n/g, "\n");
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          handle(buffer.slice(0, cut));
          buffer = buffer.slice(cut + 2);
        }
      }
      if (buffer.trim()) handle(buffer);
    } catch (err) {
      if (err.name === "AbortError") status.textContent = `Stopped after ${out.textContent.length} characters.`;
      else showError(`The connection to the server failed: ${err.message}`);
    } finally {
      out.setAttribute("aria-busy", "false");
      go.disabled = false;
      stop.disabled = true;
      controller = null;
    }
  });

  stop.addEventListener("click", () => { if (controller) controller.abort(); });
})();

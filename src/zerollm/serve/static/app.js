/* zerollm chat page: conversations in localStorage, streamed replies from /v1/chat/completions (SSE over
   fetch), a stop button (AbortController: the server cancels generation when the stream closes), and
   settings (model, temperature, max tokens, system prompt, API key). No build step, no dependencies. */
(function () {
  "use strict";
  const $ = function (id) { return document.getElementById(id); };
  const STORE = "zerollm.conversations", SETTINGS = "zerollm.settings";
  let convs = JSON.parse(localStorage.getItem(STORE) || "[]");
  let current = null, controller = null;

  function save() { localStorage.setItem(STORE, JSON.stringify(convs)); }
  function settings() {
    return { model: $("model").value, temperature: parseFloat($("temperature").value),
             max_tokens: parseInt($("max-tokens").value, 10), system: $("system-prompt").value,
             apiKey: $("api-key").value };
  }
  function saveSettings() { localStorage.setItem(SETTINGS, JSON.stringify(settings())); }
  function loadSettings() {
    const s = JSON.parse(localStorage.getItem(SETTINGS) || "{}");
    if (s.temperature !== undefined) $("temperature").value = s.temperature;
    if (s.max_tokens) $("max-tokens").value = s.max_tokens;
    if (s.system !== undefined) $("system-prompt").value = s.system;
    if (s.apiKey) $("api-key").value = s.apiKey;
    return s;
  }
  function headers() {
    const h = { "Content-Type": "application/json" }, key = $("api-key").value;
    if (key) h["Authorization"] = "Bearer " + key;
    return h;
  }
  function status(text) { $("status").textContent = text || ""; }

  async function loadModels(preferred) {
    try {
      const r = await fetch("/v1/models", { headers: headers() });
      const body = await r.json();
      if (!r.ok) throw new Error(body.error ? body.error.message : r.statusText);
      $("model").innerHTML = "";
      body.data.forEach(function (m) {
        const o = document.createElement("option"); o.value = o.textContent = m.id; $("model").appendChild(o);
      });
      if (preferred) $("model").value = preferred;
      status("");
    } catch (e) { status("cannot list models: " + e.message); }
  }

  function renderList() {
    const ul = $("conversations"); ul.innerHTML = "";
    convs.forEach(function (c) {
      const li = document.createElement("li"); if (c === current) li.className = "active";
      const span = document.createElement("span"); span.textContent = c.title || "New chat"; li.appendChild(span);
      const del = document.createElement("button"); del.textContent = "×"; del.title = "Delete";
      del.onclick = function (ev) { ev.stopPropagation(); convs = convs.filter(function (x) { return x !== c; });
        if (current === c) current = convs[0] || null; save(); renderList(); renderMessages(); };
      li.appendChild(del);
      li.onclick = function () { current = c; renderList(); renderMessages(); };
      ul.appendChild(li);
    });
  }
  function bubble(role, text) {
    const div = document.createElement("div"); div.className = "msg " + role;
    if (role === "assistant") div.innerHTML = window.renderMarkdown(text); else div.textContent = text;
    $("messages").appendChild(div); return div;
  }
  function renderMessages() {
    $("messages").innerHTML = "";
    if (!current) return;
    current.messages.forEach(function (m) { bubble(m.role, m.content); });
    $("messages").scrollTop = $("messages").scrollHeight;
  }
  function newChat() {
    current = { id: Date.now().toString(36), title: "", messages: [] };
    convs.unshift(current); save(); renderList(); renderMessages();
  }

  async function send(text) {
    if (!current) newChat();
    const s = settings(); saveSettings();
    current.messages.push({ role: "user", content: text });
    if (!current.title) current.title = text.slice(0, 40);
    save(); renderList(); bubble("user", text);
    const reply = { role: "assistant", content: "" };
    const div = bubble("assistant", "");
    div.classList.add("streaming");
    const msgs = (s.system ? [{ role: "system", content: s.system }] : []).concat(
      current.messages.map(function (m) { return { role: m.role, content: m.content }; }));
    controller = new AbortController();
    $("send").hidden = true; $("stop").hidden = false; status("generating…");
    let finish = null;
    try {
      const r = await fetch("/v1/chat/completions", { method: "POST", headers: headers(), signal: controller.signal,
        body: JSON.stringify({ model: s.model, messages: msgs, temperature: s.temperature, max_tokens: s.max_tokens,
                               stream: true }) });
      if (!r.ok) { const b = await r.json().catch(function () { return {}; });
        throw new Error(b.error ? b.error.message : r.status + " " + r.statusText); }
      const reader = r.body.getReader(), decoder = new TextDecoder("utf-8");
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true });  // keeps multi-byte characters (日本語) whole
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const event = buf.slice(0, cut); buf = buf.slice(cut + 2);
          const data = event.split("\n").filter(function (l) { return l.startsWith("data: "); })
                            .map(function (l) { return l.slice(6); }).join("\n");
          if (!data || data === "[DONE]") continue;
          const chunk = JSON.parse(data);
          if (chunk.error) throw new Error(chunk.error.message);
          const ch = chunk.choices && chunk.choices[0];
          if (!ch) continue;
          if (ch.delta && ch.delta.content) {
            reply.content += ch.delta.content;
            div.innerHTML = window.renderMarkdown(reply.content);
            $("messages").scrollTop = $("messages").scrollHeight;
          }
          if (ch.finish_reason) finish = ch.finish_reason;
        }
      }
      status(finish === "length" ? "stopped: max tokens reached" : "");
    } catch (e) {
      if (e.name === "AbortError") status("stopped");
      else { status(""); bubble("error", "Error: " + e.message); }
    } finally {
      div.classList.remove("streaming"); div.dataset.done = "1";
      if (reply.content) { current.messages.push(reply); save(); }
      controller = null; $("send").hidden = false; $("stop").hidden = true;
    }
  }

  $("composer").addEventListener("submit", function (ev) {
    ev.preventDefault();
    const text = $("input").value.trim();
    if (!text || controller) return;
    $("input").value = ""; send(text);
  });
  $("input").addEventListener("keydown", function (ev) {
    // Enter sends; but not while an IME (Japanese input) is composing, where Enter confirms the conversion
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing && ev.keyCode !== 229) {
      ev.preventDefault(); $("composer").requestSubmit();
    }
  });
  $("stop").addEventListener("click", function () { if (controller) controller.abort(); });
  $("new-chat").addEventListener("click", newChat);
  ["temperature", "max-tokens", "system-prompt", "api-key"].forEach(function (id) { $(id).addEventListener("change", saveSettings); });
  $("api-key").addEventListener("change", function () { loadModels(); });

  const s = loadSettings();
  current = convs[0] || null;
  renderList(); renderMessages(); loadModels(s.model);
})();

/* A tiny, safe markdown renderer: the text is HTML-escaped first, then a small subset of markdown is turned
   into tags (fenced code, inline code, headings, bold, italic, lists, links to http(s) only, paragraphs).
   Nothing from the model is ever inserted as raw HTML. Works on partial text while a reply streams. */
(function () {
  "use strict";
  function escapeHtml(s) {
    return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
            .replace(/"/g, "&quot;").replace(/'/g, "&#39;");
  }
  function inline(s) {  // s is already escaped
    const codes = [];
    s = s.replace(/`([^`\n]+)`/g, function (_, c) { codes.push(c); return "\u0000" + (codes.length - 1) + "\u0000"; });
    s = s.replace(/\*\*([^*\n]+)\*\*/g, "<strong>$1</strong>");
    s = s.replace(/(^|[^*])\*([^*\n]+)\*/g, "$1<em>$2</em>");
    s = s.replace(/\[([^\]\n]+)\]\((https?:\/\/[^\s)]+)\)/g, '<a href="$2" target="_blank" rel="noopener noreferrer">$1</a>');
    return s.replace(/\u0000(\d+)\u0000/g, function (_, i) { return "<code>" + codes[+i] + "</code>"; });
  }
  function render(text) {
    const parts = escapeHtml(text).split(/^```/m);  // even = prose, odd = code (an open fence streams as code)
    let html = "";
    parts.forEach(function (part, i) {
      if (i % 2 === 1) {
        const nl = part.indexOf("\n");
        const body = nl >= 0 ? part.slice(nl + 1) : "";
        html += "<pre><code>" + body.replace(/\n$/, "") + "</code></pre>";
        return;
      }
      let list = null;
      const close = function () { if (list) { html += "</" + list + ">"; list = null; } };
      part.split(/\n{2,}/).forEach(function (block) {
        const lines = block.split("\n").filter(function (l) { return l.trim() !== ""; });
        let para = [];
        const flush = function () { if (para.length) { html += "<p>" + para.map(inline).join("<br>") + "</p>"; para = []; } };
        lines.forEach(function (line) {
          let m;
          if ((m = line.match(/^(#{1,6})\s+(.*)$/))) {
            flush(); close(); const n = m[1].length; html += "<h" + n + ">" + inline(m[2]) + "</h" + n + ">";
          } else if ((m = line.match(/^\s*[-*+]\s+(.*)$/)) || (m = line.match(/^\s*\d+[.)]\s+(.*)$/))) {
            flush(); const kind = /^\s*\d/.test(line) ? "ol" : "ul";
            if (list !== kind) { close(); html += "<" + kind + ">"; list = kind; }
            html += "<li>" + inline(m[1]) + "</li>";
          } else { close(); para.push(line); }
        });
        flush(); close();
      });
    });
    return html;
  }
  window.renderMarkdown = render;
  window.escapeHtml = escapeHtml;
})();

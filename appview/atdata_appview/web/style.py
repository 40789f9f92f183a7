"""The page's stylesheet and its one small script (inlined, allowed by a per-response nonce)."""

CSS = """
:root { --ink: #1d2433; --muted: #5b6478; --line: #dde2ea; --accent: #2456d6; --bg: #f6f8fb; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif;
       color: var(--ink); background: var(--bg); }
header { background: #14213d; color: #fff; padding: 14px 24px; }
header a { color: #fff; text-decoration: none; font-weight: 700; font-size: 18px; }
header span { color: #b8c4e0; margin-left: 10px; font-size: 13px; }
main { max-width: 1080px; margin: 0 auto; padding: 20px 24px 48px; }
form.search { display: flex; gap: 8px; margin-bottom: 18px; }
form.search input[type=search] { flex: 1; padding: 9px 12px; font-size: 16px;
       border: 1px solid var(--line); border-radius: 6px; }
button { padding: 9px 16px; font-size: 15px; border: 0; border-radius: 6px;
         background: var(--accent); color: #fff; cursor: pointer; }
.layout { display: grid; grid-template-columns: 220px 1fr; gap: 24px; }
aside h3 { font-size: 13px; text-transform: uppercase; color: var(--muted); margin: 14px 0 6px; }
aside ul { list-style: none; margin: 0; padding: 0; }
aside li a { display: flex; justify-content: space-between; padding: 2px 6px; border-radius: 4px;
             color: var(--ink); text-decoration: none; }
aside li a.on { background: #dfe7fb; font-weight: 600; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px;
        margin-bottom: 12px; }
.card h2 { margin: 0 0 4px; font-size: 18px; }
.card h2 a { color: var(--accent); text-decoration: none; }
.meta { color: var(--muted); font-size: 13px; }
.tag { display: inline-block; background: #eef1f6; border-radius: 10px; padding: 0 8px;
       margin: 2px 4px 2px 0; font-size: 12px; }
.badge { display: inline-block; border-radius: 10px; padding: 1px 9px; font-size: 12px;
         font-weight: 600; vertical-align: middle; background: #e4ecfb; color: #1e3a8a; }
.badge.family-science-alt-dataset { background: #fdf0d5; color: #7c4a03; }
.uri, code, pre { font-family: ui-monospace, "SFMono-Regular", Menlo, monospace; font-size: 13px; }
.uri { word-break: break-all; }
table { border-collapse: collapse; width: 100%; background: #fff; margin: 6px 0 18px; }
th, td { text-align: left; border-bottom: 1px solid var(--line); padding: 6px 8px;
         vertical-align: top; }
th { background: #eef1f6; font-size: 13px; }
td.num { white-space: nowrap; }
td.hash { font-family: ui-monospace, Menlo, monospace; font-size: 12px; word-break: break-all; }
pre { background: #0f172a; color: #e2e8f0; padding: 12px 14px; border-radius: 8px;
      overflow-x: auto; }
.snippet { position: relative; }
.snippet button { position: absolute; top: 8px; right: 8px; padding: 4px 10px; font-size: 12px; }
.empty { color: var(--muted); padding: 24px 0; }
.error { background: #fde8e8; border: 1px solid #f5b5b5; padding: 10px 14px; border-radius: 6px; }
nav.pages { margin-top: 12px; }
@media (max-width: 760px) { .layout { grid-template-columns: 1fr; } }
"""

# Copies the text of the <pre> next to a "copy" button (works without it: the text is selectable).
SCRIPT = """
document.querySelectorAll('.snippet button').forEach(function (b) {
  b.addEventListener('click', function () {
    var text = b.parentElement.querySelector('pre').innerText;
    navigator.clipboard.writeText(text).then(function () { b.textContent = 'copied'; });
  });
});
"""

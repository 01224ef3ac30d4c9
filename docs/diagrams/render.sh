#!/usr/bin/env bash
# Render every docs/diagrams/*.mmd to .svg and .png with mermaid.js in headless chromium.
#
#   MERMAID_JS=/tmp/mmd/node_modules/mermaid/dist/mermaid.min.js docs/diagrams/render.sh
#
# Needs: chromium (Debian: apt-get install -y chromium), python3, and mermaid.min.js from
# `npm install mermaid` in a folder OUTSIDE the repository (MERMAID_JS points at it; the
# default installs it into $TMPDIR/sproxxo-mermaid if npm is available).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "${WORK}"' EXIT
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
MERMAID_JS="${MERMAID_JS:-${TMPDIR:-/tmp}/sproxxo-mermaid/node_modules/mermaid/dist/mermaid.min.js}"

if [[ ! -f "${MERMAID_JS}" ]]; then
  prefix="${TMPDIR:-/tmp}/sproxxo-mermaid"
  mkdir -p "${prefix}"
  (cd "${prefix}" && npm init -y >/dev/null && npm install --no-audit --no-fund mermaid@11 >/dev/null)
fi

chrome() {
  "${CHROMIUM}" --headless --no-sandbox --disable-gpu --disable-background-networking \
    --disable-component-update --no-first-run --virtual-time-budget=15000 "$@" 2>/dev/null
}

for source in "${HERE}"/*.mmd; do
  name="$(basename "${source}" .mmd)"
  cp "${MERMAID_JS}" "${WORK}/mermaid.min.js"
  # 1. Render to an SVG string; the page puts it, escaped, into <pre id="out">.
  python3 - "${source}" "${WORK}/render.html" <<'PY'
import html, json, sys
src = open(sys.argv[1], encoding="utf-8").read()
page = f"""<!doctype html><html><head><meta charset="utf-8">
<script src="mermaid.min.js"></script></head><body><pre id="out"></pre><script>
mermaid.initialize({{startOnLoad: false, htmlLabels: false, theme: "default", securityLevel: "strict",
  fontFamily: "DejaVu Sans, Arial, sans-serif", flowchart: {{htmlLabels: false}}}});
mermaid.render("d", {json.dumps(src)}).then(r => {{
  document.getElementById("out").textContent = r.svg; }})
  .catch(e => {{ document.getElementById("out").textContent = "ERROR " + e; }});
</script></body></html>"""
open(sys.argv[2], "w", encoding="utf-8").write(page)
PY
  chrome --dump-dom "file://${WORK}/render.html" >"${WORK}/dom.html"
  # 2. Extract the SVG, give it a white background, and write a page sized to it.
  python3 - "${WORK}/dom.html" "${HERE}/${name}.svg" "${WORK}/png.html" "${WORK}/size" <<'PY'
import html, re, sys
dom = open(sys.argv[1], encoding="utf-8").read()
match = re.search(r'<pre id="out">(.*?)</pre>', dom, re.S)
svg = html.unescape(match.group(1)) if match else ""
if not svg.startswith("<svg"):
    sys.exit(f"mermaid failed: {svg[:400]}")
head, sep, rest = svg.partition(">")
if 'style="' in head:
    head = head.replace('style="', 'style="background-color: white; ', 1)
else:
    head += ' style="background-color: white"'
svg = head + sep + rest
svg = re.sub(r"<br\s*>", "<br/>", svg)
open(sys.argv[2], "w", encoding="utf-8").write(svg + "\n")
box = re.search(r'viewBox="[-\d.]+ [-\d.]+ ([\d.]+) ([\d.]+)"', svg)
width, height = (float(box.group(1)), float(box.group(2))) if box else (1600.0, 1000.0)
scale = 2.0 if width < 1400 else 1.5
w, h = int(width * scale) + 40, int(height * scale) + 40
open(sys.argv[3], "w", encoding="utf-8").write(
    '<!doctype html><html><body style="margin:20px;background:white">'
    f'<img src="file://{sys.argv[2]}" width="{int(width * scale)}" height="{int(height * scale)}">'
    "</body></html>")
open(sys.argv[4], "w").write(f"{w},{h}")
PY
  # 3. Screenshot the page at the SVG's size (scaled up for legibility).
  chrome --screenshot="${HERE}/${name}.png" --window-size="$(cat "${WORK}/size")" \
    --hide-scrollbars "file://${WORK}/png.html" >/dev/null
  echo "rendered ${name}.svg and ${name}.png"
done

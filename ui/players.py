"""Side-by-side video players that play, pause, seek, loop and zoom together, plus a wipe and a
difference heat map between any two chains.

The players are plain HTML5 <video> elements inside one `gr.HTML`; a small script attached with
`js_on_load` keeps them in step (media events do not bubble, so it listens in the capture phase
on the container) and drives a shared play/pause button, frame steps and a scrub bar.

* One clock: the first player is the master. Videos do not use the `loop` attribute (each
  element would wrap on its own and drift apart after the first pass); when the master ends,
  every player is paused, put back to 0, and all start together once every seek is done. While
  playing, a per-animation-frame check nudges a follower's playback rate when it drifts by an
  eighth of a frame, and when one is half a frame off (a slow decoder, e.g. a 2048x1280 clip on
  a busy CPU) everyone is paused, aligned on the master's time and restarted together.
* Synchronised zoom: drag a box on any player; every player (and the wipe) shows the same region
  of the scene, scaled with a CSS transform, so each shows its own decoded resolution. Drag again
  inside a zoomed view to zoom further; "Reset zoom" or a double click goes back.
* Wipe: two chains picked in the controls, stacked in one frame at the same display size; the
  slider moves the border (left: first chain, right: second). They are synchronised players too.
* Size: a player is never shown wider than twice its native width (a 512x320 clip is not blown
  up to 1150 px); every player has a fullscreen button.

`build_compare_panel` adds the difference heat map (computed in `core.compare`) under them.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .figures import chain_color

MAX_UPSCALE = 2  # a player is at most this many times its native width


@dataclass(frozen=True)
class Player:
    chain: str
    path: Path
    width: int
    height: int
    fps: float
    caption: str = ""


def file_url(path: Path) -> str:
    """Relative URL gradio serves an allowed file under (relative, so --root-path works)."""
    return "gradio_api/file=" + quote(str(Path(path).resolve()))


_STYLE = """<style>
.players .vwrap { position: relative; overflow: hidden; border-radius: 8px; background: #000; cursor: crosshair; }
.players .vwrap video { width: 100%; height: 100%; display: block; border-radius: 0; transform-origin: 0 0; }
.players .zoom-box { position: absolute; border: 2px dashed #facc15; background: rgba(250,204,21,.15);
  pointer-events: none; display: none; }
.players .wipe .vwrap video { position: absolute; left: 0; top: 0; object-fit: fill; }
.players .wipe .wipe-b { clip-path: inset(0 0 0 50%); }
.players .wipe-line { position: absolute; top: 0; bottom: 0; left: 50%; width: 2px; background: #facc15;
  pointer-events: none; }
.players .look-controls { display: flex; gap: 8px; align-items: center; flex-wrap: wrap; margin: 6px 0 10px; }
.players .look-controls select, .players .look-controls button { padding: 3px 8px; border-radius: 6px;
  border: 1px solid #cbd5e1; background: #f8fafc; }
.players figure.player button.fs { float: right; border: 1px solid #cbd5e1; border-radius: 6px; padding: 0 6px;
  background: #f8fafc; cursor: pointer; font-size: 0.85em; }
.players figure.player:fullscreen { background: #000; display: flex; flex-direction: column; justify-content: center; }
.players figure.player:fullscreen .vwrap { max-height: 95vh; }
</style>"""


def players_html(players: list[Player], note: str = "") -> str:
    if not players:
        msg = html.escape(note or "Results appear here, one player per chain, as each chain finishes.")
        return f'<div class="players-empty">{msg}</div>'
    fps = players[0].fps
    aspect = f"{players[0].width} / {players[0].height}" if players[0].height else "16 / 10"
    cells = []
    for k, p in enumerate(players):
        color = chain_color(k)
        cap = f' style="max-width:{MAX_UPSCALE * p.width}px"' if p.width else ""
        cells.append(
            f'<figure class="player" data-chain="{html.escape(p.chain)}"{cap}>'
            f'<div class="vwrap" style="aspect-ratio:{aspect}">'
            f'<video class="sync" src="{html.escape(file_url(p.path))}" muted playsinline preload="auto" '
            f'data-fps="{p.fps:g}" data-width="{p.width}" data-height="{p.height}"></video>'
            '<div class="zoom-box"></div></div>'
            f'<figcaption><span class="swatch" style="background:{color}"></span>'
            f'<b>{html.escape(p.chain)}</b> <span class="dim">{p.width}x{p.height}'
            f'{" · " + html.escape(p.caption) if p.caption else ""}</span>'
            '<button class="fs" data-action="fullscreen" title="Show this player full screen">Full screen</button>'
            '</figcaption></figure>'
        )
    options = "".join(f'<option value="{html.escape(file_url(p.path))}">{html.escape(p.chain)}</option>'
                      for p in players)
    second = 1 if len(players) > 1 else 0
    wipe = (
        f'<figure class="player wipe" hidden style="max-width:{MAX_UPSCALE * max(p.width for p in players)}px">'
        f'<div class="vwrap" style="aspect-ratio:{aspect}">'
        # the two wipe <video> elements are created when the wipe is first shown: until then the
        # panel holds exactly one video per chain
        '<div class="wipe-line"></div><div class="zoom-box"></div></div>'
        '<figcaption class="wipe-caption"></figcaption></figure>'
    )
    controls = (
        '<div class="sync-controls">'
        '<button data-action="playpause" title="Play or pause all">▶ / ❚❚</button>'
        '<button data-action="prev" title="One frame back">◀ frame</button>'
        '<button data-action="next" title="One frame forward">frame ▶</button>'
        '<button data-action="restart" title="Back to the first frame">⟲</button>'
        '<input class="scrub" type="range" min="0" max="1000" value="0" title="Seek all players">'
        f'<span class="timecode">0.00 s</span><span class="dim">{len(players)} chain(s) · {fps:g} fps</span>'
        '</div>'
        '<div class="look-controls">'
        '<span class="dim">Zoom: drag a box on any player.</span>'
        '<button data-action="unzoom" title="Show the whole frame again">Reset zoom</button>'
        '<span class="dim">Wipe</span>'
        f'<select class="wipe-a-sel" title="Left of the border">{options}</select>'
        f'<select class="wipe-b-sel" title="Right of the border">'
        f'{_select_nth(options, second)}'
        '</select>'
        '<input class="wipe-pos" type="range" min="0" max="100" value="50" title="Move the border">'
        '<button data-action="wipe" title="Show or hide the wipe between the two chains">Show wipe</button>'
        '</div>'
    )
    extra = f'<div class="dim players-note">{html.escape(note)}</div>' if note else ""
    return (f'{_STYLE}<div class="players" data-fps="{fps:g}">{controls}<div class="player-grid">{"".join(cells)}'
            f'{wipe}</div>{extra}</div>')


def _select_nth(options: str, n: int) -> str:
    """Mark the n-th <option> selected."""
    parts = options.split("<option ")
    parts[n + 1] = "selected " + parts[n + 1]
    return "<option ".join(parts)


SYNC_JS = r"""
const all = () => Array.from(element.querySelectorAll('video.sync')).filter(v => v.getAttribute('src'));
const vids = all;
const master = () => all()[0];
const isVid = (e) => e.target && e.target.tagName === 'VIDEO';
const fpsOf = () => { const r = element.querySelector('.players'); return r ? parseFloat(r.dataset.fps) || 10 : 10; };
const atEnd = (v) => v.ended || (v.duration && v.currentTime >= v.duration - 1e-3);
let raf = null, restarting = false;
function settle(vs) {  // resolves when no player is seeking any more
  return new Promise(res => { const chk = () => vs.some(v => v.seeking) ? requestAnimationFrame(chk) : res(); chk(); });
}
function hold(t) {  // pause every player, align them on t, start them together (the one clock)
  restarting = true; const vs = all();
  vs.forEach(v => { v.pause(); v.playbackRate = 1; if (Math.abs(v.currentTime - t) > 1e-3) v.currentTime = t; });
  settle(vs).then(() => Promise.all(vs.map(v => v.play().catch(() => {}))))
    .then(() => { restarting = false; startFollow(); });
}
function follow() {
  const m = master(); if (!m || restarting) { raf = null; return; }
  if (m.paused) { raf = null; return; }
  const f = 1 / fpsOf(); const vs = all();
  // a follower half a frame off (slow decoder, late start) stops everyone until it is back in step
  if (vs.some(v => v !== m && (v.seeking || Math.abs(v.currentTime - m.currentTime) > f / 2))) { raf = null; hold(m.currentTime); return; }
  vs.forEach(v => { if (v === m || v.paused) return; const d = v.currentTime - m.currentTime;
    v.playbackRate = Math.abs(d) > f / 8 ? (d > 0 ? 0.9 : 1.1) : 1; });
  raf = requestAnimationFrame(follow);
}
const startFollow = () => { if (!raf) raf = requestAnimationFrame(follow); };
const restartAll = () => hold(0);  // the master ended: every player back to 0, started together
element.addEventListener('play', (e) => { if (!isVid(e) || restarting) return;
  all().forEach(v => { if (v !== e.target && v.paused && !atEnd(e.target)) { v.currentTime = e.target.currentTime; v.play().catch(() => {}); } });
  startFollow(); }, true);
element.addEventListener('pause', (e) => { if (!isVid(e) || restarting || atEnd(e.target)) return;
  all().forEach(v => { if (v !== e.target && !v.paused) v.pause(); }); }, true);
element.addEventListener('ended', (e) => { if (!isVid(e) || restarting) return;
  if (e.target === master()) restartAll(); }, true);
element.addEventListener('seeked', (e) => { if (!isVid(e) || restarting) return; const m = master();
  if (!m.paused) return;  // while playing, the follower loop keeps them together
  all().forEach(v => { if (v !== e.target && Math.abs(v.currentTime - e.target.currentTime) > 0.04) v.currentTime = e.target.currentTime; }); }, true);
element.addEventListener('timeupdate', (e) => { if (!isVid(e)) return; const v = e.target;
  if (master() !== v || !v.duration) return;
  const s = element.querySelector('input.scrub'); if (s && document.activeElement !== s) s.value = Math.round(1000 * v.currentTime / v.duration);
  const tc = element.querySelector('.timecode'); if (tc) tc.textContent = v.currentTime.toFixed(2) + ' s'; }, true);

// ---- synchronised zoom: z = top-left (x, y) of the shown region in scene units (0-1) and scale s
let zoom = {x: 0, y: 0, s: 1};
function applyZoom() {
  element.querySelectorAll('.vwrap video').forEach(v => {
    v.style.transform = zoom.s === 1 ? '' : `scale(${zoom.s}) translate(${-zoom.x * 100}%, ${-zoom.y * 100}%)`; });
  const r = element.querySelector('.players'); if (r) r.dataset.zoom = `${zoom.x.toFixed(4)},${zoom.y.toFixed(4)},${zoom.s.toFixed(4)}`;
}
element.zoomTo = (x, y, s) => { s = Math.max(1, Math.min(16, s)); zoom = {x: Math.max(0, Math.min(1 - 1 / s, x)), y: Math.max(0, Math.min(1 - 1 / s, y)), s}; applyZoom(); };
let drag = null;
const rel = (wrap, e) => { const r = wrap.getBoundingClientRect(); return [Math.max(0, Math.min(1, (e.clientX - r.left) / r.width)), Math.max(0, Math.min(1, (e.clientY - r.top) / r.height))]; };
element.addEventListener('mousedown', (e) => { const wrap = e.target.closest && e.target.closest('.vwrap'); if (!wrap || e.button !== 0) return;
  e.preventDefault(); drag = {wrap, p0: rel(wrap, e), box: wrap.querySelector('.zoom-box')}; }, true);
element.addEventListener('mousemove', (e) => { if (!drag) return; const p = rel(drag.wrap, e), b = drag.box; if (!b) return;
  const [u0, v0] = drag.p0; b.style.display = 'block';
  b.style.left = 100 * Math.min(u0, p[0]) + '%'; b.style.top = 100 * Math.min(v0, p[1]) + '%';
  b.style.width = 100 * Math.abs(p[0] - u0) + '%'; b.style.height = 100 * Math.abs(p[1] - v0) + '%'; }, true);
window.addEventListener('mouseup', (e) => { if (!drag) return; const d = drag; drag = null; if (d.box) d.box.style.display = 'none';
  const p = rel(d.wrap, e), [u0, v0] = d.p0; const w = Math.abs(p[0] - u0), h = Math.abs(p[1] - v0);
  if (Math.max(w, h) < 0.02) return;  // a click, not a box
  const x = zoom.x + Math.min(u0, p[0]) / zoom.s, y = zoom.y + Math.min(v0, p[1]) / zoom.s;
  element.zoomTo(x, y, zoom.s / Math.max(w, h)); });
element.addEventListener('dblclick', (e) => { if (e.target.closest && e.target.closest('.vwrap')) element.zoomTo(0, 0, 1); }, true);

// ---- wipe between two chains
function setWipe(pos) { const f = element.querySelector('figure.wipe'); if (!f || !f.querySelector('.wipe-b')) return;
  f.querySelector('.wipe-b').style.clipPath = `inset(0 0 0 ${pos}%)`; f.querySelector('.wipe-line').style.left = pos + '%'; }
function loadWipe() { const f = element.querySelector('figure.wipe'); if (!f || f.hidden) return;
  if (!f.querySelector('video')) { const wrap = f.querySelector('.vwrap');
    ['wipe-a', 'wipe-b'].forEach(c => { const v = document.createElement('video'); v.className = 'sync ' + c;
      v.muted = true; v.playsInline = true; v.preload = 'auto'; wrap.insertBefore(v, f.querySelector('.wipe-line')); });
    setWipe((element.querySelector('input.wipe-pos') || {value: 50}).value); }
  const a = element.querySelector('.wipe-a-sel'), b = element.querySelector('.wipe-b-sel'), m = master();
  [[f.querySelector('.wipe-a'), a.value], [f.querySelector('.wipe-b'), b.value]].forEach(([v, src]) => {
    if (v.getAttribute('src') !== src) { v.setAttribute('src', src);
      v.addEventListener('loadeddata', () => { v.currentTime = m.currentTime; if (!m.paused) v.play().catch(() => {}); }, {once: true}); } });
  f.querySelector('.wipe-caption').textContent = `wipe: ${a.selectedOptions[0].text} | ${b.selectedOptions[0].text}`;
  applyZoom(); }
element.addEventListener('change', (e) => { if (e.target.matches && e.target.matches('.wipe-a-sel, .wipe-b-sel')) loadWipe(); }, true);

element.addEventListener('click', (e) => { const b = e.target.closest('[data-action]'); if (!b) return;
  const vs = all(); const a = b.dataset.action;
  if (a === 'fullscreen') { const f = b.closest('figure'); if (f && f.requestFullscreen) f.requestFullscreen().catch(() => {}); return; }
  if (a === 'unzoom') { element.zoomTo(0, 0, 1); return; }
  if (a === 'wipe') { const f = element.querySelector('figure.wipe'); if (!f) return; f.hidden = !f.hidden;
    b.textContent = f.hidden ? 'Show wipe' : 'Hide wipe';
    if (f.hidden) f.querySelectorAll('video').forEach(v => v.remove()); else loadWipe(); return; }
  if (!vs.length) return;
  if (a === 'playpause') { const play = vs[0].paused; if (play) { vs.forEach(v => v.play().catch(() => {})); startFollow(); } else vs.forEach(v => v.pause()); }
  else if (a === 'restart') { vs.forEach(v => { v.currentTime = 0; }); }
  else { const d = (a === 'next' ? 1 : -1) / fpsOf(); const t = vs[0].currentTime + d;
    vs.forEach(v => { v.pause(); v.currentTime = Math.max(0, Math.min((v.duration || 0) - 1e-3, t)); }); }
});
element.addEventListener('input', (e) => { if (!e.target.matches) return;
  if (e.target.matches('input.wipe-pos')) { setWipe(e.target.value); return; }
  if (!e.target.matches('input.scrub')) return;
  const vs = all(); if (!vs.length || !vs[0].duration) return; const t = vs[0].duration * e.target.value / 1000;
  vs.forEach(v => { v.pause(); v.currentTime = t; }); }, true);
"""


# --------------------------------------------------------------------------- difference heat map


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-.")[:60] or "chain"


def build_compare_panel(studio: Any, results_state: Any, trigger: Any) -> dict[str, Any]:
    """A "Difference heat map" accordion under the players: pick two chains of the shown run;
    `Studio.difference_video` writes the per-frame |A - B| heat map next to the run's videos and
    it plays here. The chain lists follow `trigger`'s change event (the results table: it changes with
    every chain and run). Returns the components by name."""
    import gradio as gr

    from core.compare import HEAT_MAX
    from core.errors import StudioError

    with gr.Accordion("Difference heat map between two chains", open=False, elem_id="diff-panel"):
        with gr.Row():
            a = gr.Dropdown([], label="Chain A", elem_id="diff-a")
            b = gr.Dropdown([], label="Chain B", elem_id="diff-b")
            go = gr.Button("Show difference", elem_id="diff-btn", scale=0)
        video = gr.Video(label="|A − B| per frame", elem_id="diff-video", autoplay=True, loop=True, interactive=False)
        info = gr.Markdown(elem_id="diff-info")

    def choices(state):
        names = list((state or {}).get("chains", {}))
        return (gr.update(choices=names, value=names[0] if names else None),
                gr.update(choices=names, value=names[1] if len(names) > 1 else (names[0] if names else None)))

    def show(state, ca, cb):
        chains = (state or {}).get("chains", {})
        if ca not in chains or cb not in chains:
            raise gr.Error("Pick two chains of the shown run.", print_exception=False)
        pa, pb = Path(chains[ca]["video"]), Path(chains[cb]["video"])
        out = pa.parent / f"diff-{_slug(ca)}-vs-{_slug(cb)}.mp4"
        try:
            d = studio.difference_video(pa, pb, out)
        except StudioError as exc:
            raise gr.Error(str(exc), print_exception=False)
        w, h = d.size
        per = ", ".join(f"{v:.1f}" for v in d.mean_abs)
        return str(out), (f"At {w}x{h} (the smaller clip's size); colour: black 0 → yellow {HEAT_MAX:g}+ grey "
                          f"levels. Mean |A − B| per frame: {per}.")

    trigger.change(choices, [results_state], [a, b], queue=False)
    go.click(show, [results_state, a, b], [video, info], concurrency_id="diff", concurrency_limit=2)
    return {"a": a, "b": b, "button": go, "video": video, "info": info}

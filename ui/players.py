"""Side-by-side video players that play, pause and seek together.

The players are plain HTML5 <video> elements inside one `gr.HTML`; a small script attached with
`js_on_load` keeps them in step (media events do not bubble, so it listens in the capture phase
on the container) and drives a shared play/pause button, frame steps and a scrub bar.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from .figures import chain_color


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


def players_html(players: list[Player], note: str = "") -> str:
    if not players:
        msg = html.escape(note or "Results appear here, one player per chain, as each chain finishes.")
        return f'<div class="players-empty">{msg}</div>'
    fps = players[0].fps
    cells = []
    for k, p in enumerate(players):
        color = chain_color(k)
        cells.append(
            f'<figure class="player" data-chain="{html.escape(p.chain)}">'
            f'<video class="sync" src="{html.escape(file_url(p.path))}" muted loop playsinline preload="auto" '
            f'data-fps="{p.fps:g}"></video>'
            f'<figcaption><span class="swatch" style="background:{color}"></span>'
            f'<b>{html.escape(p.chain)}</b> <span class="dim">{p.width}x{p.height}'
            f'{" · " + html.escape(p.caption) if p.caption else ""}</span></figcaption></figure>'
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
    )
    extra = f'<div class="dim players-note">{html.escape(note)}</div>' if note else ""
    return f'<div class="players" data-fps="{fps:g}">{controls}<div class="player-grid">{"".join(cells)}</div>{extra}</div>'


SYNC_JS = r"""
const vids = () => Array.from(element.querySelectorAll('video.sync'));
const isVid = (e) => e.target && e.target.tagName === 'VIDEO';
const fpsOf = () => { const r = element.querySelector('.players'); return r ? parseFloat(r.dataset.fps) || 10 : 10; };
element.addEventListener('play', (e) => { if (!isVid(e)) return;
  vids().forEach(v => { if (v !== e.target && v.paused) { v.currentTime = e.target.currentTime; v.play().catch(() => {}); } }); }, true);
element.addEventListener('pause', (e) => { if (!isVid(e)) return;
  vids().forEach(v => { if (v !== e.target && !v.paused) v.pause(); }); }, true);
element.addEventListener('seeked', (e) => { if (!isVid(e)) return;
  vids().forEach(v => { if (v !== e.target && Math.abs(v.currentTime - e.target.currentTime) > 0.04) v.currentTime = e.target.currentTime; }); }, true);
element.addEventListener('timeupdate', (e) => { if (!isVid(e)) return; const v = e.target; const all = vids();
  if (all[0] !== v || !v.duration) return;
  const s = element.querySelector('input.scrub'); if (s && document.activeElement !== s) s.value = Math.round(1000 * v.currentTime / v.duration);
  const tc = element.querySelector('.timecode'); if (tc) tc.textContent = v.currentTime.toFixed(2) + ' s'; }, true);
element.addEventListener('click', (e) => { const b = e.target.closest('[data-action]'); if (!b) return;
  const all = vids(); if (!all.length) return; const a = b.dataset.action;
  if (a === 'playpause') { const play = all[0].paused; all.forEach(v => play ? v.play().catch(() => {}) : v.pause()); }
  else if (a === 'restart') { all.forEach(v => { v.currentTime = 0; }); }
  else { const d = (a === 'next' ? 1 : -1) / fpsOf(); all.forEach(v => { v.pause(); v.currentTime = Math.max(0, Math.min((v.duration || 0) - 1e-3, v.currentTime + d)); }); }
});
element.addEventListener('input', (e) => { if (!e.target.matches || !e.target.matches('input.scrub')) return;
  const all = vids(); if (!all.length || !all[0].duration) return; const t = all[0].duration * e.target.value / 1000;
  all.forEach(v => { v.pause(); v.currentTime = t; }); }, true);
"""

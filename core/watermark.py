"""Watermarks for exported clips: a visible text and an invisible keyed mark, and the installation key.

Watermarks. The visible one is text drawn with PIL at the bottom-right corner, white with a dark
outline, semi-transparent, its height a fixed fraction of the frame height.

The invisible one is a keyed spread-spectrum mark in the luminance of 8x8 blocks:

* Key -> a pseudo-random +-1 "chip" for every (block row mod 64, block column mod 64, band
  coefficient) cell of a 64x64-block tile, and a split of the cells into a pilot (3/4 of the
  cells, always +1) and 64 payload slots (the payload's bits as +-1). The band is the 12 DCT-II
  coefficients with 2 <= u + v <= 4 (low-mid frequencies: they survive H.264 far better than
  high ones and are less visible than low ones).
* Embedding adds ``strength * m_b * chip * sign`` to those coefficients of every full block,
  where ``m_b = clip(std(block) / 10, 0.35, 1.5)`` hides the mark in texture and keeps it faint
  on flat walls (perceptual masking). The change is applied equally to R, G and B, which changes
  luminance by exactly that amount and leaves chroma alone. The same tile is used in every
  frame, so detection can average frames. At the default strength 3 the PSNR cost is ~47-49 dB.
* Detection averages the frames' luminance (the mark adds up coherently, moving content does
  not), takes the band coefficients of every block, keeps only their signs (a sign correlator
  is robust to the heavy-tailed content coefficients), folds them onto the tile (F) and
  correlates with the pilot chips: ``z = sum(chip * F) / ||F||``. For a clip not marked with
  this key the chips are independent of F, so z has mean 0 and variance 1 whatever the content,
  and by Hoeffding's inequality P(z >= t) <= exp(-t^2 / 2). ``detected`` means z >= `Z_THRESHOLD`
  (6: a false alarm at most once in 6e7 clips); ``confidence = Phi(z - Z_THRESHOLD)``: ~0 on
  unmarked clips, 0.5 at the threshold, ~1 above.
  Measured on this CPU (kenburns clips of the example rooms, default strength, decoded after
  H.264 at CRF 18): z ~ 8 for 8 frames of 96x64, 12-17 for 12-16 frames of 160x96, ~66 for 16
  frames of 512x320; unmarked clips and other keys |z| < 2.7 (200 trials).
  It needs the clip at the size it was marked at, not cropped at the top or left, not resized.
* The payload (64 bits: the first 8 bytes of SHA-256 of a text, by default the run id) is
  decoded slot by slot; it is reliable for clips of the generator's size (no bit errors at
  512x320 x 16 frames), not for thumbnails. `detect(..., payload=...)` reports how many decoded
  bits disagree with an expected payload.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import os
import secrets
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .clip import Clip
from .errors import InputError, StudioError

KEY_FILE = ".watermark-key"
MAX_WATERMARK_CHARS = 80

# Invisible watermark parameters (changing any of them changes what existing marks decode to).
BLOCK = 8
TILE_BLOCKS = 64
BAND: tuple[tuple[int, int], ...] = tuple((u, v) for u in range(BLOCK) for v in range(BLOCK) if 2 <= u + v <= 4)
PAYLOAD_BITS = 64
PILOT_FRACTION = 0.75
PAYLOAD_TOLERANCE = 4  # decoded bits that may differ for a payload to count as matching
Z_THRESHOLD = 6.0
DEFAULT_STRENGTH = 3.0
MASK_REF = 10.0
MASK_RANGE = (0.35, 1.5)
_LUMA = np.array([0.299, 0.587, 0.114])
_DOMAIN = b"cami2v-studio invisible watermark v1\x00"


# --------------------------------------------------------------------------- invisible mark


def _dct_matrix(n: int = BLOCK) -> np.ndarray:
    """Orthonormal DCT-II matrix M: coefficients of a length-n signal x are M @ x."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * i + 1) * k / (2 * n))
    m[0] /= np.sqrt(2.0)
    return m


_DCT = _dct_matrix()
# (K, 8, 8): the spatial pattern of each band coefficient; a block's coefficient k is <block, basis_k>.
_BASIS = np.stack([np.outer(_DCT[u], _DCT[v]) for u, v in BAND])


def key_bytes(key: str | bytes) -> bytes:
    if isinstance(key, str):
        key = key.encode("utf-8")
    if not isinstance(key, (bytes, bytearray)) or len(key) == 0:
        raise InputError("The watermark key must be a non-empty text or byte string.")
    return bytes(key)


@functools.lru_cache(maxsize=8)
def _tile(key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(chips (64, 64, K) float64 of +-1, slots (64, 64, K) int: 0 = pilot, 1..64 = payload bit)."""
    seed = int.from_bytes(hashlib.sha256(_DOMAIN + key).digest(), "big")
    rng = np.random.Generator(np.random.PCG64(seed))
    shape = (TILE_BLOCKS, TILE_BLOCKS, len(BAND))
    chips = rng.integers(0, 2, size=shape).astype(np.float64) * 2.0 - 1.0
    pilot = rng.random(shape) < PILOT_FRACTION
    slots = np.where(pilot, 0, rng.integers(1, PAYLOAD_BITS + 1, size=shape))
    return chips, slots


def payload_bits(payload: str | bytes | Sequence[int] | None) -> np.ndarray:
    """64 payload bits (0/1): the first 8 bytes of SHA-256 of a text or bytes, or up to 64 given
    bits (zero-padded). None -> all zero."""
    if payload is None:
        return np.zeros(PAYLOAD_BITS, dtype=np.int64)
    if isinstance(payload, (str, bytes, bytearray)):
        data = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
        digest = hashlib.sha256(data).digest()[: PAYLOAD_BITS // 8]
        return np.unpackbits(np.frombuffer(digest, dtype=np.uint8)).astype(np.int64)
    bits = np.asarray(list(payload), dtype=np.int64)
    if bits.ndim != 1 or bits.size > PAYLOAD_BITS or not np.isin(bits, (0, 1)).all():
        raise InputError(f"A watermark payload is a text or at most {PAYLOAD_BITS} bits of 0/1.")
    return np.concatenate([bits, np.zeros(PAYLOAD_BITS - bits.size, dtype=np.int64)])


def _signs(slots: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """+-1 per tile cell: +1 for the pilot, the payload bit's sign elsewhere."""
    table = np.concatenate([[1.0], bits * 2.0 - 1.0])
    return table[slots]


def _frames_array(frames: Clip | np.ndarray) -> np.ndarray:
    arr = frames.frames if isinstance(frames, Clip) else np.asarray(frames)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3:
        raise InputError(f"Expected (T, H, W, 3) uint8 RGB frames, got {arr.dtype} {arr.shape}.")
    if arr.shape[1] < BLOCK or arr.shape[2] < BLOCK:
        raise InputError(f"Frames of {arr.shape[2]}x{arr.shape[1]} are too small to watermark (8x8 at least).")
    return arr


def _tile_view(a: np.ndarray, hb: int, wb: int) -> np.ndarray:
    """The (hb, wb, ...) cells of a tile-periodic array covering hb x wb blocks."""
    return a[np.arange(hb) % TILE_BLOCKS][:, np.arange(wb) % TILE_BLOCKS]


def embed(
    frames: Clip | np.ndarray,
    payload: str | bytes | Sequence[int] | None,
    key: str | bytes,
    *,
    strength: float = DEFAULT_STRENGTH,
) -> np.ndarray:
    """Add the invisible mark of `key` carrying `payload` (see `payload_bits`) to every frame.

    frames: (T, H, W, 3) uint8 RGB (or a Clip). Returns a new (T, H, W, 3) uint8 array; pixels
    outside the last full 8x8 block row/column are untouched. strength: coefficient amplitude on
    the 0-255 luminance scale before masking (0.5-10; 3 is the tested default).
    """
    arr = _frames_array(frames)
    if not (isinstance(strength, (int, float)) and 0.5 <= float(strength) <= 10.0):
        raise InputError(f"Watermark strength must be between 0.5 and 10, got {strength!r}.")
    chips, slots = _tile(key_bytes(key))
    pattern_tile = chips * _signs(slots, payload_bits(payload))
    t, h, w, _ = arr.shape
    hb, wb = h // BLOCK, w // BLOCK
    pattern = _tile_view(pattern_tile, hb, wb)  # (hb, wb, K)
    out = arr.copy()
    lo, hi = MASK_RANGE
    for i in range(t):
        frame = arr[i, : hb * BLOCK, : wb * BLOCK].astype(np.float64)
        y = (frame @ _LUMA).reshape(hb, BLOCK, wb, BLOCK)
        mask = np.clip(y.std(axis=(1, 3)) / MASK_REF, lo, hi)
        coeffs = float(strength) * mask[..., None] * pattern
        delta = np.einsum("yxk,kij->yixj", coeffs, _BASIS).reshape(hb * BLOCK, wb * BLOCK)
        frame += delta[..., None]
        out[i, : hb * BLOCK, : wb * BLOCK] = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
    return out


@dataclass(frozen=True)
class Detection:
    """What `detect` found. z: the detection score, standard normal on clips not marked with
    this key; detected: z >= Z_THRESHOLD; confidence: Phi(z - Z_THRESHOLD) in [0, 1]. bits: the
    64 decoded payload bits; bit_errors / payload_match only when an expected payload was given."""

    detected: bool
    confidence: float
    z: float
    bits: tuple[int, ...]
    bit_errors: int | None = None
    payload_match: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["bits"] = "".join(map(str, self.bits))
        return d


def _folded_signs(arr: np.ndarray) -> np.ndarray:
    """Sign of every band coefficient of the frame-averaged luminance, summed onto the tile."""
    t, h, w, _ = arr.shape
    hb, wb = h // BLOCK, w // BLOCK
    y = np.zeros((hb * BLOCK, wb * BLOCK))
    for i in range(t):
        y += arr[i, : hb * BLOCK, : wb * BLOCK].astype(np.float64) @ _LUMA
    y /= t
    coeffs = np.einsum("yixj,kij->yxk", y.reshape(hb, BLOCK, wb, BLOCK), _BASIS)
    folded = np.zeros((TILE_BLOCKS, TILE_BLOCKS, len(BAND)))
    np.add.at(folded, ((np.arange(hb) % TILE_BLOCKS)[:, None], (np.arange(wb) % TILE_BLOCKS)[None, :]),
              np.sign(coeffs))
    return folded


def _z(chips: np.ndarray, signs: np.ndarray, folded: np.ndarray, cells: np.ndarray) -> float:
    f = folded[cells]
    norm = math.sqrt(float((f * f).sum()))
    return float((chips[cells] * signs[cells] * f).sum()) / norm if norm > 0 else 0.0


def detect(
    frames: Clip | np.ndarray,
    key: str | bytes,
    *,
    payload: str | bytes | Sequence[int] | None = None,
) -> Detection:
    """Look for the mark of `key` in (T, H, W, 3) uint8 frames (see the module docstring).

    The score z uses the pilot cells (no payload knowledge needed). With `payload`, the decoded
    bits are also compared with the expected ones: payload_match needs a detection and at most
    `PAYLOAD_TOLERANCE` differing bits.
    """
    arr = _frames_array(frames)
    chips, slots = _tile(key_bytes(key))
    folded = _folded_signs(arr)
    ones = np.ones_like(chips)
    z = _z(chips, ones, folded, slots == 0)
    bits = [1 if _z(chips, ones, folded, slots == k) > 0 else 0 for k in range(1, PAYLOAD_BITS + 1)]
    errors = match = None
    if payload is not None:
        errors = int((np.array(bits) != payload_bits(payload)).sum())
        match = bool(z >= Z_THRESHOLD and errors <= PAYLOAD_TOLERANCE)
    confidence = 0.5 * math.erfc(-(z - Z_THRESHOLD) / math.sqrt(2.0))
    return Detection(bool(z >= Z_THRESHOLD), float(confidence), float(z), tuple(bits), errors, match)


def detect_file(
    path: str | os.PathLike,
    key: str | bytes,
    *,
    payload: str | bytes | Sequence[int] | None = None,
    max_frames: int = 64,
) -> Detection:
    """`detect` on a video file (mp4/gif/PNG folder; the first `max_frames` frames)."""
    from .video import read_video

    return detect(read_video(path, max_frames=max_frames), key, payload=payload)


def private_dir(outputs: str | os.PathLike) -> Path:
    """The installation's private state folder: ``<parent>/.<outputs name>-private`` beside the
    outputs folder, never inside it (the outputs folder is served over HTTP), mode 700."""
    outputs = Path(outputs).resolve()
    folder = outputs.parent / f".{outputs.name}-private"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        os.chmod(folder, 0o700)
    except OSError:  # pragma: no cover - filesystems without POSIX modes
        pass
    return folder


def key_path(outputs: str | os.PathLike) -> Path:
    """Where the watermark key of the installation writing to `outputs` lives (see private_dir)."""
    return private_dir(outputs) / KEY_FILE.lstrip(".")


def _read_key(path: Path) -> bytes:
    text = path.read_text(encoding="ascii", errors="replace").strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise StudioError(f"{path} is damaged (expected hex); delete it to make a new key.") from None
    if len(key) < 16:
        raise StudioError(f"{path} is too short; delete it to make a new key.")
    return key


def _publish_once(path: Path, data: bytes) -> bool:
    """Create `path` with `data` (mode 600) unless it exists: written to a private temporary,
    then hard-linked into place, so the file appears complete or not at all and exactly one of
    several concurrent creators wins. True when this call created it."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def installation_key(outputs: str | os.PathLike) -> bytes:
    """This installation's secret watermark key (32 random bytes, stored as hex, mode 600) in
    the private folder beside `outputs` (see `private_dir`), created on first use.

    Creation is atomic: concurrent first exports all end up with the one key that was linked
    into place first. A key left by older versions inside the served outputs folder
    (``<outputs>/.watermark-key``) is moved to the private folder, so earlier marks still verify.
    """
    path = key_path(outputs)
    legacy = Path(outputs) / KEY_FILE
    if not path.is_file() and legacy.is_file():
        _publish_once(path, _read_key(legacy).hex().encode("ascii") + b"\n")
    if legacy.is_file() and path.is_file():
        # never leave a secret in an HTTP-readable folder
        with contextlib.suppress(FileNotFoundError):
            legacy.unlink()
    if not path.is_file():
        _publish_once(path, secrets.token_bytes(32).hex().encode("ascii") + b"\n")
    try:
        os.chmod(path, 0o600)
    except OSError:  # pragma: no cover - filesystems without POSIX modes
        pass
    return _read_key(path)


# --------------------------------------------------------------------------- visible mark


def clean_text(text: str | None) -> str:
    """Watermark text as drawn: control characters removed, whitespace collapsed, at most
    `MAX_WATERMARK_CHARS` characters (longer text is an InputError, not silently cut)."""
    if not text:
        return ""
    s = "".join(c if unicodedata.category(c)[0] != "C" else " " for c in str(text))
    s = " ".join(s.split())
    if len(s) > MAX_WATERMARK_CHARS:
        raise InputError(f"Watermark text is {len(s)} characters; use at most {MAX_WATERMARK_CHARS}.")
    return s


def _font(size: int):
    """A scalable font: DejaVu Sans when the system has it (wide glyph coverage), else PIL's own."""
    from PIL import ImageFont

    for name in ("DejaVuSans.ttf", "LiberationSans-Regular.ttf", "Arial.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


def _text_overlay(text: str, width: int, height: int, opacity: float) -> tuple[np.ndarray, int, int]:
    """RGBA overlay (h, w, 4) float in [0, 1] with the text, and its top-left (x, y) in the frame.

    The text height is 6% of the frame height (at least 7 px); text wider than the frame is set
    smaller, and at the smallest size shortened with an ellipsis."""
    from PIL import Image, ImageDraw

    margin = max(2, int(round(min(width, height) * 0.03)))
    room = max(1, width - 2 * margin)
    measure = ImageDraw.Draw(Image.new("L", (1, 1)))
    size = max(7, int(round(height * 0.06)))

    def bbox(s: str, font, stroke: int) -> tuple[int, int, int, int]:
        return measure.textbbox((0, 0), s, font=font, stroke_width=stroke)

    while True:
        font, stroke = _font(size), max(1, size // 12)
        x0, y0, x1, y1 = bbox(text, font, stroke)
        if x1 - x0 <= room or size <= 7:
            break
        size = max(7, min(size - 1, int(size * room / (x1 - x0))))
    while x1 - x0 > room and len(text) > 1:
        text = text[:-2].rstrip() + "…" if len(text) > 2 else text[:1]
        x0, y0, x1, y1 = bbox(text, font, stroke)
    tw, th = min(x1 - x0, width), min(y1 - y0, height)
    im = Image.new("RGBA", (tw, th), (0, 0, 0, 0))
    ImageDraw.Draw(im).text((-x0, -y0), text, font=font, fill=(255, 255, 255, 255), stroke_width=stroke,
                            stroke_fill=(0, 0, 0, 255))
    rgba = np.asarray(im, dtype=np.float64) / 255.0
    rgba[..., 3] *= opacity
    x, y = max(0, width - margin - tw), max(0, height - margin - th)
    return rgba, x, y


def draw_text(frames: Clip | np.ndarray, text: str, *, opacity: float = 0.6) -> np.ndarray:
    """Draw `text` at the bottom-right of every (T, H, W, 3) uint8 frame, semi-transparent
    (opacity in (0, 1]), scaled to the frame (see `_text_overlay`). Returns new uint8 frames."""
    arr = np.asarray(frames.frames if isinstance(frames, Clip) else frames)
    text = clean_text(text)
    if not text:
        return arr.copy()
    if not 0.0 < float(opacity) <= 1.0:
        raise InputError(f"Watermark opacity must be in (0, 1], got {opacity!r}.")
    t, h, w, _ = arr.shape
    rgba, x, y = _text_overlay(text, w, h, float(opacity))
    oh, ow = rgba.shape[:2]
    out = arr.copy()
    alpha = rgba[..., 3:4]
    region = out[:, y : y + oh, x : x + ow].astype(np.float64)
    blended = region * (1.0 - alpha) + rgba[None, ..., :3] * 255.0 * alpha
    out[:, y : y + oh, x : x + ow] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out

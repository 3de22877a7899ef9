"""Embedded synthetic glyph source in the Omniglot layout (alphabets / characters /
drawers), so that everything runs with no download. SYNTHETIC: it is not Omniglot.

Alphabets are Unicode scripts and symbol blocks that the DejaVu and STIX fonts shipped
inside matplotlib (``matplotlib.get_data_path()/fonts/ttf``) cover, so any machine with
the project's dependencies has them. A character is one code point; each of its
"drawers" renders it with its own font (among those covering it), size, position,
rotation, shear, stroke width and a smooth wobble, all drawn from a seed fixed by
(seed, alphabet, code point, drawer). Images come out like ``sources.omniglot``:
uint8, bright strokes on black, ``size`` x ``size``.

``list_glyph_characters`` returns ``sources.omniglot.Character`` objects whose
locations are ``GlyphItem`` render specs; ``GlyphDecoder`` (picklable) renders them.
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from fewtask_data.errors import FewtaskError
from fewtask_data.sources.omniglot import BACKGROUND, EVALUATION, Character

# (alphabet name, first code point, last code point). Big blocks are cut into several
# alphabets, as Omniglot itself has three Canadian Aboriginal Syllabics alphabets.
SCRIPTS: tuple[tuple[str, int, int], ...] = (
    ("Latin", 0x0041, 0x005A),
    ("Greek", 0x0391, 0x03A9),
    ("Cyrillic", 0x0410, 0x042F),
    ("Armenian", 0x0531, 0x0556),
    ("Hebrew", 0x05D0, 0x05EA),
    ("Arabic", 0x0621, 0x064A),
    ("Georgian_Mkhedruli", 0x10D0, 0x10FA),
    ("Georgian_Asomtavruli", 0x10A0, 0x10C5),
    ("Ogham", 0x1681, 0x169A),
    ("Canadian_Syllabics_A", 0x1401, 0x146F),
    ("Canadian_Syllabics_B", 0x1470, 0x14FF),
    ("Canadian_Syllabics_C", 0x1500, 0x15AF),
    ("Braille_A", 0x2801, 0x283F),
    ("Braille_B", 0x2840, 0x28FF),
    ("Tifinagh", 0x2D30, 0x2D67),
    ("N_Ko", 0x07CA, 0x07EA),
    ("Lao", 0x0E81, 0x0EAE),
    ("Lisu", 0xA4D0, 0xA4F7),
    ("Old_Italic", 0x10300, 0x1031E),
    ("IPA", 0x0250, 0x02AF),
    ("Latin_Extended_B", 0x0180, 0x024F),
    ("Arrows", 0x2190, 0x21FF),
    ("Box_Drawing", 0x2500, 0x257F),
    ("Geometric_Shapes", 0x25A0, 0x25FF),
    ("Dingbats", 0x2700, 0x27BF),
    ("Math_Operators_A", 0x2200, 0x227F),
    ("Math_Operators_B", 0x2280, 0x22FF),
    ("Misc_Symbols", 0x2600, 0x26FF),
    ("Letterlike", 0x2100, 0x214F),
    ("Misc_Technical", 0x2300, 0x23FF),
)

FONT_FILES: tuple[str, ...] = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
)

RENDER = 64  # drawing canvas side; images are rendered here, then resized


def font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@lru_cache(maxsize=None)
def _charmaps() -> dict[str, frozenset[int]]:
    from matplotlib.ft2font import FT2Font

    folder = font_dir()
    out = {}
    for name in FONT_FILES:
        path = folder / name
        if path.is_file():
            out[name] = frozenset(FT2Font(str(path)).get_charmap())
    if "DejaVuSans.ttf" not in out:
        raise FewtaskError(f"DejaVuSans.ttf not found in {folder}; reinstall matplotlib (it ships the DejaVu fonts)")
    return out


@lru_cache(maxsize=256)
def _font(name: str, points: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_dir() / name), points)


@dataclass(frozen=True)
class GlyphItem:
    """Everything needed to render one drawer's version of one character."""

    codepoint: int
    font: str
    scale: float  # font size as a fraction of the canvas
    rotation: float  # degrees
    shear: float  # x shear factor
    shift_x: float  # fraction of the canvas
    shift_y: float
    stroke: int  # extra stroke width in canvas pixels
    wobble: float  # smooth displacement amplitude, canvas pixels
    wobble_seed: int


def _ink(codepoint: int, font: str, points: int = RENDER, stroke: int = 0) -> np.ndarray | None:
    """The character's ink at a point size, cropped to its bounding box (None if blank)."""
    side = 2 * RENDER
    canvas = Image.new("L", (side, side), 0)
    ImageDraw.Draw(canvas).text(
        (side / 2, side / 2), chr(codepoint), font=_font(font, points), fill=255, anchor="mm",
        stroke_width=stroke, stroke_fill=255,
    )
    ink = np.asarray(canvas)
    rows = np.flatnonzero(ink.max(axis=1) > 32)
    cols = np.flatnonzero(ink.max(axis=0) > 32)
    if rows.size < 2 or cols.size < 2:
        return None
    return ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def render(item: GlyphItem, size: int) -> np.ndarray:
    """Draw one GlyphItem: uint8 size x size, bright strokes on black.

    The point size follows ``scale`` (so a dot stays a dot and a dash a dash); the ink
    is centred on the canvas and only shrunk when it would not fit."""
    ink = _ink(item.codepoint, item.font, max(8, round(item.scale * RENDER)), item.stroke)
    if ink is None:
        raise FewtaskError(f"glyph U+{item.codepoint:04X} renders blank in {item.font}")
    h, w = ink.shape
    limit = 0.9 * RENDER
    if max(h, w) > limit:
        factor = limit / max(h, w)
        ink = cv2.resize(ink, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)
        h, w = ink.shape
    canvas = np.zeros((RENDER, RENDER), np.float32)
    top, left = (RENDER - h) // 2, (RENDER - w) // 2
    canvas[top : top + h, left : left + w] = ink
    # Rotation + shear about the centre, then the shift.
    c = RENDER / 2
    rot = cv2.getRotationMatrix2D((c, c), item.rotation, 1.0)
    shear = np.array([[1.0, item.shear, -item.shear * c], [0.0, 1.0, 0.0]])
    matrix = rot @ np.vstack([shear, [0.0, 0.0, 1.0]])
    matrix[:, 2] += (item.shift_x * RENDER, item.shift_y * RENDER)
    canvas = cv2.warpAffine(canvas, matrix, (RENDER, RENDER), flags=cv2.INTER_LINEAR, borderValue=0)
    if item.wobble > 0:
        rng = np.random.default_rng(item.wobble_seed)
        grid_x, grid_y = np.meshgrid(np.arange(RENDER, dtype=np.float32), np.arange(RENDER, dtype=np.float32))
        maps = []
        for grid in (grid_x, grid_y):
            noise = cv2.GaussianBlur(rng.standard_normal((RENDER, RENDER)).astype(np.float32), (0, 0), RENDER / 8)
            maps.append(grid + noise * (item.wobble / (np.abs(noise).max() or 1.0)))
        canvas = cv2.remap(canvas, maps[0], maps[1], cv2.INTER_LINEAR, borderValue=0)
    out = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA) if size != RENDER else canvas
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class GlyphDecoder:
    """Picklable item -> image for the build's worker processes."""

    size: int = 28

    def __call__(self, item: tuple[GlyphItem, int]) -> np.ndarray:
        glyph, rotation = item
        out = render(glyph, self.size)
        return np.ascontiguousarray(np.rot90(out, k=rotation // 90)) if rotation else out


def _seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "little")


def _drawer(codepoint: int, fonts: list[str], rng: np.random.Generator) -> GlyphItem:
    return GlyphItem(
        codepoint=codepoint,
        font=fonts[int(rng.integers(len(fonts)))],
        scale=round(float(rng.uniform(0.6, 0.85)), 4),
        rotation=round(float(np.clip(rng.normal(0.0, 7.0), -15, 15)), 3),
        shear=round(float(rng.uniform(-0.2, 0.2)), 4),
        shift_x=round(float(rng.uniform(-0.06, 0.06)), 4),
        shift_y=round(float(rng.uniform(-0.06, 0.06)), 4),
        stroke=int(rng.integers(0, 3)),
        wobble=round(float(rng.uniform(0.0, 2.0)), 3),
        wobble_seed=int(rng.integers(0, 2**31 - 1)),
    )


def script_characters(name: str, first: int, last: int) -> list[tuple[int, list[str]]]:
    """(code point, fonts covering it) for the script's visible letters and symbols."""
    charmaps = _charmaps()
    out = []
    for cp in range(first, last + 1):
        if unicodedata.category(chr(cp))[0] not in "LS":
            continue
        fonts = [f for f in FONT_FILES if f in charmaps and cp in charmaps[f]]
        if fonts and _ink(cp, fonts[0]) is not None:
            out.append((cp, fonts))
    return out


def list_glyph_characters(
    alphabets: int | None = None, characters: int = 20, drawers: int = 20, seed: int = 0
) -> list[Character]:
    """Characters in the Omniglot layout. ``alphabets`` caps how many scripts (in
    ``SCRIPTS`` order), ``characters`` how many characters per alphabet (evenly spaced
    over the script), ``drawers`` the images per character. Alphabets alternate between
    a "background" (3 of 5) and an "evaluation" (2 of 5) set, like Omniglot's 30/20."""
    if characters < 1 or drawers < 1 or (alphabets is not None and alphabets < 1):
        raise FewtaskError("glyph source: alphabets, characters and drawers must be >= 1")
    chosen_scripts = SCRIPTS if alphabets is None else SCRIPTS[:alphabets]
    out = []
    for i, (name, first, last) in enumerate(chosen_scripts):
        available = script_characters(name, first, last)
        if not available:
            continue
        picks = np.unique(np.linspace(0, len(available) - 1, num=min(characters, len(available))).round().astype(int))
        set_name = BACKGROUND if i % 5 < 3 else EVALUATION
        for j, pick in enumerate(picks, start=1):
            cp, fonts = available[pick]
            images = []
            for d in range(1, drawers + 1):
                rng = np.random.default_rng(_seed(seed, name, cp, d))
                images.append((f"u{cp:05X}_{d:02d}", _drawer(cp, fonts, rng)))
            out.append(Character(name, f"character{j:02d}", set_name, tuple(images)))
    return out


def fingerprint(seed: int = 0) -> str:
    """Identifies the fonts (by file hash) and the generator settings behind a glyph build."""
    digest = hashlib.sha256(f"glyphs-v1|seed={seed}|render={RENDER}".encode())
    for name in sorted(_charmaps()):
        digest.update(name.encode())
        digest.update(hashlib.sha256((font_dir() / name).read_bytes()).digest())
    return digest.hexdigest()


def describe() -> dict:
    """Manifest-ready description: clearly synthetic, which fonts and matplotlib."""
    import matplotlib
    import PIL

    return {
        "kind": "synthetic-glyphs",
        "synthetic": True,
        "note": "SYNTHETIC glyphs rendered from fonts shipped with matplotlib; not Omniglot",
        "fonts": sorted(_charmaps()),
        "matplotlib": matplotlib.__version__,
        "pillow": PIL.__version__,  # its FreeType renders the glyphs
    }

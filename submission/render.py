"""Write a PNG of one ARC task: each demonstration (input -> output), then each test input with
attempt_1, attempt_2 and the solution. With a submission, attempts get a green border when they
match the known solution and a red one when they do not; a legend under the title says so.

example:
  arc-trm show 00576224 --tasks arc-agi-1:evaluation --submission submission.json --out task.png
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from augment.console import eprint
from augment.errors import InputError
from augment.files import atomic_writer
from augment.grids import same_grid
from augment.tasks import Task, load_tasks, safe_name
from submission.kaggle import check_is_submission, load_submission, submission_grids, validate_submission

# ARC's standard palette, colours 0..9.
PALETTE_HEX = ("#000000", "#0074D9", "#FF4136", "#2ECC40", "#FFDC00",
               "#AAAAAA", "#F012BE", "#FF851B", "#7FDBFF", "#870C25")
PALETTE = np.array([[int(h[i:i + 2], 16) for i in (1, 3, 5)] for h in PALETTE_HEX], dtype=np.uint8)
GRID_LINE = np.array([85, 85, 85], dtype=np.uint8)
BACKGROUND = (255, 255, 255)
TEXT = (30, 30, 30)
# Border colours, distinct from the palette's green (3) and red (2) so a frame never reads as cells.
CORRECT = (0, 200, 83)
WRONG = (213, 0, 0)
MUTED = (110, 110, 110)  # text of an empty slot: grey, yet readable
BORDER = 3
FONT_PX = 15  # labels readable at 100% zoom
LABEL_H = FONT_PX + 6
MARGIN = 10
ARROW_W = 24
SWATCH = 14  # side of a legend's colour square
LEGEND = ((CORRECT, "attempt matches the solution"), (WRONG, "attempt differs from the solution"))

Attempts = Sequence[tuple[np.ndarray, np.ndarray]]


@dataclass
class Panel:
    """One labelled grid in the picture (grid None = an empty slot)."""

    label: str
    grid: np.ndarray | None
    border: tuple[int, int, int] | None = None


def grid_image(grid: np.ndarray, cell: int) -> np.ndarray:
    """(H, W, 3) uint8 pixels of a grid: `cell`-pixel squares separated by 1-pixel lines."""
    g = np.asarray(grid, dtype=np.uint8)
    h, w = g.shape
    step = cell + 1
    img = np.empty((h * step + 1, w * step + 1, 3), dtype=np.uint8)
    img[:] = GRID_LINE
    blocks = img[1:, 1:].reshape(h, step, w, step, 3)
    blocks[:, :cell, :, :cell] = PALETTE[np.minimum(g, 9)][:, None, :, None, :]
    return img


def cell_size(grids: Sequence[np.ndarray | None], box: int) -> int:
    """Cell size so that the largest grid's side fits in about `box` pixels (between 2 and 24)."""
    side = max([max(g.shape) for g in grids if g is not None] or [1])
    return int(max(2, min(24, (box - side - 1) // side)))


def label_font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's own scalable font at FONT_PX (Pillow >= 10.1); older Pillow: its small bitmap font."""
    try:
        return ImageFont.load_default(size=FONT_PX)
    except TypeError:  # load_default() takes no size before Pillow 10.1
        return ImageFont.load_default()


def legend_items(rows: Sequence[Sequence[Panel]]) -> list[tuple[tuple[int, int, int], str]]:
    """(colour, meaning) of the border colours: the picture's legend, both whenever any attempt is
    scored (so a picture of wrong attempts still says what green would mean); none otherwise."""
    used = {p.border for row in rows for p in row}
    return list(LEGEND) if used & {colour for colour, _ in LEGEND} else []


def draw_legend(draw: ImageDraw.ImageDraw, items: Sequence[tuple[tuple[int, int, int], str]], x: int, y: int,
                font) -> None:
    for colour, text in items:
        draw.rectangle([x, y + 2, x + SWATCH - 1, y + 2 + SWATCH - 1], outline=colour, width=BORDER)
        draw.text((x + SWATCH + 6, y), text, fill=TEXT, font=font)
        x += SWATCH + 6 + int(draw.textlength(text, font=font)) + 3 * MARGIN


def render_rows(rows: Sequence[Sequence[Panel]], *, box: int = 160, title: str | None = None,
                arrows: Sequence[bool] | None = None, legend: bool = True) -> Image.Image:
    """Lay out rows of panels; one cell size for the whole picture. arrows[i]: draw an arrow after
    the first panel of row i. With `legend`, a line under the title says what the border colours mean."""
    font = label_font()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    cell = cell_size([p.grid for row in rows for p in row], box)
    rendered = [[None if p.grid is None else grid_image(p.grid, cell) for p in row] for row in rows]
    slot = max([im.shape[1] for row in rendered for im in row if im is not None] or [box]) + 2 * BORDER
    labels = [p.label for row in rows for p in row] + ["(none)"]
    slot = max(slot, 70, *(int(measure.textlength(t, font=font)) + 4 for t in labels))  # labels never overlap
    gap = ARROW_W + MARGIN
    ncols = max(len(r) for r in rows)
    items = legend_items(rows) if legend else []
    legend_w = sum(SWATCH + 6 + int(measure.textlength(t, font=font)) + 3 * MARGIN for _, t in items)
    width = max(MARGIN + ncols * slot + (ncols - 1) * gap + MARGIN, MARGIN + legend_w)
    heights = [LABEL_H + max([im.shape[0] for im in row if im is not None] or [cell]) + 2 * BORDER
               for row in rendered]
    top = MARGIN + (LABEL_H + 4 if title else 0) + (LABEL_H + 4 if items else 0)
    height = top + sum(heights) + MARGIN * len(rows)
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((MARGIN, MARGIN), title, fill=TEXT, font=font)
    if items:
        draw_legend(draw, items, MARGIN, MARGIN + (LABEL_H + 4 if title else 0), font)
    y = top
    for r, (row, ims) in enumerate(zip(rows, rendered)):
        for c, (panel, im) in enumerate(zip(row, ims)):
            x = MARGIN + c * (slot + gap)
            draw.text((x, y), panel.label, fill=TEXT, font=font)
            if im is None:
                draw.text((x, y + LABEL_H + 2), "(none)", fill=MUTED, font=font)
                continue
            gy = y + LABEL_H
            if panel.border is not None:
                draw.rectangle([x, gy, x + im.shape[1] + 2 * BORDER - 1, gy + im.shape[0] + 2 * BORDER - 1],
                               fill=panel.border)
            canvas.paste(Image.fromarray(im), (x + BORDER, gy + BORDER))
            if arrows and arrows[r] and c == 0 and len(row) > 1:
                ax, ay = x + slot + 4, gy + min(im.shape[0] // 2, box // 2)
                draw.line([ax, ay, ax + ARROW_W - 4, ay], fill=TEXT, width=2)
                draw.polygon([(ax + ARROW_W, ay), (ax + ARROW_W - 7, ay - 5), (ax + ARROW_W - 7, ay + 5)], fill=TEXT)
        y += heights[r] + MARGIN
    return canvas


def _border(attempt: np.ndarray, solution: np.ndarray | None) -> tuple[int, int, int] | None:
    if solution is None:
        return None
    return CORRECT if same_grid(attempt, solution) else WRONG


def answer_rows(inputs: Sequence[np.ndarray | None], attempts: Attempts | None,
              solutions: Sequence[np.ndarray | None]) -> list[list[Panel]]:
    """Panels of the test inputs: input (when known), attempt_1, attempt_2 (when given), solution."""
    rows = []
    for i in range(max(len(inputs), len(solutions), len(attempts or ()))):
        sol = solutions[i] if i < len(solutions) else None
        row = []
        if i < len(inputs) and inputs[i] is not None:
            row.append(Panel(f"test {i + 1} input", inputs[i]))
        if attempts is not None and i < len(attempts):
            a1, a2 = (np.asarray(a, dtype=np.uint8) for a in attempts[i])
            row += [Panel("attempt 1", a1, _border(a1, sol)), Panel("attempt 2", a2, _border(a2, sol))]
        row.append(Panel("solution" if sol is not None else "solution (unknown)", sol))
        rows.append(row)
    return rows


def render_task(task: Task, attempts: Attempts | None = None, out_path: str | Path | None = None, *,
                box: int = 160, demos: bool = True, title: str | None = None, legend: bool = True) -> Image.Image:
    """Picture of a task; saved as PNG when `out_path` is given. Returns the image.

    attempts: one (attempt_1, attempt_2) pair of grids per test input, or None.
    demos=False draws only the test rows (used for report thumbnails); legend=False leaves out the
    line that explains the border colours (the report explains them once).
    """
    rows: list[list[Panel]] = []
    arrows: list[bool] = []
    if demos:
        for i, p in enumerate(task.train):
            rows.append([Panel(f"demo {i + 1} input", p.input), Panel("output", p.output)])
            arrows.append(True)
    tr = answer_rows([p.input for p in task.test], attempts, [p.output for p in task.test])
    rows += tr
    arrows += [True] * len(tr)
    image = render_rows(rows, box=box, arrows=arrows, title=task.id if title is None else title, legend=legend)
    if out_path is not None:
        save_png(image, out_path)
    return image


# Formats Pillow writes from an RGB picture (XBM, Palm and others that Pillow lists take other modes,
# and failed in the save with a traceback).
PICTURE_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PDF")


def picture_format(out_path: Path) -> str:
    """The Pillow format a path's suffix names (PNG without one): task.jpg is a JPEG, not PNG bytes."""
    if not out_path.suffix:
        return "PNG"
    fmt = Image.registered_extensions().get(out_path.suffix.lower())
    if fmt not in PICTURE_FORMATS:
        raise InputError(f"--out {out_path}: {out_path.suffix} is not a picture format show writes; use .png "
                         "(or .jpg, .gif, .bmp, .tif, .webp, .pdf)")
    return fmt


def save_png(image: Image.Image, out_path: str | Path) -> Path:
    out_path = Path(out_path)
    fmt = picture_format(out_path)
    with atomic_writer(out_path, binary=True) as f:  # makes the folder; never half a picture
        image.save(f, format=fmt, **({"optimize": False} if fmt == "PNG" else {}))
    return out_path


def find_task(task_id: str, source: str) -> Task:
    """The task `task_id` from a source spec; InputError naming the source when it is not there."""
    tasks = load_tasks(source)
    for t in tasks:
        if t.id == task_id:
            return t
    near = [t.id for t in tasks if t.id.startswith(task_id[:4])][:5] if task_id else []
    hint = f" (similar: {', '.join(near)})" if near else ""
    raise InputError(f"task {task_id!r} is not in source {source!r} ({len(tasks)} tasks){hint}")


def attempts_for(task: Task, sub_path: str | Path) -> Attempts | None:
    """The (validated) attempts of `task` in a submission file, or None when the task is absent."""
    sub = load_submission(sub_path)
    check_is_submission(sub, sub_path)  # other JSON (candidates, tasks) would draw no attempts, silently
    if task.id not in sub:
        return None
    one = {task.id: sub[task.id]}
    validate_submission(one, [task], path=sub_path)
    return submission_grids(one, path=sub_path)[task.id]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task_id", metavar="TASK_ID", help="task id, e.g. 00576224")
    parser.add_argument("--tasks", required=True, metavar="SOURCE",
                        help="task source: arc-agi-1, arc-agi-2[:training|:evaluation], a Kaggle challenges "
                             ".json (solutions beside it are used) or a folder of task files")
    parser.add_argument("--submission", metavar="PATH", help="submission.json whose attempts to draw (default: none, the task alone)")
    parser.add_argument("--out", metavar="PNG", help="output picture; its suffix picks the format (default: TASK_ID.png)")
    parser.add_argument("--box", type=int, default=160, metavar="PX",
                        help="pixels available for the largest grid side (default 160)")


def run(args: argparse.Namespace) -> int:
    if args.box < 16:
        raise InputError("--box must be at least 16 pixels")
    task = find_task(args.task_id, args.tasks)
    attempts = None
    if args.submission:
        attempts = attempts_for(task, args.submission)
        if attempts is None:
            eprint(f"note: task {task.id!r} is not in {args.submission}; drawing it without attempts")
    out = Path(args.out) if args.out else Path(f"{safe_name(task.id)}.png")
    render_task(task, attempts, out, box=args.box)
    print(out)
    return 0

"""Grid <-> token encoding on a square canvas (REFERENCE §1).

Tokens: 0 PAD, 1 EOS, colour c -> c + 2. A grid of h x w at offset (r0, c0) is written as
colour tokens; EOS marks the row just below it and the column just right of it (where those
exist on the canvas); the corner cell (r0+h, c0+w) stays PAD. Labels ignore PAD (-100) but
supervise EOS, so the model learns where the answer ends.
"""

from __future__ import annotations

import numpy as np

PAD, EOS, COLOUR_OFFSET = 0, 1, 2
VOCAB_SIZE = 12
IGNORE_LABEL = -100
CANVAS = 30


def encode_grid(grid: np.ndarray, canvas: int = CANVAS, offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Encode one grid into a flat (canvas*canvas,) uint8 token array."""
    h, w = grid.shape
    r0, c0 = offset
    if not (r0 >= 0 and c0 >= 0 and r0 + h <= canvas and c0 + w <= canvas):
        raise ValueError(f"grid {h}x{w} at offset {offset} does not fit a {canvas}x{canvas} canvas")
    out = np.zeros((canvas, canvas), dtype=np.uint8)
    place_tokens(out, grid.astype(np.uint8) + COLOUR_OFFSET, r0, c0)
    return out.reshape(-1)


def place_tokens(board: np.ndarray, tokens: np.ndarray, r0: int, c0: int) -> None:
    """Write a grid's tokens (h, w) into `board` (canvas, canvas) at (r0, c0), with EOS on the row
    below and the column right of it where the canvas has room: the one encoding of training and
    inference alike."""
    h, w = tokens.shape
    board[r0:r0 + h, c0:c0 + w] = tokens
    if r0 + h < board.shape[0]:
        board[r0 + h, c0:c0 + w] = EOS
    if c0 + w < board.shape[1]:
        board[r0:r0 + h, c0 + w] = EOS


def labels_from_tokens(tokens: np.ndarray) -> np.ndarray:
    """Training labels for an encoded output: tokens as int64 with PAD ignored."""
    labels = tokens.astype(np.int64)
    labels[tokens == PAD] = IGNORE_LABEL
    return labels


def decode_grid(tokens: np.ndarray, canvas: int = CANVAS) -> np.ndarray | None:
    """Decode predicted tokens into the largest-area top-left all-colour rectangle.

    Scans rows top-down, shrinking the usable width at each row's first non-colour token, and
    keeps the (rows, width) of largest area seen. Returns None when the top-left cell is not a
    colour (no decodable grid).
    """
    board = np.asarray(tokens).reshape(canvas, canvas)
    is_colour = (board >= COLOUR_OFFSET) & (board < COLOUR_OFFSET + 10)
    width, best, best_area = canvas, (0, 0), 0
    for r in range(canvas):
        bad = np.flatnonzero(~is_colour[r, :width])
        width = int(bad[0]) if bad.size else width
        if width == 0:
            break
        if (r + 1) * width > best_area:
            best, best_area = (r + 1, width), (r + 1) * width
    if best_area == 0:
        return None
    return (board[:best[0], :best[1]] - COLOUR_OFFSET).astype(np.uint8)

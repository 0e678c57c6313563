"""Make the README's example: scikit-image's coffee photo (CC0), scribbles drawn in code, and the result.

    ./run gdc segment docs/example/coffee.jpg docs/example/coffee-scribbles.png -o mask.png

Run as ``.venv/bin/python docs/example/make_example.py`` to rewrite coffee.jpg,
coffee-scribbles.png, coffee-more-scribbles.png (the same and one more stroke: the README's second
round) and docs/example.png (input with scribbles beside the result). The photo and its first
scribbles are the web page's Example too, so they live in the package (service/static/example/);
the two files here link to them.
"""
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image, ImageDraw

from gdc import segment
from gdc.imageio import overlay

HERE = Path(__file__).parent
# (class value, brush width, points): 1 table, 2 cup and saucer, 3 coffee.
STROKES = [
    (1, 5, [(40, 160), (55, 260), (70, 385)]),
    (1, 5, [(20, 30), (120, 25)]),
    (1, 5, [(460, 25), (540, 90), (590, 160)]),
    (1, 5, [(500, 330), (590, 390)]),
    (2, 5, [(110, 250), (160, 320), (260, 365), (380, 350), (450, 290)]),
    (2, 5, [(195, 110), (240, 60), (320, 45), (385, 85)]),
    (2, 5, [(200, 215), (240, 245)]),
    (3, 5, [(235, 155), (285, 130), (345, 150)]),
]
# The README's second round (refine): every stroke so far and one more on the table.
MORE_STROKES = [*STROKES, (1, 5, [(20, 300), (30, 390)])]


def draw(strokes, size: tuple[int, int]) -> Image.Image:
    """A label PNG of ``size`` (width, height) with ``strokes`` drawn in their class values."""
    canvas = Image.new("L", size)
    painter = ImageDraw.Draw(canvas)
    for value, width, points in strokes:
        painter.line(points, fill=value, width=width, joint="curve")
    return canvas


def main() -> None:
    image = skimage.data.coffee()
    size = (image.shape[1], image.shape[0])
    canvas = draw(STROKES, size)
    scribbles = np.asarray(canvas)
    Image.fromarray(image).save(HERE / "coffee.jpg", quality=92)
    canvas.save(HERE / "coffee-scribbles.png")
    draw(MORE_STROKES, size).save(HERE / "coffee-more-scribbles.png")
    result = segment(image, scribbles)
    figure = np.concatenate([overlay(image, scribbles, opacity=1.0), np.full((400, 8, 3), 255, np.uint8),
                             overlay(image, result.labels, opacity=0.55)], axis=1)
    Image.fromarray(figure).save(HERE.parent / "example.png")


if __name__ == "__main__":
    main()

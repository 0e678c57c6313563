"""Scenes with known answers, made from images that scikit-image ships, and scribbles drawn in code."""
import os

import numpy as np
import pytest
import skimage.data
from scipy.ndimage import binary_erosion
from skimage.morphology import disk, skeletonize
from skimage.transform import resize

DEVICE = os.environ.get("TORCH_DEVICE", "cpu")


def _texture(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
    return (resize(rgb, shape, anti_aliasing=True) * 255).astype(np.uint8)


def make_scene(classes: int, shape: tuple[int, int] = (120, 160)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image, truth, scribbles): regions textured with different photos, a thin line scribbled in each.

    truth holds class values 1..K; scribbles hold the same values along the skeleton of
    each region (1 pixel wide, kept 3 pixels from its edges, as a user traces a shape),
    0 elsewhere.
    """
    height, width = shape
    textures = [skimage.data.coffee(), skimage.data.chelsea(), skimage.data.astronaut()][:classes]
    truth = np.ones(shape, dtype=np.uint8)
    # Class 2: the horse silhouette; class 3: a disc in the top-left corner.
    horse = resize(~skimage.data.horse().astype(bool), shape, order=0).astype(bool)
    truth[horse] = 2
    if classes == 3:
        yy, xx = np.mgrid[:height, :width]
        truth[(yy - height * 0.2) ** 2 + (xx - width * 0.15) ** 2 < (height * 0.15) ** 2] = 3
    image = np.zeros((*shape, 3), dtype=np.uint8)
    for value, texture in enumerate(textures, start=1):
        image[truth == value] = _texture(texture, shape)[truth == value]
    scribbles = np.zeros(shape, dtype=np.uint8)
    for value in range(1, classes + 1):
        inner = binary_erosion(truth == value, structure=disk(3))
        scribbles[skeletonize(inner)] = value
    return image, truth, scribbles


@pytest.fixture(scope="session")
def scene2():
    return make_scene(2)


@pytest.fixture(scope="session")
def scene3():
    return make_scene(3)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory, scene2, scene3):
    """A data set in the ../shared/data layout: images/, gt/ (class index) and marks/ (k+1 = class k)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("dataset")
    for folder in ("images", "gt", "marks"):
        (root / folder).mkdir()
    for name, (image, truth, scribbles) in {"a": scene2, "b": scene3}.items():
        Image.fromarray(image).save(root / "images" / f"{name}.png")
        Image.fromarray(truth - 1).save(root / "gt" / f"{name}.png")
        Image.fromarray(scribbles).save(root / "marks" / f"{name}.png")
    return root


@pytest.fixture
def device():
    return DEVICE

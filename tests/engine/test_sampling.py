import numpy as np
import pytest
import torch

from gdc.sampling import resized, resized_at, top_class


@pytest.mark.parametrize("classes", [1, 2, 5])
def test_top_class_is_argmax_over_classes_first_on_ties(classes):
    maps = torch.randint(0, 3, (classes, 9, 11)).float()  # few values: many ties
    assert torch.equal(top_class(maps), maps.argmax(0))


@pytest.mark.parametrize("grid, size", [((7, 9), (40, 51)), ((5, 5), (5, 5)), ((13, 4), (29, 30))])
def test_resized_at_reads_the_resize_at_the_pixels_asked(grid, size):
    mean = torch.rand(3, *grid).softmax(0)
    pixels = np.random.default_rng(0).permutation(size[0] * size[1])[:200]
    whole = resized(mean, *size).reshape(3, -1)[:, pixels].numpy()
    np.testing.assert_allclose(resized_at(mean, *size, pixels), whole, rtol=0, atol=2e-7)

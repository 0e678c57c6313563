"""Box and click prompts: parsing, the checks' messages, the label map they stand for, and segment_prompted."""
import numpy as np
import pytest
import skimage.data
from skimage.transform import resize

from gdc.engine import segment, segment_prompted
from gdc.errors import InputError
from gdc.options import SegmentOptions
from gdc.prompts import (
    BACKGROUND,
    OBJECT,
    Box,
    Click,
    box_options,
    check_prompts,
    click_radius,
    clicks_from,
    colour_cut_from,
    given_labels,
    outside_box,
    parse_box,
    parse_clicks,
    prompt_labels,
)

QUICK = dict(steps=3, samples=2, refine_steps=3, refine_samples=2)


def two_tone(height=60, width=80, box=Box(25, 15, 55, 45)) -> np.ndarray:
    """A dark noisy image with a bright square filling ``box`` but for a 4 px rim."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 50, (height, width, 3)).astype(np.uint8)
    image[box.y0 + 4 : box.y1 - 4, box.x0 + 4 : box.x1 - 4] = (230, 200, 40)
    return image


def test_parse_box_reads_four_integers():
    assert parse_box("1, 2,30,40") == Box(1, 2, 30, 40)
    for bad in ("1,2,3", "1,2,3,x", "1.5,2,3,4"):
        with pytest.raises(InputError, match="box must be four integers x0,y0,x1,y1"):
            parse_box(bad)


def test_parse_clicks_reads_rows_of_x_y_label():
    assert parse_clicks("[[3, 4.5, 1], [0, 0, 0]]") == [Click(3.0, 4.5, True), Click(0.0, 0.0, False)]
    assert clicks_from([]) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[1, 2", "points must be JSON"),
        ('{"x": 1}', "points must be a list"),
        ("[[1, 2]]", r"each point must be \[x, y, label\]"),
        ('[[1, "2", 1]]', r"each point must be \[x, y, label\]"),
        ("[[1, 2, true]]", r"each point must be \[x, y, label\]"),
        ("[[1, 2, 2]]", "a point's label must be 1 .on the object. or 0 .off it.; got 2"),
    ],
)
def test_bad_clicks_are_named(text, message):
    with pytest.raises(InputError, match=message):
        parse_clicks(text)


@pytest.mark.parametrize(
    ("box", "clicks", "message"),
    [
        (Box(10, 10, 90, 20), [], "box 10,10,90,20 is not inside the 80x60 image"),
        (Box(-1, 0, 10, 10), [], "box -1,0,10,10 is not inside the 80x60 image"),
        (Box(30, 10, 20, 40), [], "box 30,10,20,40 is empty or inverted"),
        (Box(20, 10, 20, 40), [], "box 20,10,20,40 is empty or inverted"),
        (Box(0, 0, 80, 60), [], "box covers the whole image"),
        (Box(3, 3, 77, 57), [], "box covers the whole image once grown by its 3-pixel margin"),
        (None, [Click(80, 5, True)], r"point \(80, 5\) is off the 80x60 image"),
        (None, [Click(5, -0.5, False)], r"point \(5, -0.5\) is off the 80x60 image"),
    ],
)
def test_prompts_that_do_not_fit_the_image_are_refused(box, clicks, message):
    with pytest.raises(InputError, match=message):
        check_prompts(80, 60, box, clicks)


@pytest.mark.parametrize(
    ("box", "clicks"),
    [(Box(4, 3, 77, 57), []), (Box(3, 3, 77, 57), [Click(1, 1, False)])],
    ids=["one column beyond the margin", "a click off the object"],
)
def test_a_box_leaving_some_background_is_taken(box, clicks):
    check_prompts(80, 60, box, clicks)
    assert outside_box(box, 80, 60).any() or clicks


def test_a_whole_image_box_with_a_negative_click_is_accepted():
    check_prompts(80, 60, Box(0, 0, 80, 60), [Click(2, 2, False)])


@pytest.mark.parametrize("clicks", [[Click(40, 30, True)], [Click(40, 30, False), Click(10, 10, False)]])
def test_prompts_naming_one_class_are_refused(clicks):
    with pytest.raises(InputError, match="the prompts name only one class"):
        prompt_labels(two_tone(), None, clicks)


def test_a_box_labels_beyond_it_background_and_guesses_the_object_within():
    box = Box(25, 15, 55, 45)
    labels = prompt_labels(two_tone(box=box), box)
    outside = outside_box(box, 80, 60)
    assert (labels[outside] == BACKGROUND).all()
    margin = round(2 * click_radius(80, 60))
    assert outside[:, : box.x0 - margin].all()
    assert not outside[box.y0 - margin : box.y1 + margin, box.x0 - margin : box.x1 + margin].any()
    square = np.zeros(labels.shape, bool)
    square[box.y0 + 4 : box.y1 - 4, box.x0 + 4 : box.x1 - 4] = True
    guessed = labels == OBJECT
    assert guessed.sum() > 0.3 * square.sum()  # the bright square, unlike anything beyond the box, is guessed
    assert (guessed <= square).all()  # and nothing of the dark rim or the margin


def test_clicks_override_the_box_guesses():
    box = Box(25, 15, 55, 45)
    labels = prompt_labels(two_tone(box=box), box, [Click(40, 30, False), Click(5, 5, True)])
    radius = click_radius(80, 60)
    assert labels[30, 40] == BACKGROUND and labels[30, round(40 + radius - 1)] == BACKGROUND
    assert labels[5, 5] == OBJECT  # far outside the box, where the box said background
    assert labels[5, round(5 + radius + 2)] == BACKGROUND


def test_scribbles_win_where_drawn():
    box = Box(25, 15, 55, 45)
    scribbles = np.zeros((60, 80), np.uint8)
    scribbles[30, 30:50] = BACKGROUND  # across the guessed square
    scribbles[2, 2:10] = 3  # a class of their own, outside the box
    labels = prompt_labels(two_tone(box=box), box, [Click(40, 30, True)], scribbles)
    assert (labels[30, 30:50] == BACKGROUND).all()
    assert (labels[2, 2:10] == 3).all()
    assert labels[31, 40] == OBJECT  # the click where the scribble is not


def test_object_seeds_given_replace_the_guesses_within_the_box_only():
    box = Box(25, 15, 55, 45)
    seeds = np.zeros((60, 80), bool)
    seeds[20:22, 30:32] = seeds[0:2, 0:2] = True
    labels = prompt_labels(two_tone(box=box), box, object_seeds=seeds)
    assert np.argwhere(labels == OBJECT).tolist() == [[20, 30], [20, 31], [21, 30], [21, 31]]


def test_given_labels_are_the_prompts_without_the_guesses():
    box = Box(25, 15, 55, 45)
    labels = given_labels((60, 80), box, [Click(40, 30, True)])
    assert (labels[outside_box(box, 80, 60)] == BACKGROUND).all()
    assert labels[30, 40] == OBJECT and np.count_nonzero(labels == OBJECT) < 20  # the click's disc, no guesses
    with_guesses = prompt_labels(two_tone(box=box), box, [Click(40, 30, True)])
    assert (with_guesses[labels > 0] == labels[labels > 0]).all()


def test_the_colour_cut_moves_a_rough_object_to_the_colours_edges():
    box = Box(25, 15, 55, 45)
    image = two_tone(box=box)
    square = np.zeros((60, 80), bool)
    square[box.y0 + 4 : box.y1 - 4, box.x0 + 4 : box.x1 - 4] = True
    rough = np.zeros((60, 80), bool)
    rough[box.y0 + 8 : box.y1, box.x0 : box.x1 - 8] = True  # off by 4 px one way and the other
    cut = colour_cut_from(image, rough, given_labels((60, 80), box))
    assert (cut == square).mean() > 0.99 and not (cut & outside_box(box, 80, 60)).any()


def test_a_large_images_colour_cut_runs_its_first_rounds_smaller(monkeypatch):
    import gdc.labelling

    box = Box(25, 15, 55, 45)
    square = np.zeros((60, 80), bool)
    square[box.y0 + 4 : box.y1 - 4, box.x0 + 4 : box.x1 - 4] = True
    rough = np.zeros((60, 80), bool)
    rough[box.y0 + 8 : box.y1, box.x0 : box.x1 - 8] = True
    monkeypatch.setattr(gdc.labelling, "MAX_PIXELS", 1200)  # a quarter of the image's pixels
    cut = colour_cut_from(two_tone(box=box), rough, given_labels((60, 80), box))
    assert cut.shape == (60, 80) and (cut == square).mean() > 0.97


def test_the_colour_cut_keeps_the_start_when_it_finds_no_object():
    flat = np.full((60, 80, 3), 90, np.uint8)  # nothing tells the object's colours from the background's
    start = np.zeros((60, 80), bool)
    start[20:40, 30:50] = True
    assert colour_cut_from(flat, start, given_labels((60, 80), Box(25, 15, 55, 45))) is start


def photo_object(shape=(120, 160)) -> tuple[np.ndarray, np.ndarray]:
    """(image, object mask): a horse of chelsea's fur, half the image's size, on coffee."""
    height, width = shape
    fur, coffee = ((resize(photo, shape, anti_aliasing=True) * 255).astype(np.uint8)
                   for photo in (skimage.data.chelsea(), skimage.data.coffee()))
    horse = np.zeros(shape, bool)
    horse[height // 4 : -height // 4, width // 4 : -width // 4] = resize(
        ~skimage.data.horse().astype(bool), (height // 2, width // 2), order=0
    ).astype(bool)
    return np.where(horse[..., None], fur, coffee), horse


def object_iou(labels, truth_object):
    object_ = labels == OBJECT
    return (object_ & truth_object).sum() / (object_ | truth_object).sum()


def test_segment_prompted_finds_the_photo_object_in_a_box():
    # 240x320: at 120x160 the fur's and coffee's colours overlap too much for the colour cut (IoU 0.33, the head's 0.55)
    image, horse = photo_object((240, 320))
    rows, cols = np.nonzero(horse)
    box = Box(int(cols.min()) - 3, int(rows.min()) - 3, int(cols.max()) + 4, int(rows.max()) + 4)
    result = segment_prompted(image, options=SegmentOptions(seed=0, **QUICK), box=box)
    assert result.classes == (OBJECT, BACKGROUND)
    assert (result.labels[outside_box(box, *image.shape[1::-1])] == BACKGROUND).all()
    assert {"prompts", "colour"} <= result.timings.keys()  # the seeds before the head, the colour cut after
    np.testing.assert_array_equal(result.probabilities.argmax(0), (result.labels == BACKGROUND).astype(int))
    assert object_iou(result.labels, horse) > 0.7  # the head's alone: 0.61


@pytest.mark.parametrize("given, halved", [((256, 8), (128, 4)), ((1, 1), (1, 1)), ((0, 3), (0, 2))])
def test_a_box_draws_half_the_cells_and_samples_and_grows_no_superpixels(given, halved):
    options = box_options(SegmentOptions(train_cells=given[0], samples=given[1], superpixel_size=120))
    assert (options.train_cells, options.samples, options.superpixel_size) == (*halved, 0)


class Captured(Exception):
    """What segment_prompted handed segment: its options."""


@pytest.mark.parametrize("prompts, box_run", [(dict(box=Box(10, 10, 60, 50)), True),
                                               (dict(clicks=[Click(30, 30, True), Click(2, 2, False)]), False)])
def test_segment_prompted_runs_a_box_under_box_options(monkeypatch, prompts, box_run):
    import gdc.engine

    def capture(image, labels, options, **_):
        raise Captured(options)

    monkeypatch.setattr(gdc.engine, "segment", capture)
    options = SegmentOptions(seed=0, **QUICK)
    with pytest.raises(Captured) as captured:
        segment_prompted(two_tone(), options=options, **prompts)
    assert captured.value.args[0] == (box_options(options) if box_run else options)


def test_segment_prompted_refines_from_clicks():
    image, horse = photo_object()
    options = SegmentOptions(seed=0, **QUICK)
    rows, cols = np.nonzero(horse)
    on, off = (cols[len(cols) // 2], rows[len(rows) // 2]), (3, 3)
    first = segment_prompted(image, options=options, clicks=[Click(*on, True), Click(*off, False)])
    assert first.labels[on[1], on[0]] == OBJECT and first.labels[off[1], off[0]] == BACKGROUND
    more = [Click(*on, True), Click(*off, False), Click(image.shape[1] - 4, image.shape[0] - 4, False)]
    second = segment_prompted(image, options=options, clicks=more, previous=first.warm_start)
    assert second.warm and second.labels[-4, -4] == BACKGROUND


def test_segment_prompted_with_scribbles_alone_is_segment(scene2):
    image, _, scribbles = scene2
    options = SegmentOptions(seed=0, **QUICK)
    np.testing.assert_array_equal(segment_prompted(image, scribbles, options).labels, segment(image, scribbles, options).labels)
    with pytest.raises(InputError, match="give scribbles, a box or points"):
        segment_prompted(image)

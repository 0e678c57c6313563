"""SegmentOptions is the one list of engine options: every door derives from it, and unknown names are refused."""
import argparse
import json

import numpy as np
import pytest

from apps.arguments import add_engine_options, engine_options
from apps.batch import server_options
from gdc.errors import InputError
from gdc.options import SegmentOptions, option, refine_pairs, request_options, reused_options
from gdc.warm import fingerprint
from service.schemas import SERVER_MAXIMA, ServerOptions, option_limits, resolve_options, segment_form, server_maximum
from service.settings import Settings


class Extended(SegmentOptions):
    """The engine's options and one more, as a new option would be added: a field and nothing else."""

    blur: float = option(0.5, "σ of a blur before the stem", request=True, reused=True, ge=0.0, le=4.0)


def test_an_option_added_to_the_model_reaches_every_door():
    # The API's form, with the engine's bounds and description.
    form = segment_form(Extended)
    assert form(blur=1.5).options()["blur"] == 1.5 and form().options()["steps"] is None
    with pytest.raises(ValueError, match="less than or equal to 4"):
        form(blur=5)
    # GET /options.
    served = ServerOptions.from_settings(Settings(), Extended)
    assert served.fields["blur"].model_dump() == {"default": 0.5, "minimum": 0.0, "maximum": 4.0, "integer": False}
    assert served.descriptions["blur"] == "σ of a blur before the stem"
    # Every command's flags.
    parser = argparse.ArgumentParser()
    add_engine_options(parser, Extended)
    assert engine_options(parser.parse_args(["--blur", "2"]), Extended).blur == 2.0
    assert "σ of a blur before the stem (default 0.5)" in parser.format_help()
    # gdc batch's check of a server: taken when the server offers it.
    assert server_options(parser.parse_args(["--blur", "2"]), served.model_dump(), Extended) == {"blur": 2.0}
    # The warm start: another blur is another fingerprint, so a refine starts cold.
    assert "blur" in reused_options(Extended)
    image = np.zeros((8, 8, 3), np.uint8)
    assert fingerprint(image, Extended(blur=1.0)) != fingerprint(image, Extended(blur=2.0))


def test_batch_asks_a_server_only_for_what_it_takes():
    parser = argparse.ArgumentParser()
    add_engine_options(parser)
    served = ServerOptions.from_settings(Settings()).model_dump()
    # Switches and choices are the server's too (it refused --edges/--no-edges before).
    args = parser.parse_args(["--no-edges", "--conv", "normal", "--refine-samples", "3"])
    assert server_options(args, served) == {"edges": False, "conv": "normal", "refine_samples": 3}
    with pytest.raises(InputError, match="chooses --device, --lr itself"):
        server_options(parser.parse_args(["--lr", "0.1", "--device", "cpu"]), served)


@pytest.mark.parametrize(
    "field, named",
    [
        ("stepz", "'stepz' (did you mean 'steps'?)"),
        ("refine_sample", "'refine_sample' (did you mean 'refine_samples'?)"),
        ("lr", "'lr'"),  # an engine option the server sets itself is unknown to a request
    ],
)
def test_an_unknown_form_field_gets_422_naming_it_and_the_closest(client, upload, field, named):
    response = client.post("/segment", files=upload(), data={field: "5"})
    assert response.status_code == 422, response.text
    assert named in response.json()["detail"] and "unknown field" in response.json()["detail"]


def test_a_misspelt_stroke_key_gets_422_naming_it(client, upload):
    files = {"image": upload()["image"]}
    strokes = [{"label": 1, "points": [[5, 5]], "width": 4}, {"label": 2, "points": [[50, 50]], "widht": 4}]
    response = client.post("/segment", files=files, data={"strokes": json.dumps(strokes)})
    assert response.status_code == 422
    assert "'widht' (did you mean 'width'?)" in response.json()["detail"]


def test_the_engine_refuses_a_misspelt_option_naming_the_closest():
    with pytest.raises(ValueError, match=r"'sigmaa' \(did you mean 'sigma'\?\)"):
        SegmentOptions(sigmaa=0.3)



@pytest.mark.parametrize("refine, plain", [pair for pair in refine_pairs().items() if pair[0] in request_options()])
def test_a_refine_option_is_capped_as_the_option_it_refines(refine, plain):
    settings = Settings(max_steps=3, max_samples=2)
    assert server_maximum(refine, settings) == server_maximum(plain, settings)
    if plain in SERVER_MAXIMA:
        cap = getattr(settings, SERVER_MAXIMA[plain])
        assert option_limits(settings)[refine].maximum == cap
        with pytest.raises(ValueError, match=f"{refine} must be at most {cap} on this server"):
            resolve_options({refine: cap + 1}, settings)


def test_the_server_caps_steps_and_samples_and_through_them_their_refines():
    assert {name for name in request_options() if server_maximum(name, Settings()) is not None} == {
        "steps", "samples", "refine_steps", "refine_samples"
    }

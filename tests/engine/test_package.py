import subprocess
import sys

import gdc


def test_public_names_are_the_objects_not_modules():
    from gdc import SegmentOptions, create_conv, segment

    assert callable(segment) and segment.__name__ == "segment"
    assert gdc.segment is segment and create_conv.__module__ == "gdc.convs"
    assert SegmentOptions.__module__ == "gdc.options" and SegmentOptions().steps > 0


def test_torch_free_parts_import_without_torch():
    code = "import sys, gdc.options, gdc.inputs, gdc.imageio, gdc.client, apps.evaluate; print('torch' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert run.stdout.strip() == "False"

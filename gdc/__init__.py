"""gdc: scribbles to full label maps with Gaussian dynamic convolution (Sun et al., TCSVT 2021).

Public names load lazily (PEP 562) so that torch-free parts, ``gdc.options`` and
``gdc.client``, import without torch: the web API validates requests with them.
"""
from importlib import import_module

_EXPORTS = {
    "segment": "gdc.engine",
    "SegmentResult": "gdc.engine",
    "SegmentOptions": "gdc.options",
    "InputError": "gdc.errors",
    "Cancelled": "gdc.errors",
    "create_conv": "gdc.convs",
    "load_stem": "gdc.stem",
    "warm_up": "gdc.warmup",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'gdc' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)

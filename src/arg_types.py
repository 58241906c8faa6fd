"""argparse types for numeric flags: each says its allowed range in argparse's error (no torch, so the scripts
that only read results can use them; cli.py offers them to the others)."""
import math


def bounded_int(low, high=None, name=""):
    """argparse type: an integer in [low, high] (no upper bound when high is None); name says so in errors."""
    def parse(text):
        value = int(text)
        if value < low or (high is not None and value > high):
            raise ValueError(text)
        return value
    parse.__name__ = name
    return parse


positive_int = bounded_int(1, name="integer of at least 1")
non_negative_int = bounded_int(0, name="integer of at least 0")
seed_int = bounded_int(0, 2**32 - 1, name="seed between 0 and 2**32 - 1")
# Below 32 px the deepest feature maps of the ResNet34 networks are 1x1; above 4096 px one image needs gigabytes.
image_size_int = bounded_int(32, 4096, name="image size between 32 and 4096 pixels")


def bounded_float(low, high=math.inf, low_open=False, name=""):
    """argparse type: a finite float in [low, high] (or (low, high] with low_open); name says so in errors."""
    def parse(text):
        value = float(text)
        if not math.isfinite(value) or value > high or value < low or (low_open and value == low):
            raise ValueError(text)
        return value
    parse.__name__ = name
    return parse


probability = bounded_float(0.0, 1.0, name="probability between 0 and 1")
positive_float = bounded_float(0.0, low_open=True, name="finite number above 0")
non_negative_float = bounded_float(0.0, name="finite number of at least 0")

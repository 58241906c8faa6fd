import numpy as np

from visualize import CLAIMED, CORRECT, MISSED, error_overlay, prediction_figure


def test_found_missed_and_claimed_pixels_get_three_colours():
    image = np.zeros((1, 4, 3), np.uint8)
    pred = np.array([[True, False, True, False]])
    true = np.array([[True, True, False, False]])
    out = error_overlay(image, pred, true, alpha=1.0)
    assert [tuple(pixel) for pixel in out[0]] == [CORRECT, MISSED, CLAIMED, (0, 0, 0)]


def test_a_gallery_has_a_panel_per_image_and_a_legend():
    panel = (np.zeros((8, 8, 3), np.uint8), np.eye(8, dtype=bool), np.eye(8, dtype=bool), np.full((8, 8), 3), "x")
    fig = prediction_figure([panel] * 3, columns=2)
    assert sum(ax.get_title() == "x" for ax in fig.axes) == 3
    assert len(fig.legends) == 1 and len(fig.legends[0].get_texts()) == 4

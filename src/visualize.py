"""Pictures of a prediction against its ground truth: correct pet, missed pet and background wrongly claimed as
pet in three colours, the trimap's border band outlined, and a legend on the figure."""
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

# Okabe and Ito's colours, told apart with the common colour-vision deficiencies.
CORRECT, MISSED, CLAIMED = (0, 158, 115), (230, 159, 0), (0, 114, 178)
LEGEND = [Patch(color=np.array(CORRECT) / 255, label="pet, found"),
          Patch(color=np.array(MISSED) / 255, label="pet, missed (false negative)"),
          Patch(color=np.array(CLAIMED) / 255, label="background claimed as pet (false positive)"),
          Line2D([], [], color="black", linewidth=0.8, label="edges of the trimap's border band")]


def error_overlay(image, pred, true, alpha=0.55):
    """An H x W x 3 uint8 image with found, missed and wrongly claimed pet pixels blended in their colours."""
    out = image.astype(np.float32)
    for region, color in ((pred & true, CORRECT), (true & ~pred, MISSED), (pred & ~true, CLAIMED)):
        out[region] = (1 - alpha) * out[region] + alpha * np.array(color, np.float32)
    return out.astype(np.uint8)


def draw_prediction(ax, image, pred, true, trimap, title):
    """Draw one image's errors on a matplotlib axis; pred and true are boolean H x W, trimap holds 1, 2, 3."""
    ax.imshow(error_overlay(image, pred, true))
    band = trimap == 3
    if band.any() and not band.all():
        ax.contour(band, levels=[0.5], colors="black", linewidths=0.5)
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def prediction_figure(panels, columns=1):
    """A figure of (image, pred, true, trimap, title) panels in a grid, with the legend below them."""
    rows = -(-len(panels) // columns)
    fig = Figure(figsize=(max(3.2 * columns, 4.5), 3.2 * rows + (0.5 if columns > 1 else 1.0)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, columns)).ravel()
    for ax, panel in zip(axes, panels):
        draw_prediction(ax, *panel)
    for ax in axes[len(panels):]:
        ax.axis("off")
    fig.legend(handles=LEGEND, loc="outside lower center", ncol=2 if columns > 1 else 1, fontsize=7, frameon=False)
    return fig

"""The spectra figures as a scientist reads them: train IDs written out, the axis named."""

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from widgets.figures import separability_figure, stream_figure

FIRST = 1_200_000_000  # an EuXFEL train ID


def _drawn(fig):
    FigureCanvasAgg(fig).draw()  # tick labels are made at drawing time
    return fig


def test_the_stream_plot_writes_train_ids_out():
    trains = list(range(FIRST, FIRST + 7))  # a stream's first trains: a range matplotlib would offset
    fig = _drawn(stream_figure(Figure(), trains, {"before": [1.0] * 7, "after": [0.0] * 7},
                               [0.99] * 7, [0.0] * 7, [(FIRST, FIRST + 6, "before")]))
    conf_ax = fig.axes[1]
    assert conf_ax.xaxis.get_offset_text().get_text() == ""  # no "+1.2e9" beside 0..6
    lo, hi = conf_ax.get_xlim()
    shown = [t.get_text() for t in conf_ax.get_xticklabels() if lo <= t.get_position()[0] <= hi]
    ids = [int(t) for t in shown]  # whole numbers, not 1.2e9 nor 1200000000.0
    assert ids == sorted(ids) and FIRST <= ids[0] and ids[-1] <= FIRST + 6 and len(ids) >= 3, shown


def test_the_separability_figure_names_the_axis():
    model = {"bins": [[10, 30], [60, 90]], "separability": [0.8, 1.0], "weights": [0.2, 1.0]}
    X, y = np.ones((4, 100)), np.array([0, 0, 1, 1])
    axis = np.linspace(10, 90, 100)
    assert separability_figure(model, X, y, axis, axis_label="twoTheta").axes[1].get_xlabel() == "twoTheta"
    assert separability_figure(model, X, y, axis).axes[1].get_xlabel() == "spectrum axis"
    assert separability_figure(model, X, y).axes[1].get_xlabel() == "point"

"""``FrameViewer``: the frames of an NXmx file as detector images, with play and a slider."""

from __future__ import annotations

from pathlib import Path

import ipywidgets as W
import numpy as np

from .canvas import figure_widget
from .messages import StatusLine


class FrameViewer(W.VBox):
    """Detector images assembled with the geometry written in the NXmx file.

    ``path``: an NXmx file written by ``convert_run``. Frames are read one at
    a time (a virtual dataset over a large run is never loaded whole).
    """

    def __init__(self, path: str | Path, *, interval_ms: int = 500, **kw):
        from server_ext.nxmx.readback import FrameImages

        self.status = StatusLine()
        self.frames = FrameImages(path)
        n = len(self.frames)
        self.slider = W.IntSlider(value=0, min=0, max=max(n - 1, 0), description="frame",
                                  continuous_update=False, layout=W.Layout(width="60%"))
        self.play = W.Play(value=0, min=0, max=max(n - 1, 0), interval=interval_ms, description="play")
        W.jslink((self.play, "value"), (self.slider, "value"))
        self.fig, self.canvas = figure_widget(6.5, 6)
        self.ax = self.fig.add_subplot()
        self._image = None
        self.slider.observe(lambda change: self.show(change["new"]), names="value")
        super().__init__([W.HBox([self.play, self.slider]), self.canvas, self.status], **kw)
        self.add_class("daas-frame-viewer")
        self.show(0)

    def show(self, index: int) -> None:
        """Draw frame *index*; a frame that cannot be read becomes a message, not an exception."""
        try:
            image, (cy, cx) = self.frames.image(index)
        except Exception as e:  # noqa: BLE001 -- a moved run file must not break the viewer
            self.status.error(e)
            return
        lit = image[np.isfinite(image) & (image > 0)]  # sparse spots: scale on the lit pixels
        vmax = max(float(np.percentile(lit, 90)), 1.0) if lit.size else 1.0
        if self._image is None:
            self._image = self.ax.imshow(image, origin="lower", cmap="viridis", vmin=0, vmax=vmax,
                                         interpolation="nearest")
            self.ax.plot([cx], [cy], "r+", markersize=12)
            self.fig.colorbar(self._image, ax=self.ax, shrink=0.8, label="photons")
            self.ax.set_xticks([])
            self.ax.set_yticks([])
        else:
            self._image.set_data(image)
            self._image.set_clim(0, vmax)
        label = f"frame {index} of {len(self.frames)}"
        if self.frames.train_ids is not None:
            label += f" (train {int(self.frames.train_ids[index])})"
        self.ax.set_title(f"{self.frames.path.name}: {label}", fontsize=9)
        self.canvas.draw_idle()
        self.status.show(label)

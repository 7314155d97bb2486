"""Matplotlib figures as widgets (ipympl canvases), whatever ``%matplotlib`` says.

The figure is made without pyplot, so it is not shown twice and no global
backend is switched; its canvas is an ipywidgets DOM widget that JupyterLab
renders with ipympl's prebuilt lab extension.
"""

from __future__ import annotations


def figure_widget(width: float = 8, height: float = 4, **subplots):
    """``(figure, canvas_widget)``; ``subplots`` go to ``figure.subplots`` (axes in ``figure.axes``)."""
    from ipympl.backend_nbagg import Canvas, FigureManager
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    canvas = Canvas(fig)
    FigureManager(canvas, 0)
    canvas.header_visible = False
    canvas.toolbar_visible = "fade-in-fade-out"
    canvas.resizable = False
    if subplots:
        fig.subplots(**subplots)
    return fig, canvas

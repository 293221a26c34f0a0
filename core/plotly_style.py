"""The one Plotly look shared by the dashboard's figures and the benchmark's figures."""
from __future__ import annotations

from functools import lru_cache

import plotly.graph_objects as go


@lru_cache(maxsize=1)
def template() -> go.layout.Template:
    """The layout part of Plotly's "plotly_white", built once.

    Naming a template by string makes Plotly deep-copy all of it (its defaults for every trace type
    included) into each figure: about 90 ms a figure on this project's 2-core machine, most of a
    slider step's time on the server. Passing this object costs about 10 ms. The traces here set
    their own colours, so the per-trace defaults are not needed."""
    import plotly.io as pio

    return go.layout.Template(layout=pio.templates["plotly_white"].layout)

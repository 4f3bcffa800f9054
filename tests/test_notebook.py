"""docs/quickstart.ipynb runs top to bottom as a newcomer would run it (so it never rots).

It is executed in a fresh Jupyter kernel by nbclient, from ``docs/`` as its working directory;
every cell must run without an error, the information-plane figure must be drawn as an image,
and the numbers it prints must be finite. The stored notebook carries no outputs (they would
go stale with every change to the library and bloat the diff).
"""

from __future__ import annotations

import os
import re

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")
NOTEBOOK = os.path.join(DOCS, "quickstart.ipynb")


def test_stored_notebook_has_no_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "the quick start has code cells"
    assert all(not c.outputs and c.execution_count is None for c in code)
    # the library API, not the command line
    src = "\n".join(c.source for c in code)
    assert "train.train_population" in src and "ib-jax train" not in src and "subprocess" not in src


@pytest.mark.slow
def test_quickstart_runs_top_to_bottom():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": DOCS}})
    client.execute()  # raises CellExecutionError naming the cell on any error
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the information plane is drawn"
    text = "\n".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    # the final H(X|T) of h5 per level: two finite values within [0, 12] bits
    h = [float(v) for v in re.findall(r"H\(X\|T\) of h5 = ([-\d.naif]+) bits", text)]
    assert len(h) == 2 and all(0.0 <= v <= 12.0 for v in h), text
    assert "nan" not in text.lower()

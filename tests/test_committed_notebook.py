"""The committed notebook carries the outputs of one clean top-to-bottom default run."""

import json
import re

from conftest import NOTEBOOK, cell_source, code_cells

ABSOLUTE_PATH = re.compile(r"(/work/|/tmp/|/home/|/root/|/Users/|[A-Za-z]:\\\\)")


def output_texts(cell):
    """Every text an output of the cell carries, stream or rich."""
    for output in cell["outputs"]:
        if "text" in output:
            yield "".join(output["text"])
        for mime, value in output.get("data", {}).items():
            if mime.startswith("text/"):
                yield "".join(value)


def test_outputs_come_from_one_run_in_order():
    counts = [cell["execution_count"] for cell in code_cells()]
    assert counts == list(range(1, len(counts) + 1))


def test_no_error_outputs_and_no_local_paths():
    for cell in code_cells():
        assert all(output["output_type"] != "error" for output in cell["outputs"]), cell_source(cell)[:80]
        for text in output_texts(cell):
            assert not ABSOLUTE_PATH.search(text), text[:200]


def test_shows_a_grid_for_every_default_epoch():
    cells = code_cells()
    parameters = next(cell for cell in cells if "parameters" in cell["metadata"].get("tags", []))
    default_epochs = int(re.search(r"^EPOCHS = (\d+)", cell_source(parameters), re.MULTILINE).group(1))
    training = next(cell for cell in cells if "gan.fit(" in cell_source(cell))
    grids = [output for output in training["outputs"] if "image/png" in output.get("data", {})]
    assert len(grids) == default_epochs


def test_no_stray_metadata():
    notebook = json.loads(NOTEBOOK.read_text())
    assert set(notebook["metadata"]) <= {"kernelspec", "language_info"}
    for cell in notebook["cells"]:
        assert set(cell["metadata"]) <= {"tags", "jupyter"}, cell["metadata"]
        assert cell["metadata"].get("jupyter", {"source_hidden": True}) == {"source_hidden": True}


def test_progress_gif_is_an_html_image_that_static_renders_show():
    outputs = [output for cell in code_cells() for output in cell["outputs"]]
    gifs = [output for output in outputs if "data:image/gif;base64," in "".join(output.get("data", {}).get("text/html", ""))]
    assert len(gifs) == 1
    assert not [output for output in outputs if "image/gif" in output.get("data", {})], "a bare image/gif shows as text in HTML"


def test_plumbing_cells_start_collapsed_and_say_what_they_hold():
    hidden = [cell for cell in code_cells() if cell["metadata"].get("jupyter", {}).get("source_hidden")]
    assert hidden
    for cell in hidden:
        assert cell_source(cell).startswith("# "), cell_source(cell)[:60]


def test_no_code_cell_is_over_80_lines():
    assert max(len(cell_source(cell).splitlines()) for cell in code_cells()) <= 80


def test_nbval_checks_the_printout_of_the_data_cell():
    tagged = [cell for cell in code_cells() if "nbval-check-output" in cell["metadata"].get("tags", [])]
    assert len(tagged) == 1 and "load_dataset(DATASET, DATA_PATH)" in cell_source(tagged[0])
    assert "x_train (60000, 28, 28)" in "".join(tagged[0]["outputs"][0]["text"])  # the full MNIST, not the fallback

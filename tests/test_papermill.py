"""papermill runs the notebook with its own parameters, injected after the cell tagged `parameters`."""

import subprocess
import sys

import nbformat
from conftest import NOTEBOOK, REPO_ROOT, notebook_env


def test_papermill_parameters_override_the_defaults(tmp_path):
    output_dir = tmp_path / "papermill_outputs"
    executed = tmp_path / "run.ipynb"
    env = notebook_env(tmp_path / "unused")
    data_parameter = ["-p", "DATA_PATH", env.pop("MNIST_GAN_DATA_PATH")]
    env.pop("MNIST_GAN_OUTPUT_DIR")
    command = [
        sys.executable, "-m", "papermill", str(NOTEBOOK), str(executed), "--cwd", str(REPO_ROOT),
        "-p", "EPOCHS", "1", "-p", "TRAIN_SIZE", "256", "-p", "BATCH_SIZE", "32",
        "-p", "EVALUATOR_EPOCHS", "1", "-p", "EVAL_SAMPLES", "1000",
        "-p", "OUTPUT_DIR", str(output_dir), *data_parameter,
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stderr[-5000:]

    assert sorted(path.name for path in (output_dir / "grids").glob("*.png")) == ["epoch_001.png"]
    assert (output_dir / "generator.keras").is_file()
    notebook = nbformat.read(executed, as_version=4)
    injected = [cell for cell in notebook.cells if "injected-parameters" in cell.metadata.get("tags", [])]
    assert len(injected) == 1 and "EPOCHS = 1" in injected[0].source
    history_lines = (output_dir / "history.csv").read_text().strip().splitlines()
    assert len(history_lines) == 2  # header and one epoch

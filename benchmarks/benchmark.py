"""Benchmark one headless run of mnist_gan.ipynb (run by hand, not in CI).

It executes the notebook with `jupyter nbconvert --execute` in a fresh folder and writes one JSON file with the
wall time of the run and of each epoch, training images per second, the peak resident memory of the notebook's
kernel, and the final scores from scores.json.

    python benchmarks/benchmark.py --output default.json
    python benchmarks/benchmark.py --reference --output reference.json
    python benchmarks/benchmark.py -p EPOCHS 2 -p TRAIN_SIZE 10000 --output short.json

`--reference` runs the TensorFlow DCGAN tutorial's configuration instead of ours: its generator and
discriminator, Adam 1e-4 (beta_1 0.9, constant) for both, batch 256, 100-dimensional noise, and no moving average of
the generator. MNIST runs are scored by the frozen evaluator/mnist_evaluator.keras; for Fashion-MNIST,
`--evaluator` copies a trained evaluator_fashion_mnist.keras into the new run first, so that two runs are scored
by the very same classifier.
"""

import argparse
import csv
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tests' way to run the notebook headless
from conftest import NOTEBOOK, REPO_ROOT, nbconvert_command, notebook_env  # noqa: E402

TF_TUTORIAL = {
    "ARCHITECTURE": "tf-tutorial",
    "LEARNING_RATE": "1e-4",
    "FINAL_RATE_SHARE": "1",  # a constant rate
    "BETA_1": "0.9",
    "BATCH_SIZE": "256",
    "LATENT_DIM": "100",
    "DROPOUT": "0.3",
    "EMA": "0",  # the tutorial draws with the trained generator itself
    "CLUSTERS": "0",  # nor does it sort the digits into clusters
}


def parse_arguments(argv=None):
    """The command line: configuration, extra parameters, evaluator to reuse, where to write."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", action="store_true", help="run the TensorFlow DCGAN tutorial's configuration")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="set a notebook parameter (repeatable), e.g. -p EPOCHS 2")
    parser.add_argument("--evaluator", type=Path, help="a trained evaluator_<DATASET>.keras to reuse")
    parser.add_argument("--notebook", type=Path, default=NOTEBOOK, help="a variant of the notebook to run instead")
    parser.add_argument("--workdir", type=Path, help="folder for the run (default: a new temporary folder)")
    parser.add_argument("--output", type=Path, default=Path("benchmark.json"), help="where to write the JSON")
    return parser.parse_args(argv)


def run_notebook(workdir, output_dir, parameters, notebook=NOTEBOOK):
    """Execute the notebook headless with MNIST_GAN_* variables; return (wall seconds, peak kernel RSS in MiB)."""
    env = notebook_env(output_dir, **{f"MNIST_GAN_{name}": value for name, value in parameters.items()})
    command = [*nbconvert_command(workdir, notebook=notebook), "--ExecutePreprocessor.timeout=-1"]
    start = time.perf_counter()
    result = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    wall_seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"The notebook failed:\n{result.stderr[-5000:]}")
    # ru_maxrss of waited-for descendants (the kernel is nbconvert's child), in KiB on Linux.
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return wall_seconds, peak_mib


def main(argv=None):
    """Run the benchmark and write its JSON."""
    arguments = parse_arguments(argv)
    workdir = arguments.workdir or Path(tempfile.mkdtemp(prefix="mnist_gan_benchmark_"))
    output_dir = workdir / "outputs"
    output_dir.mkdir(parents=True, exist_ok=True)
    parameters = {**(TF_TUTORIAL if arguments.reference else {}), **dict(arguments.parameter)}
    if arguments.evaluator:
        shutil.copy(arguments.evaluator, output_dir / f"evaluator_{parameters.get('DATASET', 'mnist')}.keras")

    wall_seconds, peak_mib = run_notebook(workdir, output_dir, parameters, arguments.notebook)
    with open(output_dir / "history.csv", newline="") as history_file:
        epoch_seconds = [float(row["epoch_seconds"]) for row in csv.DictReader(history_file)]
    scores = json.loads((output_dir / "scores.json").read_text())
    report = {
        "configuration": "tf-tutorial" if arguments.reference else "default",
        "notebook": arguments.notebook.name,
        "parameters": {name: value for name, value in parameters.items() if name not in ("OUTPUT_DIR", "DATA_PATH")},
        "wall_seconds": round(wall_seconds, 1),
        "train_seconds": round(scores["train_seconds"], 1),
        "epoch_seconds": [round(seconds, 1) for seconds in epoch_seconds],
        "images_per_second": round(scores["images_per_second"], 1),
        "peak_rss_mib": round(peak_mib),
        "scores": {key: value for key, value in scores.items() if key not in ("train_seconds", "images_per_second")},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "workdir": str(workdir),
    }
    arguments.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({key: report[key] for key in ("configuration", "wall_seconds", "images_per_second", "peak_rss_mib")}))
    print(f"fd {scores['fd']:.2f} (reference {scores['reference']['fd']:.2f}), classifier score "
          f"{scores['classifier_score']:.2f}; full report in {arguments.output}")


if __name__ == "__main__":
    main()

"""Time and label purity of the notebook's clusters: scikit-learn's k-means against the hand-written one it replaced.

The hand-written `cluster_digits` is read from the notebook as it was at commit db2b960 (`git show`), today's from
the working tree; both cluster MNIST's 60,000 training digits into 200 groups at each seed, one after the other.

    python benchmarks/kmeans.py --data ../shared/data/mnist.npz --seeds 42 1
    python benchmarks/kmeans.py --variant hand_written_kmeans.ipynb   # today's notebook with the old k-means

The variant is for `benchmarks/benchmark.py --notebook`: the same training with either clustering.
"""

import argparse
import ast
import json
import subprocess
import time
from pathlib import Path

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics.cluster import contingency_matrix

REPO_ROOT = Path(__file__).resolve().parents[1]
HAND_WRITTEN_COMMIT = "db2b960"  # the last commit with the hand-written k-means


def cluster_function(notebook_text):
    """The `cluster_digits` function defined in a notebook's JSON text."""
    for cell in json.loads(notebook_text)["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "code" and "def cluster_digits(" in source:
            tree = ast.parse(source)
            definition = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "cluster_digits")
            namespace = {"np": np, "KMeans": KMeans, "PCA": PCA}
            exec(compile(ast.Module(body=[definition], type_ignores=[]), "cluster_digits", "exec"), namespace)  # noqa: S102
            return namespace["cluster_digits"]
    raise ValueError("no cell defines cluster_digits")


def write_variant(old_notebook, path):
    """Write today's notebook with the cell that defines cluster_digits as it was in `old_notebook`."""
    def clusters_cell(notebook):
        return next(cell for cell in notebook["cells"] if "def cluster_digits(" in "".join(cell["source"]))

    notebook = json.loads((REPO_ROOT / "mnist_gan.ipynb").read_text())
    cell, old_source = clusters_cell(notebook), "".join(clusters_cell(json.loads(old_notebook))["source"])
    cell["source"], cell["outputs"] = old_source.replace('mnist["', 'data["'), []  # the data's variable was renamed since
    path.write_text(json.dumps(notebook, indent=1) + "\n")


def main():
    """Cluster with both versions at each seed and print one line per run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO_ROOT.parent / "shared" / "data" / "mnist.npz"), help="MNIST .npz")
    parser.add_argument("--clusters", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1])
    parser.add_argument("--variant", type=Path, help="write today's notebook with the hand-written k-means here, and stop")
    arguments = parser.parse_args()
    old_notebook = subprocess.run(["git", "show", f"{HAND_WRITTEN_COMMIT}:mnist_gan.ipynb"], cwd=REPO_ROOT, capture_output=True,
                                  text=True, check=True).stdout
    if arguments.variant:
        write_variant(old_notebook, arguments.variant)
        return
    versions = {"hand-written": cluster_function(old_notebook),
                "scikit-learn": cluster_function((REPO_ROOT / "mnist_gan.ipynb").read_text())}
    with np.load(arguments.data) as data:
        pixels, labels = data["x_train"], data["y_train"].astype("int64")
    for seed in arguments.seeds:
        for name, cluster_digits in versions.items():
            start = time.perf_counter()
            groups = cluster_digits(pixels, arguments.clusters, seed)
            seconds = time.perf_counter() - start
            purity = contingency_matrix(labels, groups).max(axis=0).sum() / len(labels)
            shares = np.bincount(groups, minlength=arguments.clusters) / len(groups)
            print(f"seed {seed:>3}  {name:<13} {seconds:5.1f} s  purity {purity:.4f}  "
                  f"cluster shares {shares.min():.3%} to {shares.max():.3%}", flush=True)


if __name__ == "__main__":
    main()

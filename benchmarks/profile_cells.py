"""Where a run's time and memory go: execute the notebook cell by cell (run by hand).

    MNIST_GAN_EPOCHS=1 MNIST_GAN_OUTPUT_DIR=/tmp/profile python benchmarks/profile_cells.py [notebook.ipynb]

After each code cell it prints the cell's seconds, the kernel's resident memory (VmRSS) and its peak so far (VmHWM),
in MiB, and the cell's first line: the cell where the peak jumps is the one to look at. The MNIST_GAN_* variables
of the environment reach the notebook as usual.
"""

import os
import sys
import time
from pathlib import Path

import nbformat
import psutil
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "mnist_gan.ipynb"


def kernel_memory_mib(pid):
    """(VmRSS, VmHWM) of process `pid`, in MiB, from /proc (Linux)."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def main(argv=None):
    """Run the notebook given on the command line (default: the repository's) and print one line per code cell."""
    arguments = sys.argv[1:] if argv is None else argv
    path = Path(arguments[0]) if arguments else NOTEBOOK
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=-1, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    with client.setup_kernel(env=dict(os.environ)):
        kernel = next(child for child in psutil.Process().children(recursive=True) if "ipykernel" in " ".join(child.cmdline()))
        for index, cell in enumerate(notebook.cells):
            if cell.cell_type != "code":
                continue
            start = time.perf_counter()
            client.execute_cell(cell, index)
            resident, peak = kernel_memory_mib(kernel.pid)
            first_line = cell.source.splitlines()[0][:60] if cell.source else ""
            print(f"cell {index:3d} {time.perf_counter() - start:7.1f} s  RSS {resident:6.0f}  peak {peak:6.0f}  {first_line}", flush=True)


if __name__ == "__main__":
    main()

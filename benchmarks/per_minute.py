"""Quality per minute: our defaults and the TensorFlow tutorial's configuration after 1, 2, 4 and 8 minutes of training.

    python benchmarks/per_minute.py --output per_minute.json

Each run is one headless notebook run through benchmark.py with EPOCHS=1000 and TIME_LIMIT_MINUTES set, scored by the
frozen evaluator on 10,000 samples. The two configurations alternate (ours at 1 minute, the tutorial's at 1 minute,
ours at 2, ...), so that both meet the same machine over the same stretch of time. It prints a Markdown table.
With EPOCHS=1000 our learning rate never reaches the second half of training, where it decays: both keep theirs.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchmark  # noqa: E402


def main(argv=None):
    """Run the grid of benchmarks, write every report to one JSON file and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 2, 4, 8], help="training budgets")
    parser.add_argument("--notebook", type=Path, default=benchmark.NOTEBOOK, help="a variant of the notebook to run instead")
    parser.add_argument("--output", type=Path, default=Path("per_minute.json"), help="where to write the reports")
    arguments = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="mnist_gan_per_minute_"))
    reports = []
    for minutes in arguments.minutes:
        for configuration in ("default", "tf-tutorial"):
            name = f"{configuration}_{minutes:g}min"
            command = ["-p", "EPOCHS", "1000", "-p", "TIME_LIMIT_MINUTES", f"{minutes:g}", "--notebook", str(arguments.notebook),
                       "--workdir", str(folder / name), "--output", str(folder / f"{name}.json")]
            benchmark.main([*command, *(["--reference"] if configuration == "tf-tutorial" else [])])
            reports.append({"minutes": minutes, **json.loads((folder / f"{name}.json").read_text())})
            arguments.output.write_text(json.dumps(reports, indent=2) + "\n")  # after every run: a long grid may be cut short
    print("| Training | Ours: FD | recall | classifier score | epochs | Tutorial: FD | recall | classifier score | epochs |")
    print("|---|---|---|---|---|---|---|---|---|")
    for minutes in arguments.minutes:
        cells = []
        for configuration in ("default", "tf-tutorial"):
            report = next(r for r in reports if r["minutes"] == minutes and r["configuration"] == configuration)
            scores = report["scores"]
            cells += [f"{scores['fd']:.2f}", f"{scores['recall']:.3f}", f"{scores['classifier_score']:.2f}",
                      f"{len(report['epoch_seconds'])}"]
        print(f"| {minutes:g} min | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

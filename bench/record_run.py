"""Run one `dmn run APPLICATION ...` command, time it, and write its evaluation report (from the registered
version's MLflow run) to results/NAME.{md,json,html}, headed by the command, the wall time and the machine.

    python bench/record_run.py --name sst-dmnplus -- run sst
    python bench/record_run.py --name pos-dmnplus --scratch /tmp/pos-run -- run pos --model dmn+

The run writes its data, Prefect state and MLflow store under --scratch (a fresh temporary folder by default),
so it starts from nothing and leaves the working tree alone.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dmn.machine import machine

RESULTS = Path(__file__).resolve().parents[1] / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True, help="results/NAME.{md,json,html}")
    parser.add_argument("--scratch", type=Path, default=None, help="folder for data, Prefect and MLflow state")
    parser.add_argument("dmn_args", nargs=argparse.REMAINDER, help="after --: the arguments of `dmn`")
    args = parser.parse_args()
    dmn_args = [a for a in args.dmn_args if a != "--"]
    if dmn_args[:1] != ["run"]:
        parser.error("give a `dmn run APPLICATION ...` command after --")
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="dmn-record-"))
    scratch.mkdir(parents=True, exist_ok=True)
    tracking = f"sqlite:///{scratch / 'mlflow.db'}"
    command = [*dmn_args, "--data-root", str(scratch / "data"), "--tracking-uri", tracking]
    environment = {**os.environ, "PREFECT_HOME": str(scratch / "prefect")}
    environment.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "flows.cli", *command], cwd=scratch, env=environment)
    seconds = time.perf_counter() - started
    if done.returncode:
        return done.returncode

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking)
    versions = client.search_model_versions()
    latest = max(versions, key=lambda v: v.creation_timestamp)
    folder = Path(mlflow.artifacts.download_artifacts(run_id=latest.run_id, artifact_path="report",
                                                      tracking_uri=tracking))  # fmt: skip
    shown = "dmn " + " ".join(shlex.quote(a) for a in dmn_args)
    header = (
        f"Command: `python bench/record_run.py --name {args.name} -- {' '.join(shlex.quote(a) for a in dmn_args)}` "
        f"(that is `{shown}` on a fresh data root, Prefect home and MLflow store).\n\n"
        f"Wall time: {seconds:.0f} s ({seconds / 60:.1f} min) for the whole command, on {machine()}.\n\n"
    )
    report = json.loads((folder / "evaluation.json").read_text())
    report["recorded"] = {"command": shown, "wall_seconds": round(seconds, 1), "cores": os.cpu_count()}
    RESULTS.mkdir(exist_ok=True)
    _write(RESULTS / f"{args.name}.json", json.dumps(report, indent=2) + "\n")
    _write(RESULTS / f"{args.name}.md", header + (folder / "evaluation.md").read_text())
    _write(RESULTS / f"{args.name}.html", (folder / "evaluation.html").read_text())
    print(f"wrote results/{args.name}.{{md,json,html}} ({latest.name} version {latest.version}, {seconds:.0f} s)")
    return 0


def _write(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


if __name__ == "__main__":
    sys.exit(main())

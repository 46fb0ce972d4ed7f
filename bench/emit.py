"""The output of a bench script: one JSON line on stdout, with the command that produced it and the machine,
also written to a results file when one is given (how bench/results/ is filled)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from dmn.machine import machine


def emit(result: dict, results: Path | None) -> None:
    line = json.dumps(
        {
            **result,
            "machine": machine(),
            "command": f"python {Path(sys.argv[0]).as_posix()} " + " ".join(sys.argv[1:]),
        }
    )
    print(line)
    if results is not None:  # a temporary file, then a rename: never a half-written results file
        results.parent.mkdir(parents=True, exist_ok=True)
        temporary = results.with_name(f".{results.name}.tmp")
        temporary.write_text(line + "\n")
        os.replace(temporary, results)


def model_parser(description: str) -> argparse.ArgumentParser:
    """The options of a bench that reads a registered bAbI model and a bAbI test file of its task."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-uri", required=True, help="models:/NAME/VERSION or models:/NAME@ALIAS")
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--babi-file", type=Path, required=True, help="a bAbI test file of the model's task")
    parser.add_argument("--results", type=Path, default=None, help="also write the JSON line here")
    return parser

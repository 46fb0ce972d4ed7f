"""Latency of the registered bAbI pyfunc over REST, as users call it: `mlflow models serve` on 127.0.0.1, then
requests of 1 and of N rows (stories of the bAbI test file of a task), timed over several repeats. Prints one
JSON line (and writes it with --results): the median seconds of each, their ratio, rows/s, and whether the
N-row answers equal the answers of each row alone.

    python bench/serving_speed.py --model-uri models:/dmn-babi/1 --tracking-uri sqlite:///mlflow.db \
        --babi-file data/raw/.../qa1_babi_test.txt --rows 500 --results bench/results/serving_speed.json
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from emit import emit, model_parser

from dmn.data.babi import parse_babi_file


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, rows: list[list[str]]) -> tuple[float, list]:
    body = json.dumps({"dataframe_split": {"columns": ["story", "question"], "data": rows}}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=600) as response:
        answers = json.loads(response.read())["predictions"]
    return time.perf_counter() - started, answers


def main() -> None:
    parser = model_parser(__doc__)
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    questions = parse_babi_file(args.babi_file)[: args.rows]
    rows = [["\n".join(q.story), q.question] for q in questions]
    port = _port()
    bin_folder = str(Path(sys.executable).parent)  # the scoring server starts uvicorn by name
    env = {**os.environ, "MLFLOW_TRACKING_URI": args.tracking_uri, "PATH": f"{bin_folder}:{os.environ['PATH']}"}
    mlflow_cli = str(Path(sys.executable).with_name("mlflow"))
    command = [mlflow_cli, "models", "serve", "-m", args.model_uri, "--env-manager", "local", "-p", str(port)]
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = subprocess.Popen([*command, "-h", "127.0.0.1"], env=env, **quiet)
    url = f"http://127.0.0.1:{port}/invocations"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the scoring server did not start") from None
                time.sleep(0.5)
        _post(url, rows[:1]), _post(url, rows)  # warm-up
        one = statistics.median(_post(url, rows[:1])[0] for _ in range(args.repeats * 4))
        many_times, answers = zip(*(_post(url, rows) for _ in range(args.repeats)))
        many = statistics.median(many_times)
        alone = [_post(url, [row])[1][0] for row in rows]
    finally:
        server.terminate()
        server.wait(timeout=30)
    result = {
        "model_uri": args.model_uri,
        "rows": len(rows),
        "one_row_s": round(one, 4),
        "many_rows_s": round(many, 4),
        "ratio": round(many / one, 1),
        "rows_per_s": round(len(rows) / many, 1),
        "same_answers_as_alone": list(answers[0]) == alone,
        "accuracy": round(sum(a == q.answer for a, q in zip(answers[0], questions)) / len(rows), 4),
    }
    emit(result, args.results)


if __name__ == "__main__":
    main()

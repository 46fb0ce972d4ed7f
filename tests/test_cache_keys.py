"""Cache keys per step: a step keys on the code it runs, not on the whole package. Checked on a copy of the
source tree, edited between real flow runs against the real Prefect API (each run in a fresh process that
imports the copy), and on the digests themselves."""

import os
import shutil
import textwrap
from pathlib import Path

import pytest

from dmn.version import code_digest
from tests.conftest import flow_config, python_json

REPO = Path(__file__).resolve().parents[1]

RUN = textwrap.dedent(
    """
    import json, sys
    import dmn
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from dmn.apps.babi import BabiRunConfig
    from flows.babi import babi_flow

    state = babi_flow(BabiRunConfig.model_validate_json(sys.argv[1]), return_state=True)
    runs = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
    with get_client(sync_client=True) as client:
        states = {run.name: run.state.name for run in client.read_task_runs(flow_run_filter=runs)}
    print(json.dumps({"package": dmn.__file__, "states": states, "version": state.result()["version"].version}))
    """
)


def _edit(path: Path, text: str = "\n# an edit\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as stream:
        stream.write(text)


def _step_states(source_tree: Path, config, prefect_api: str) -> tuple[dict[str, str], str]:
    """Run the bAbI flow from `source_tree` in a fresh process: ({step: state} of its task runs, version)."""
    environment = {**os.environ, "PREFECT_API_URL": prefect_api}
    # `python -c` imports from the working directory first: the copy, not the checkout
    outcome = python_json(RUN, config.model_dump_json(), cwd=source_tree, env=environment)
    assert outcome["package"].startswith(str(source_tree))
    return {name.split("-")[0]: state for name, state in outcome["states"].items()}, outcome["version"]


def test_editing_the_cli_a_report_or_another_application_keeps_training_cached_and_the_model_retrains(
    prefect_api, babi_en, tmp_path
):
    tree = tmp_path / "src"
    for package in ("dmn", "flows", "tasks"):
        shutil.copytree(REPO / package, tree / package, ignore=shutil.ignore_patterns("__pycache__"))
    source = tmp_path / "source"
    source.mkdir()
    for path in babi_en.glob("qa1_*"):
        shutil.copy(path, source / path.name)
    config = flow_config(tmp_path).model_copy(
        update={"source": str(source), "train": flow_config(tmp_path).train.model_copy(update={"max_epochs": 2})}
    )

    first, version = _step_states(tree, config, prefect_api)
    assert {first[step] for step in ("ingest", "tokenise", "train")} == {"Completed"} and version == "1"

    _edit(tree / "flows" / "cli.py")
    _edit(tree / "dmn" / "report.py")
    _edit(tree / "dmn" / "html_report.py", '\nSTYLE = "h1 {color: navy}"\n')
    _edit(tree / "dmn" / "apps" / "sst.py", '"""Another application."""\n')
    init = tree / "dmn" / "apps" / "__init__.py"
    init.write_text(
        init.read_text().replace('{"babi": "dmn.apps.babi"}', '{"babi": "dmn.apps.babi", "sst": "dmn.apps.sst"}')
    )
    second, version = _step_states(tree, config, prefect_api)
    assert {second[step] for step in ("ingest", "tokenise", "train", "evaluate")} == {"Cached"}, second
    assert version == "1"  # nothing retrained: the version found again

    _edit(tree / "dmn" / "models" / "dmn_plus.py")
    third, version = _step_states(tree, config, prefect_api)
    assert third["ingest"] == third["tokenise"] == "Cached", third
    assert third["train"] == third["evaluate"] == "Completed", third
    assert version == "2"  # other code, another model: a new version


@pytest.mark.parametrize(
    "edited, tokenise_changes, train_changes",
    [
        ("report.py", False, False),
        ("registry.py", False, False),
        ("serving.py", False, False),
        ("promotion.py", False, False),
        ("data/babi.py", True, True),  # the reader: re-tokenise, and so retrain
        ("models/dmn.py", False, True),
        ("models/scan.cpp", False, True),  # the fused scans, compiled by models/recurrence.py
        ("train.py", False, True),
    ],
)
def test_step_digests_cover_the_code_each_step_runs(tmp_path, edited, tokenise_changes, train_changes):
    tree = tmp_path / "dmn"
    shutil.copytree(REPO / "dmn", tree, ignore=shutil.ignore_patterns("__pycache__"))
    digest = code_digest.__wrapped__  # not the process's cache: the files change under it here
    before = digest("dmn.apps.babi", root=tree), digest("dmn.apps.babi", "dmn.pipeline", root=tree)
    _edit(tree / edited)
    after = digest("dmn.apps.babi", root=tree), digest("dmn.apps.babi", "dmn.pipeline", root=tree)
    assert (before[0] != after[0], before[1] != after[1]) == (tokenise_changes, train_changes)

"""Promotion by alias on a real MLflow registry (SQLite): the gate, a forced override, rollback, refusals,
and the aliases left as they were when a step fails."""

import copy
import glob

import pytest
from mlflow.tracking import MlflowClient

from dmn.apps.babi import APPLICATION as BABI
from dmn.checkpoint import load_checkpoint
from dmn.data.sources import ingest_babi
from dmn.errors import ConfigError
from dmn.operations_config import Gate
from dmn.promotion import CHALLENGER, CHAMPION, history, promote, promote_if_first, rollback
from dmn.registry import register_run
from dmn.report import report_markdown


@pytest.fixture
def registry(trained, tmp_path, monkeypatch):
    """A fresh registry and a function registering the trained models as a new version with given accuracy."""
    tmp, config, state = trained
    monkeypatch.chdir(tmp_path)  # MLflow's local artifacts
    config = config.model_copy(update={"tracking_uri": f"sqlite:///{tmp_path / 'registry.db'}"})
    dataset = BABI.tokenise(ingest_babi(config.source, config.size, config.data_root), config.data_root)
    (checkpoint,) = glob.glob(f"{config.data_root}/models/**/babi_task_1.pt", recursive=True)
    histories = {1: load_checkpoint(checkpoint)[1]["history"]}

    def register(accuracy: float, data_digest: str | None = None) -> str:
        report = copy.deepcopy(state.result()["report"])
        report["units"][0]["accuracy"] = accuracy
        report["training_digest"] = f"variant-{accuracy}-{data_digest}"  # a new version each time
        report["data_digest"] = data_digest or report["data_digest"]
        version = register_run(BABI, config, dataset, {1: checkpoint}, report, report_markdown(report), histories)
        return version.version

    return config, register, MlflowClient(config.tracking_uri)


def _alias(client, name, alias):
    return str(client.get_model_version_by_alias(name, alias).version)


def test_gate_promotes_only_a_better_challenger_and_records_every_decision(registry):
    config, register, client = registry
    name, uri = config.model_name, config.tracking_uri
    first = register(0.90)
    assert _alias(client, name, CHALLENGER) == first
    assert promote(name, tracking_uri=uri).promoted  # no champion yet
    worse = register(0.85)
    decision = promote(name, tracking_uri=uri)
    assert not decision.promoted and "worse than the champion" in decision.reason
    assert _alias(client, name, CHAMPION) == first
    assert promote(name, tracking_uri=uri, gate=Gate(tolerance=0.1)).reason.startswith("not better on the mean")
    better = register(0.95)
    assert promote(name, tracking_uri=uri).promoted and _alias(client, name, CHAMPION) == better
    other_data = register(0.99, data_digest="another-test-set")
    assert "other test data" in promote(name, other_data, tracking_uri=uri).reason
    forced = promote(name, worse, force=True, reason="hotfix for a customer", tracking_uri=uri)
    assert forced.promoted and _alias(client, name, CHAMPION) == worse
    back = rollback(name, tracking_uri=uri)
    assert back.version == better and _alias(client, name, CHAMPION) == better
    actions = [d["action"] for d in history(name, tracking_uri=uri)]
    assert actions == ["rollback", "force", "reject", "promote", "reject", "reject", "promote"]
    assert any("hotfix for a customer" in value for value in client.get_model_version(name, worse).tags.values())


def test_a_first_champion_must_clear_the_bar_whoever_registered_it(registry):
    config, register, client = registry
    name, uri = config.model_name, config.tracking_uri
    weak = register(0.42)  # 58 % error: above the default bar of 50 %
    refused = promote_if_first(name, weak, Gate(), uri)
    assert not refused.promoted and "mean error 58.00% is above the bar 50.00%" in refused.reason
    assert CHAMPION not in client.get_registered_model(name).aliases
    strict = promote(name, register(0.97), gate=Gate(first_max_error=0.01), tracking_uri=uri)
    assert not strict.promoted and "first_max_error" in strict.reason
    first = register(0.96)
    assert promote_if_first(name, first, Gate(first_max_error=0.05, first_max_failed=0), uri).promoted
    assert _alias(client, name, CHAMPION) == first
    assert promote_if_first(name, register(0.99), Gate(), uri) is None  # there is a champion: the gate's turn
    assert [d["action"] for d in history(name, uri)] == ["promote", "reject", "reject"]


def test_refusals_leave_the_registry_unchanged(registry):
    config, register, client = registry
    name, uri = config.model_name, config.tracking_uri
    with pytest.raises(ConfigError, match="no 'challenger' alias"):
        promote(name, tracking_uri=uri)  # a model without versions or aliases
    version = register(0.9)
    with pytest.raises(ConfigError, match="has no version '42'"):
        promote(name, "42", tracking_uri=uri)
    with pytest.raises(ConfigError, match="needs --reason"):
        promote(name, version, force=True, tracking_uri=uri)
    with pytest.raises(ConfigError, match="no 'champion' alias to roll back"):
        rollback(name, tracking_uri=uri)
    assert {k: str(v) for k, v in client.get_registered_model(name).aliases.items()} == {CHALLENGER: version}
    assert history(name, tracking_uri=uri) == []


def test_audit_lists_versions_with_lineage_and_the_promotion_history(registry):
    import subprocess
    import sys

    config, register, client = registry
    first, second = register(0.9), register(0.95)
    promote(config.model_name, first, tracking_uri=config.tracking_uri)
    promote(config.model_name, second, tracking_uri=config.tracking_uri)
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "audit", config.model_name, "--tracking-uri", config.tracking_uri],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert text.index(f"## version {second}  @champion  @challenger") < text.index(f"## version {first}")
    assert "data digest: " in text and "babi_task_1 0.9500" in text
    history_part = text.split("## promotion history")[1]
    assert history_part.index(f"promote version {second}") < history_part.index(f"promote version {first}")


def test_evaluate_a_version_by_alias_and_on_a_dataset_with_words_it_never_saw(registry, babi_en, tmp_path):
    from dmn.reevaluate import evaluate_registered

    config, register, client = registry
    version = register(0.6)
    promote(config.model_name, version, tracking_uri=config.tracking_uri)
    report, run_id = evaluate_registered(
        f"models:/{config.model_name}@champion", config.source, "1k", config.data_root, config.tracking_uri
    )
    text = report_markdown(report)
    assert f"Evaluated: models:/{config.model_name}@champion = {config.model_name} version {version}." in text
    assert "missing from this version's vocabulary (read as the unknown word): 0 of " in text  # its own test data
    assert report["units"][0]["accuracy"] >= 0.95  # the real test accuracy of the trained model
    assert client.get_model_version(config.model_name, version).tags["last_evaluation_run"] == run_id
    # another copy of the data, a name and a place changed: its vocabulary numbers the words otherwise; read through
    # the version's own vocabulary, zelda and cellar are the unknown word, and cellar is no answer it can give
    other = tmp_path / "other"
    other.mkdir()
    for path in babi_en.glob("qa1_*"):
        (other / path.name).write_text(path.read_text().replace("Mary", "Zelda").replace("kitchen", "cellar"))
    other_report, other_run = evaluate_registered(
        f"models:/{config.model_name}/{version}", str(other), "1k", str(tmp_path / "d"), config.tracking_uri
    )
    unknown = _read_words(other, "Zelda") + _read_words(other, "cellar")
    test = (other / "qa1_single-supporting-fact_test.txt").read_text()
    in_cellar = sum(line.split("\t")[1:2] == ["cellar"] for line in test.splitlines()) / 1000
    assert other_report["evaluated"]["unknown_input_tokens"] == unknown > 0
    assert other_report["evaluated"]["unknown_answers"] == round(in_cellar * 1000) > 0
    own, accuracy = report["units"][0]["accuracy"], other_report["units"][0]["accuracy"]
    about_zelda = test.count("Where is Zelda?") / 1000
    # the cellar's answers are lost; the other questions answered as before, but some of those about zelda
    assert own - in_cellar - about_zelda - 0.02 <= accuracy <= own - in_cellar + 0.01
    assert f"(read as the unknown word): {unknown:,} of " in report_markdown(other_report)
    assert client.get_model_version(config.model_name, version).tags["last_evaluation_run"] == other_run
    with pytest.raises(ConfigError, match="no such registered version"):
        evaluate_registered(
            f"models:/{config.model_name}/99", str(other), "1k", str(tmp_path / "d"), config.tracking_uri
        )


def _read_words(folder, word: str) -> int:
    """How often the examples of bAbI task 1's test file show `word`: in each question and in the story
    sentences before it (the model reads a story again with every question about it)."""
    count, story = 0, []
    for line in (folder / "qa1_single-supporting-fact_test.txt").read_text().splitlines():
        number, text = line.split(" ", 1)
        story = [] if number == "1" else story
        if "\t" in text:
            count += sum(sentence.count(word) for sentence in story) + text.split("\t")[0].count(word)
        else:
            story.append(text)
    return count


def test_a_failure_midway_leaves_aliases_and_tags_as_they_were(registry, monkeypatch):
    config, register, client = registry
    name, uri = config.model_name, config.tracking_uri
    first, second = register(0.9), register(0.95)
    promote(name, first, tracking_uri=uri)
    real = MlflowClient.set_model_version_tag

    def tracking_server_drops_out_at(failing_version):  # the tracking server fails a decision's last write
        def set_tag(self, model, version, key, value):
            if key.startswith("dmn.decision.") and str(version) == failing_version:
                raise ConnectionError("tracking server went away")
            return real(self, model, version, key, value)

        return set_tag

    tags = {v: client.get_model_version(name, v).tags for v in (first, second)}
    monkeypatch.setattr(MlflowClient, "set_model_version_tag", tracking_server_drops_out_at(second))
    with pytest.raises(ConnectionError):
        promote(name, second, tracking_uri=uri)  # had moved the alias and tagged the previous champion
    monkeypatch.undo()
    assert _alias(client, name, CHAMPION) == first and _alias(client, name, CHALLENGER) == second
    assert {v: client.get_model_version(name, v).tags for v in (first, second)} == tags

    promote(name, second, tracking_uri=uri)
    tags = {v: client.get_model_version(name, v).tags for v in (first, second)}
    monkeypatch.setattr(MlflowClient, "set_model_version_tag", tracking_server_drops_out_at(first))
    with pytest.raises(ConnectionError):
        rollback(name, tracking_uri=uri)  # had moved the alias back and recorded on the champion
    monkeypatch.undo()
    assert _alias(client, name, CHAMPION) == second
    assert {v: client.get_model_version(name, v).tags for v in (first, second)} == tags


def test_a_registration_retried_after_a_failure_finds_its_version_and_finishes_it(registry, monkeypatch):
    config, register, client = registry
    name = config.model_name
    first = register(0.9)

    def tracking_server_drops_out(self, model, alias, version):  # after the version was created
        raise ConnectionError("tracking server went away")

    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", tracking_server_drops_out)
    with pytest.raises(ConnectionError):
        register(0.95)
    monkeypatch.undo()
    assert _alias(client, name, CHALLENGER) == first
    second = register(0.95)  # the task's retry: the same training digest
    versions = sorted(str(v.version) for v in client.search_model_versions(f"name = '{name}'"))
    assert versions == [first, second] and _alias(client, name, CHALLENGER) == second
    assert register(0.9) == first and _alias(client, name, CHALLENGER) == second  # an older one stays as it is

"""Training on real bAbI data: the model learns, the best weights are a copy, checkpoints round-trip."""

from pathlib import Path

import pytest
import torch

from dmn.apps.babi import APPLICATION as BABI
from dmn.checkpoint import load_checkpoint
from dmn.config import ModelConfig, TrainConfig
from dmn.data.sources import ingest_babi
from dmn.errors import ConfigError
from dmn.evaluate import supporting_fact_hits
from dmn.pipeline import evaluate_unit, train_unit

CUT = {"sentence_limit": 70}  # the story cut of a bAbI task


def test_learns_babi_task_1_and_reports_supporting_fact_hits(tmp_path, babi_root):
    dataset = BABI.tokenise(ingest_babi(str(babi_root), "1k", tmp_path), tmp_path)
    train_config = TrainConfig(max_epochs=12, patience=12, batch_size=32, seed=1)
    path = train_unit(BABI, dataset, 1, CUT, ModelConfig(hidden_size=32), train_config, tmp_path / "models")
    result = evaluate_unit(BABI, dataset, 1, path)
    assert result["examples"] == 1000
    assert result["accuracy"] > 0.9  # chance is 1/6
    assert result["support_hit_rate"] > 0.8
    model, meta = load_checkpoint(path)
    assert len(meta["history"]) == 12 and 1 <= meta["best_epoch"] <= 12
    best = min(meta["history"], key=lambda r: r["valid_loss"])
    assert best["epoch"] == meta["best_epoch"]
    # a second call with the same inputs reuses the checkpoint instead of training again
    mtime = (tmp_path / "models").rglob("*.pt").__next__().stat().st_mtime
    assert train_unit(BABI, dataset, 1, CUT, ModelConfig(hidden_size=32), train_config, tmp_path / "models") == path
    assert next((tmp_path / "models").rglob("*.pt")).stat().st_mtime == mtime


def test_predict_batches_by_length_and_answers_in_the_examples_order(tmp_path, babi_root):
    from dmn.data.vocab import Vocabulary
    from dmn.evaluate import predict
    from dmn.models import ModelSizes, build_model

    dataset = BABI.tokenise(ingest_babi(str(babi_root), "1k", tmp_path), tmp_path)
    vocab = Vocabulary.load(dataset.vocab_path)
    data = BABI.encode(dataset.read(3, "test")[:60], vocab, CUT, "class")  # task 3: stories of 2 to 70 facts
    assert not torch.equal(torch.argsort(data.fact_counts(), stable=True), torch.arange(60))  # so batches reorder
    torch.manual_seed(0)
    model = build_model(ModelConfig(hidden_size=16), ModelSizes(len(vocab.words), len(vocab.answers)))
    answers, gates = predict(model, data, batch_size=7)
    for i in range(60):  # each example's answer and gates are those it gets alone
        alone_answers, alone_gates = predict(model, data.select(torch.tensor([i])), batch_size=1)
        assert torch.equal(answers[i], alone_answers[0])
        assert torch.allclose(gates[i], alone_gates[0], atol=1e-6)


def test_best_weights_are_a_copy_not_the_live_tensors(tmp_path, babi_root):
    from dmn.data.vocab import Vocabulary
    from dmn.models import ModelSizes, build_model
    from dmn.train import run_epoch, train_dmn

    dataset = BABI.tokenise(ingest_babi(str(babi_root), "1k", tmp_path), tmp_path)
    vocab = Vocabulary.load(dataset.vocab_path)
    rows = dataset.read(1, "train")
    train_rows, valid_rows = rows[:40], rows[-100:]
    # 40 stories and 25 epochs: the model overfits, so the best validation loss comes before the end
    config = TrainConfig(max_epochs=25, patience=25, batch_size=8, learning_rate=0.01, l2=0.0)
    sizes = ModelSizes(len(vocab.words), len(vocab.answers))
    result = train_dmn(
        BABI.encode(train_rows, vocab, CUT, "class"),
        BABI.encode(valid_rows, vocab, CUT, "class"),
        ModelConfig(hidden_size=16),
        config,
        sizes,
    )
    losses = [r["valid_loss"] for r in result.history]
    assert result.best_epoch == 1 + losses.index(min(losses))
    assert result.best_epoch < len(losses)  # the run went on past its best epoch
    # reload the kept weights: their validation loss is the best epoch's, whatever came after
    model = build_model(ModelConfig(hidden_size=16), sizes)
    model.load_state_dict(result.state_dict)
    valid_loss = run_epoch(model, BABI.encode(valid_rows, vocab, CUT, "class"), 8, "cpu")["loss"]
    assert abs(valid_loss - result.best_valid_loss) < 1e-5


def _task_1_slice(tmp_path, babi_root):
    """200 training and 100 validation examples of bAbI task 1, and the model sizes of its vocabulary."""
    from dmn.data.vocab import Vocabulary
    from dmn.models import ModelSizes

    dataset = BABI.tokenise(ingest_babi(str(babi_root), "1k", tmp_path), tmp_path)
    vocab = Vocabulary.load(dataset.vocab_path)
    rows = dataset.read(1, "train")
    train, valid = BABI.encode(rows[:200], vocab, CUT, "class"), BABI.encode(rows[-100:], vocab, CUT, "class")
    return train, valid, ModelSizes(len(vocab.words), len(vocab.answers))


def test_selection_by_validation_accuracy_and_the_target_accuracy_stop(tmp_path, babi_root):
    from dmn.train import train_dmn

    train, valid, sizes = _task_1_slice(tmp_path, babi_root)
    model = ModelConfig(hidden_size=16)
    config = TrainConfig(max_epochs=15, patience=15, batch_size=20, learning_rate=0.01, select_by="valid_accuracy")
    result = train_dmn(train, valid, model, config, sizes)
    best = max(result.history, key=lambda r: (r["valid_accuracy"], -r["valid_loss"]))
    assert result.best_epoch == best["epoch"] and len(result.history) == 15
    assert result.best_valid_accuracy == best["valid_accuracy"] and result.best_valid_loss == best["valid_loss"]
    # the first epoch that reaches the target ends the run, and is kept
    target = sorted({r["valid_accuracy"] for r in result.history})[-2]
    stopped = train_dmn(train, valid, model, config.model_copy(update={"target_valid_accuracy": target}), sizes)
    first = next(r for r in result.history if r["valid_accuracy"] >= target)
    assert stopped.best_epoch == first["epoch"] == len(stopped.history)


def test_the_moving_average_follows_every_step_from_a_copy_of_the_first_and_warms_up_to_its_decay():
    from dmn.train import moving_average

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1, fused=True)  # the pipeline's optimiser
    average = moving_average(model, optimizer, 0.5)
    expected = None
    for updates in range(12):
        model(torch.randn(4, 3)).square().sum().backward()
        optimizer.step()
        optimizer.zero_grad()
        live = model.weight.detach().clone()
        decay = min(0.5, (1 + updates) / (10 + updates))  # 2/11, 3/12, ... up to the decay from the 8th update
        expected = live if expected is None else decay * expected + (1 - decay) * live  # w_avg <- d w_avg + (1-d) w
        assert torch.allclose(average.module.weight, expected, atol=1e-6)
    assert not torch.allclose(average.module.weight, model.weight)
    assert moving_average(model, optimizer, None) is None


def test_with_a_moving_average_validation_scores_and_the_checkpoint_keeps_the_average(tmp_path, babi_root):
    from dmn.models import build_model
    from dmn.train import run_epoch, train_dmn

    train, valid, sizes = _task_1_slice(tmp_path, babi_root)
    model_config = ModelConfig(hidden_size=16)
    config = TrainConfig(max_epochs=6, patience=6, batch_size=20, learning_rate=0.01)
    plain = train_dmn(train, valid, model_config, config, sizes)
    averaged = train_dmn(train, valid, model_config, config.model_copy(update={"ema_decay": 0.9}), sizes)
    # the average changes what is scored and kept, not what is trained
    assert [r["train_loss"] for r in averaged.history] == [r["train_loss"] for r in plain.history]
    assert [r["valid_loss"] for r in averaged.history] != [r["valid_loss"] for r in plain.history]
    model = build_model(model_config, sizes)
    model.load_state_dict(averaged.state_dict)
    assert run_epoch(model, valid, 20, "cpu")["loss"] == pytest.approx(averaged.best_valid_loss, abs=1e-5)
    assert averaged.best_valid_loss == min(r["valid_loss"] for r in averaged.history)
    torch.manual_seed(config.seed)  # train_dmn's initial weights: the average moved away from them
    initial = build_model(model_config, sizes).state_dict()
    assert not all(torch.allclose(initial[name], value) for name, value in averaged.state_dict.items())


def test_a_diverging_run_stops_at_once_naming_the_learning_rate(tmp_path, babi_root):
    dataset = BABI.tokenise(ingest_babi(str(babi_root), "1k", tmp_path), tmp_path)
    config = TrainConfig(max_epochs=20, patience=20, batch_size=100, learning_rate=1e12, l2=0.0)
    with pytest.raises(ConfigError, match=r"diverged at epoch \d+ .*lower learning_rate \(now 1000000000000.0\)"):
        train_unit(BABI, dataset, 1, CUT, ModelConfig(hidden_size=16), config, tmp_path / "models")
    assert not list((tmp_path / "models").rglob("babi_task_1.pt"))


def test_supporting_fact_hits():
    gates = torch.tensor([[[0.1, 0.8, 0.1], [0.7, 0.2, 0.1]], [[0.1, 0.1, 0.8], [0.1, 0.1, 0.8]]])  # (N=2, P=2, S=3)
    supporting = torch.tensor([[0, -1], [1, -1]])
    assert supporting_fact_hits(gates, supporting).tolist() == [True, False]


def test_a_checkpoint_of_the_first_format_loads_as_the_dmn_plus_it_was(tmp_path):
    """Versions registered before the model seam hold `dmn-plus/1` checkpoints (answer layer `answer.*`, the
    story cut in the training config); they load, answer as they did, and say what they are."""
    from dmn.data.batching import make_batch
    from dmn.data.vocab import Vocabulary
    from dmn.models import ModelSizes, build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(hidden_size=8), ModelSizes(12, 4)).eval()
    weights = {k.replace("answer.linear.", "answer."): v for k, v in model.state_dict().items()}
    first = {
        "format": "dmn-plus/1",
        "babi_task": 3,
        "model_config": {"hidden_size": 8, "passes": 3, "dropout": 0.1},
        "train_config": {"max_sentences": 70, "max_sentences_by_task": {3: 130}, "seed": 0},
        "vocab_size": 12,
        "answer_size": 4,
        "best_epoch": 1,
        "best_valid_loss": 1.0,
        "history": [],
        "seconds": 0.0,
        "state_dict": weights,
    }
    torch.save(first, tmp_path / "babi_task_3.pt")
    loaded, meta = load_checkpoint(tmp_path / "babi_task_3.pt")
    assert (meta["application"], meta["unit"], meta["architecture"]) == ("babi", 3, "dmn+")
    assert meta["settings"] == {"sentence_limit": 130}
    vocab = Vocabulary(tuple(f"w{i}" for i in range(12)), ("a", "b", "c", "d"))
    rows = [{"story_tokens": [["w2", "w3"], ["w4"]], "question_tokens": ["w5"], "answer": "b", "supporting": [1]}]
    batch = make_batch(BABI.encode(rows, vocab, meta["settings"], "class"))
    assert torch.equal(loaded(*batch.model_inputs()).logits, model(*batch.model_inputs()).logits)


def test_length_buckets_keep_every_example_once_and_batch_similar_lengths():
    from dmn.train import bucketed

    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 50, (1000,), generator=generator)  # (N,) facts per example
    order = torch.randperm(1000, generator=generator).tolist()
    regrouped = bucketed(order, lengths, 10, seed=7)
    assert sorted(regrouped) == list(range(1000)) and regrouped == bucketed(order, lengths, 10, seed=7)
    batches = [lengths[regrouped[i : i + 10]] for i in range(0, 1000, 10)]
    spread = sum(int(b.max() - b.min()) for b in batches) / len(batches)
    assert spread <= 3  # a random batch of 10 spans about 40 lengths
    assert regrouped != bucketed(order, lengths, 10, seed=8)  # another epoch, another batch order


def test_concurrent_trainings_default_to_one_per_cpu_core_and_one_across_nodes(monkeypatch):
    from dmn.config import DistributedConfig
    from dmn.train import concurrent_trainings

    monkeypatch.setattr("dmn.train.available_cores", lambda: 8)
    single = DistributedConfig()
    assert concurrent_trainings(None, 33, "cpu", single) == 8
    assert concurrent_trainings(None, 3, "cpu", single) == 3  # never more than there are trainings
    assert concurrent_trainings(None, 33, "cpu", DistributedConfig(nproc_per_node=4)) == 2  # 2 cores each
    assert concurrent_trainings(None, 33, "cpu", DistributedConfig(nnodes=2)) == 1  # one rendezvous a run
    assert concurrent_trainings(5, 33, "cpu", single) == 5 and concurrent_trainings(5, 2, "cpu", single) == 2
    with pytest.raises(ConfigError, match="--concurrency 2: with --nnodes > 1"):
        concurrent_trainings(2, 33, "cpu", DistributedConfig(nnodes=2))


def test_a_joint_model_learns_several_tasks_and_is_saved_per_task_with_its_own_figures(tmp_path, babi_root):
    """One model of tasks 1 and 4, each encoded with its own story cut, in one training set padded to the larger
    stories; each task's checkpoint carries that task's settings and its validation figures alone."""
    from dmn.data.batching import concat_examples
    from dmn.pipeline import train_joint
    from dmn.train import run_epoch, selection_key, split_validation

    dataset = BABI.tokenise(ingest_babi(str(babi_root), "1k", tmp_path), tmp_path)
    settings = {1: CUT, 4: {"sentence_limit": 1}}  # task 4's stories are two sentences: cut to the last one
    # with a moving average of the weights: each task's figures are those of the weights it keeps all the same
    train_config = TrainConfig(max_epochs=6, patience=6, batch_size=32, ema_decay=0.9)
    model_config = ModelConfig(hidden_size=32)
    paths = train_joint(BABI, dataset, [1, 4], settings, model_config, train_config, tmp_path / "models")
    assert sorted(paths) == [1, 4] and paths[1] != paths[4]
    (model, meta_1), (other, meta_4) = load_checkpoint(paths[1]), load_checkpoint(paths[4])
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))
    assert (meta_1["unit"], meta_1["settings"], meta_4["unit"], meta_4["settings"]) == (1, CUT, 4, settings[4])
    assert meta_1["history"] == meta_4["history"] and len(meta_1["history"]) == 6
    assert {"kitchen", "north"} <= set(meta_1["trained_words"])  # words of task 1's and of task 4's stories
    vocab = dataset.vocabulary()
    valid = {}
    for task in (1, 4):
        _, rows = split_validation(dataset.read(task, "train"), train_config.valid_fraction)
        valid[task] = BABI.encode(rows, vocab, settings[task], "class")
        figures = run_epoch(model, valid[task], 50, "cpu")
        meta = load_checkpoint(paths[task])[1]
        assert (meta["best_valid_accuracy"], meta["best_valid_loss"]) == pytest.approx(
            (figures["accuracy"], figures["loss"]), abs=1e-6
        )
    assert valid[1].story.shape[1] != valid[4].story.shape[1]  # different cuts: padding must not change answers
    joined = run_epoch(model, concat_examples([valid[1], valid[4]]), 50, "cpu")
    best = next(r for r in meta_1["history"] if r["epoch"] == meta_1["best_epoch"])
    assert joined["accuracy"] == pytest.approx(best["valid_accuracy"], abs=1e-6)
    assert joined["accuracy"] == pytest.approx((meta_1["best_valid_accuracy"] + meta_4["best_valid_accuracy"]) / 2)
    assert evaluate_unit(BABI, dataset, 1, paths[1])["accuracy"] > 0.5  # chance is 1/6 on task 1
    mtime = Path(paths[4]).stat().st_mtime
    assert train_joint(BABI, dataset, [1, 4], settings, model_config, train_config, tmp_path / "models") == paths
    assert Path(paths[4]).stat().st_mtime == mtime

    # each task keeping its own best epoch: the same training (validation draws nothing at random), so each task's
    # figures are at least those of the shared epoch, and they are its checkpoint's on its validation examples
    own = {task: {**settings[task], "own_epoch": True} for task in (1, 4)}
    own_paths = train_joint(BABI, dataset, [1, 4], own, model_config, train_config, tmp_path / "models")
    for task, shared in ((1, meta_1), (4, meta_4)):
        model, meta = load_checkpoint(own_paths[task])
        figures_by_epoch = [{k: v for k, v in r.items() if k != "train_seconds"} for r in meta["history"]]
        assert figures_by_epoch == [{k: v for k, v in r.items() if k != "train_seconds"} for r in shared["history"]]
        assert meta["settings"] == own[task]
        assert selection_key("valid_accuracy", meta["best_valid_loss"], meta["best_valid_accuracy"]) <= selection_key(
            "valid_accuracy", shared["best_valid_loss"], shared["best_valid_accuracy"]
        )
        figures = run_epoch(model, valid[task], 50, "cpu")
        assert (meta["best_valid_accuracy"], meta["best_valid_loss"]) == pytest.approx(
            (figures["accuracy"], figures["loss"]), abs=1e-6
        )


def test_an_interrupt_stops_a_training_in_another_thread_at_its_next_batch_and_the_next_one_runs(tmp_path, babi_en):
    """A thread cannot be interrupted: leaving `stopping_on_interrupt` by an exception stops the trainings started
    in it, in threads that run in a copy of its context as Prefect's thread runner's do, at their next batch
    (TrainingStopped) with their progress checkpoint of the last epoch; a training started afterwards runs."""
    import contextvars
    import threading

    from dmn.models import ModelSizes
    from dmn.train import TrainingStopped, stopping_on_interrupt, train_dmn
    from tests.helpers import MODEL, small_task_1

    train, valid, vocab = small_task_1(babi_en)
    sizes = ModelSizes(len(vocab.words), len(vocab.answers))
    config = TrainConfig(max_epochs=10_000, patience=10_000, batch_size=8, target_valid_accuracy=None)
    progress = tmp_path / "progress.pt"
    two_epochs = threading.Event()
    outcome = {}

    def training() -> None:
        def on_epoch(record: dict) -> None:
            if record["epoch"] == 2:
                two_epochs.set()

        try:
            train_dmn(train, valid, MODEL, config, sizes, on_epoch=on_epoch, progress_path=progress)
        except TrainingStopped as stopped:
            outcome["stopped"] = stopped

    with pytest.raises(KeyboardInterrupt), stopping_on_interrupt():
        worker = threading.Thread(target=contextvars.copy_context().run, args=(training,))
        worker.start()
        assert two_epochs.wait(timeout=120)
        raise KeyboardInterrupt  # as Ctrl-C in the thread that waits for the training
    worker.join(timeout=30)
    assert not worker.is_alive() and "stopped" in outcome
    assert torch.load(progress, weights_only=False)["epoch"] >= 2
    after = train_dmn(train, valid, MODEL, config.model_copy(update={"max_epochs": 1}), sizes)
    assert len(after.history) == 1

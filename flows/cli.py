"""The `dmn` command: `dmn run APPLICATION` runs its Prefect flow; `dmn ask` answers with a registered model.

Heavy imports (torch, prefect, mlflow) happen inside the commands so `dmn --help` is instant.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from dmn.apps.babi import BabiRunConfig, parse_babi_tasks
from dmn.apps.base import RunConfig
from dmn.apps.pos import PosRunConfig
from dmn.apps.sst import SstRunConfig
from dmn.apps.vqa import DATASETS, VqaRunConfig
from dmn.config import DistributedConfig, ModelConfig, TrainConfig
from dmn.operations_config import EvaluateConfig, Gate


def _babi_tasks(text: str) -> list[int]:
    try:
        return parse_babi_tasks(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _fraction_or_none(what: str, one_allowed: bool) -> Callable[[str], float | str]:
    """An argparse type: 'none' or a number in (0, 1] (`one_allowed`) or in (0, 1)."""
    refusal = f"expected {what} in {'(0, 1]' if one_allowed else '(0, 1)'} or 'none', got {{!r}}"

    def parse(text: str) -> float | str:
        if text.strip().lower() == "none":
            return "none"
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(refusal.format(text)) from None
        if not (0 < value < 1 or (one_allowed and value == 1)):
            raise argparse.ArgumentTypeError(refusal.format(text))
        return value

    return parse


def _copies_list(text: str) -> list[int]:
    """'4,0': distinct counts of 0 or more (renamed copies of each training story)."""
    counts = _int_list(text)
    if min(counts) < 0 or len(set(counts)) < len(counts):
        raise argparse.ArgumentTypeError(f"expected distinct counts of 0 or more, as '4,0', got {text!r}")
    return counts


def _int_list(text: str) -> list[int]:
    try:
        return [int(item) for item in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}") from None


def _choices(kind: str, known: tuple[str, ...]):
    """An argparse type: a comma-separated list of `known` names (e.g. 'fine,binary')."""

    def parse(text: str) -> list[str]:
        items = [item.strip() for item in text.split(",")]
        unknown = [item for item in items if item not in known]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {kind} {unknown[0]!r}; use one or more of {', '.join(known)}")
        return items

    return parse


def _add_run_options(parser: argparse.ArgumentParser, config_type: type[RunConfig], units: str) -> None:
    """The options every `dmn run APPLICATION` has, named as the config fields (`_fields`). Model and training
    options default to the application's own defaults (unset here, filled by `config_from_args`)."""
    parser.add_argument("--sha256", dest="source_sha256", default=None, help="expected sha256 of an archive source")
    parser.add_argument("--epochs", dest="max_epochs", type=int, help="most epochs (early stopping may end sooner)")
    parser.add_argument("--patience", type=int, help="epochs without a better epoch (see --select-by)")
    parser.add_argument(
        "--select-by",
        choices=["valid_loss", "valid_accuracy"],
        help="the best epoch and restart: lowest validation loss (paper) or highest validation accuracy",
    )
    parser.add_argument(
        "--target-valid-accuracy",
        type=_fraction_or_none("an accuracy", one_allowed=True),
        help="stop once an epoch's validation accuracy reaches this (e.g. 1.0); 'none': train until the patience ends",
    )
    parser.add_argument(
        "--bucket-by-length",
        choices=["on", "off"],
        help="batches of stories of similar length (on) or the paper's plain shuffle (off)",
    )
    parser.add_argument("--batch-size", type=int, help="examples per step")
    parser.add_argument("--learning-rate", type=float, help="Adam's learning rate")
    parser.add_argument("--l2", type=float, help="L2 coefficient on non-bias weights")
    parser.add_argument(
        "--ema-decay",
        type=_fraction_or_none("a decay", one_allowed=False),
        help="validate and keep a moving average of the weights with this decay per step (e.g. 0.999; bAbI's "
        "default); 'none': the weights as trained (the papers; the other applications' default)",
    )
    parser.add_argument(
        "--model",
        dest="architecture",
        choices=["dmn+", "dmn"],
        help="architecture: 'dmn+' (Xiong et al. 2016, default) or 'dmn' (Kumar et al. 2016)",
    )
    parser.add_argument(
        "--input",
        choices=["auto", "sentences", "words", "regions"],
        help="input module: sentences (DMN+'s input fusion), words (the DMN's word GRU) or regions (images: DMN+'s "
        "visual input module); 'auto' (default): the architecture's own (visual QA: regions)",
    )
    parser.add_argument(
        "--answer",
        choices=["auto", "class", "sequence", "tags"],
        help="answer module: one class, a word sequence or a tag per word; 'auto' (default): the application's "
        "(bAbI: the architecture's own)",
    )
    parser.add_argument(
        "--supervise-gates",
        action="store_true",
        default=None,
        help="also train each pass's gates on that pass's supporting fact (Kumar et al. 2016's bAbI protocol)",
    )
    parser.add_argument(
        "--lengthen-stories",
        action="store_true",
        default=None,
        help="also train on stories lengthened with other stories' sentences (see TrainConfig.lengthen_stories)",
    )
    parser.add_argument("--hidden", dest="hidden_size", type=int, help="embedding and hidden size")
    parser.add_argument(
        "--word-vectors",
        choices=["random", "glove-6b-50d"],
        help="initial word embedding (glove-6b-50d needs the extra dmn-pipeline[glove])",
    )
    parser.add_argument("--passes", type=int, help="episodic memory passes")
    parser.add_argument(
        "--answer-interactions",
        action="store_true",
        default=None,
        help="the class answer also reads m o q and |m - q| (see ModelConfig.answer_interactions)",
    )
    parser.add_argument("--dropout", type=float, help="dropout rate")
    parser.add_argument("--seed", type=int, help="random seed")
    parser.add_argument("--device", help="'auto' (CUDA when present), 'cpu', 'cuda', 'cuda:N'")
    parser.add_argument(
        "--seeds",
        type=_int_list,
        default=None,
        help=f"restarts per {units}, e.g. '0,1,2' (the best by --select-by kept)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help=f"trainings at once (per {units}, seed and variant), each in a process of its own (default: one per CPU "
        "core; one on a GPU and with --nnodes > 1)",
    )
    launcher = parser.add_argument_group("distributed training (torchrun's options)")
    dist = DistributedConfig()
    launcher.add_argument("--nproc-per-node", type=int, default=dist.nproc_per_node, help="processes per node")
    launcher.add_argument("--nnodes", type=int, default=dist.nnodes, help="number of nodes")
    launcher.add_argument("--node-rank", type=int, default=dist.node_rank, help="this node's rank (0 hosts)")
    launcher.add_argument("--rdzv-endpoint", default=dist.rdzv_endpoint, help="host:port of node 0's rendezvous")
    launcher.add_argument("--rdzv-id", default=dist.rdzv_id, help="job id shared by the nodes")
    launcher.add_argument("--rdzv-timeout", type=int, default=dist.rdzv_timeout, help="seconds to wait for nodes")
    launcher.add_argument("--max-restarts", type=int, default=dist.max_restarts, help="restarts of failed workers")
    parser.add_argument("--data-root", default="data", help=RunConfig.model_fields["data_root"].description)
    parser.add_argument(
        "--tracking-uri", default=None, help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or MLflow's own)"
    )
    name = config_type.model_fields["model_name"].default
    parser.add_argument("--model-name", default=name, help=f"registered model name (default {name})")
    _add_gate_options(parser)


def _add_gate_options(parser: argparse.ArgumentParser) -> None:
    """The fields of `Gate`: what a version must clear to become champion."""
    group = parser.add_argument_group("promotion gate")
    for name, field in Gate.model_fields.items():
        kind = int if name == "first_max_failed" else float
        help_text = field.description.replace("%", "%%")  # argparse formats help with %
        group.add_argument(f"--{name.replace('_', '-')}", type=kind, default=field.default, help=help_text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dmn", description="Dynamic Memory Networks (DMN, DMN+) pipeline.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a pipeline (Prefect flow)")
    apps = run.add_subparsers(dest="application", required=True)
    babi = apps.add_parser("babi", help="bAbI QA: ingest -> tokenise -> train -> evaluate -> register")
    babi.add_argument("--babi-tasks", type=_babi_tasks, default=[1], help="bAbI task ids, '1,2,3' or 'all' (default 1)")
    babi.add_argument("--size", choices=["1k", "10k"], default="1k", help="training set size (default 1k)")
    babi.add_argument(
        "--source",
        default="bundled",
        help="'bundled' (default: bAbI en 1k in data/), a folder, a tasks_1-20_v1-2.tar.gz path or URL, or hf:NAME",
    )
    babi.add_argument(
        "--entity-copies",
        type=_copies_list,
        default=None,
        help="renamed copies of each training story (entities permuted; 0: none, the paper); several, e.g. '4,0': "
        "a model each, the best on validation kept (default '4,0' for a training file of up to 2,000 questions, as at "
        "1k, '0' for a larger one, as at 10k)",
    )
    babi.add_argument(
        "--joint",
        choices=["no", "also", "only"],
        default=None,
        help="one model trained on all the run's tasks together: 'also' beside each task's own models, validation "
        "choosing per task; 'only' that model for every task; 'no' none, a model per task (default 'only' at 1k, "
        "'no' at 10k)",
    )
    babi.add_argument(
        "--joint-entity-copies",
        type=int,
        default=None,
        help="renamed copies of each training story in the joint model (default 2 for a training file of up to 2,000 "
        "questions, 0 for a larger one)",
    )
    babi.add_argument(
        "--joint-epochs",
        choices=["shared", "each_task"],
        default=None,
        help="the epoch of the joint model each task keeps: 'shared' the best on all the tasks' validation questions "
        "(default), 'each_task' the best on that task's own",
    )
    _add_run_options(babi, BabiRunConfig, "bAbI task")
    sst = apps.add_parser("sst", help="sentiment (SST): ingest -> tokenise -> train -> evaluate -> register")
    sst.add_argument(
        "--granularities",
        type=_choices("granularity", ("fine", "binary")),
        default=["fine", "binary"],
        help="'fine', 'binary' or 'fine,binary' (default): one model each",
    )
    sst.add_argument(
        "--sentences-only",
        dest="phrases",
        action="store_false",
        help="train on the training sentences only (default: every distinct phrase of their trees)",
    )
    sst.add_argument(
        "--source",
        default="bundled",
        help="'bundled' (default: the SST trees in data/), a folder with train.txt, dev.txt, test.txt, or an "
        "archive path or URL (trainDevTestTrees_PTB.zip)",
    )
    _add_run_options(sst, SstRunConfig, "granularity")
    pos = apps.add_parser("pos", help="part-of-speech tagging: ingest -> tokenise -> train -> evaluate -> register")
    source_help = PosRunConfig.model_fields["source"].description.replace("%", "%%")  # argparse formats help
    pos.add_argument("--source", default="bundled", help=source_help)
    _add_run_options(pos, PosRunConfig, "tag set")

    vqa = apps.add_parser("vqa", help="visual QA (SHAPES): ingest -> tokenise -> train -> evaluate -> register")
    vqa.add_argument(
        "--datasets",
        type=_choices("data set", DATASETS),
        default=["shapes"],
        help="'shapes' (default), 'vqa-v2' or 'shapes,vqa-v2': one model each",
    )
    vqa.add_argument("--source", default="bundled", help=VqaRunConfig.model_fields["source"].description)
    vqa.add_argument(
        "--no-augment",
        dest="augment",
        action="store_false",
        default=None,
        help="train on the examples as they are (default: also turned, mirrored and recoloured copies)",
    )
    _add_run_options(vqa, VqaRunConfig, "data set")

    ask = commands.add_parser("ask", help="answer with a registered model, showing the attention of every pass")
    ask.add_argument("model_uri", help="e.g. models:/dmn-babi/1 or models:/dmn-sst@champion")
    ask.add_argument("--story", type=Path, help="bAbI: text file, a sentence per line, or paragraphs")
    ask.add_argument("--question", help="bAbI: the question")
    ask.add_argument("--sentence", help="sentiment, tagging: the sentence, plain text")
    ask.add_argument(
        "--image",
        type=Path,
        help="visual QA: an image file (PNG, JPEG) or a .npy array (H, W, 3) in RGB order",
    )
    ask.add_argument(
        "--unit",
        "--babi-task",
        "--granularity",
        "--dataset",
        dest="unit",
        default=None,
        help="which model (bAbI task, SST granularity, visual QA data set), when the version holds several",
    )
    ask.add_argument("--tracking-uri", default=None, help="MLflow tracking URI")
    promote = commands.add_parser("promote", help="gate the challenger (or --version) and move the champion alias")
    promote.add_argument("model_name", help="registered model name, e.g. dmn-babi")
    promote.add_argument("--version", default=None, help="version to promote (default: the challenger)")
    _add_gate_options(promote)
    promote.add_argument("--force", action="store_true", help="promote without the gate (needs --reason)")
    promote.add_argument("--reason", default=None, help="why, recorded with the decision")
    promote.add_argument("--tracking-uri", default=None, help="MLflow tracking URI")
    rollback = commands.add_parser("rollback", help="move the champion alias back to the version it replaced")
    rollback.add_argument("model_name", help="registered model name")
    rollback.add_argument("--reason", default="rollback", help="why, recorded with the decision")
    rollback.add_argument("--tracking-uri", default=None, help="MLflow tracking URI")
    evaluate = commands.add_parser("evaluate", help="evaluate a registered version or alias against a dataset")
    evaluate.add_argument("model_uri", help="models:/NAME/VERSION or models:/NAME@ALIAS")
    evaluate.add_argument("--source", default="bundled", help="as `dmn run APPLICATION --source`")
    evaluate.add_argument("--size", choices=["1k", "10k"], default="1k", help="bAbI: dataset size")
    evaluate.add_argument("--data-root", default="data", help=EvaluateConfig.model_fields["data_root"].description)
    evaluate.add_argument("--tracking-uri", default=None, help="MLflow tracking URI")
    schedule = commands.add_parser("schedule", help="set the cron schedule of a deployment on the Prefect server")
    schedule.add_argument("deployment", help="flow/deployment, e.g. dmn-retrain/retrain")
    schedule.add_argument("--cron", required=True, help="cron expression, e.g. '0 3 * * 1' (Mondays 03:00)")
    schedule.add_argument("--timezone", default="UTC", help="time zone of the cron expression")
    schedule.add_argument("--inactive", action="store_true", help="store it switched off")
    export = commands.add_parser("export", help="write a registered version (model, report, lineage) to one file")
    export.add_argument("model_uri", help="models:/NAME/VERSION or models:/NAME@ALIAS")
    export.add_argument("file", type=Path, help="the file to write (a .tar.gz)")
    export.add_argument("--tracking-uri", default=None, help="MLflow tracking URI to read from")
    import_ = commands.add_parser("import", help="register an exported version (its digests checked) as a new one")
    import_.add_argument("file", type=Path, help="a file written by `dmn export`")
    import_.add_argument("--model-name", default=None, help="registered model name (default: the exported one's)")
    import_.add_argument("--tracking-uri", default=None, help="MLflow tracking URI to register into")
    audit = commands.add_parser("audit", help="every version with its lineage, and the promotion history")
    audit.add_argument("model_name", help="registered model name")
    audit.add_argument("--tracking-uri", default=None, help="MLflow tracking URI")
    return parser


def evaluate(args: argparse.Namespace) -> None:
    from dmn.reevaluate import evaluate_registered
    from dmn.report import report_markdown

    report, run_id = evaluate_registered(args.model_uri, args.source, args.size, args.data_root, args.tracking_uri)
    print(report_markdown(report))
    print(f"Evaluation logged as MLflow run {run_id} (report/evaluation.html)")


def schedule(args: argparse.Namespace) -> None:
    from flows.scheduling import set_schedule

    print(set_schedule(args.deployment, args.cron, args.timezone, active=not args.inactive))


def audit(args: argparse.Namespace) -> None:
    from dmn.audit import audit as describe

    print(describe(args.model_name, args.tracking_uri), end="")


def export(args: argparse.Namespace) -> None:
    from dmn.transfer import digest_line, export_version

    manifest = export_version(args.model_uri, args.file, args.tracking_uri)
    source = manifest["source"]
    print(f"exported {source['name']} version {source['version']} ({len(manifest['files'])} files) to {args.file}")
    print(digest_line(args.file))


def import_file(args: argparse.Namespace) -> None:
    from dmn.transfer import import_version

    version, manifest = import_version(args.file, args.model_name, args.tracking_uri)
    source = manifest["source"]
    print(f"imported {args.file} (all {len(manifest['files'])} digests verified)")
    print(
        f"registered {version.name} version {version.version} (the challenger), from {source['tracking_uri']} "
        f"models:/{source['name']}/{source['version']}"
    )
    tracking = f" --tracking-uri {args.tracking_uri}" if args.tracking_uri else ""
    print(f"To promote it: dmn promote {version.name} --version {version.version}{tracking}")


def promote(args: argparse.Namespace) -> int:
    """The promote flow (so the decision is a Prefect artifact as well as a tag); exit 1 when it is rejected."""
    from dmn.operations_config import PromotionConfig
    from dmn.promotion import check_promotion
    from flows.operations import promote_flow

    config = PromotionConfig(**_fields(args, PromotionConfig))
    check_promotion(config)  # a user's mistake fails here, in one line, before a flow run starts
    decision = promote_flow(config)
    verb = "champion is now" if decision.promoted else "champion stays"
    print(f"{decision.action}: {args.model_name} version {decision.version}: {decision.reason}")
    print(f"{verb} version {decision.champion_after}")
    return 0 if decision.promoted else 1


def rollback(args: argparse.Namespace) -> None:
    from dmn.operations_config import RollbackConfig
    from dmn.promotion import check_rollback
    from flows.operations import rollback_flow

    config = RollbackConfig(**_fields(args, RollbackConfig))
    check_rollback(config.model_name, config.tracking_uri)
    decision = rollback_flow(config)
    print(
        f"rollback: champion of {args.model_name} moved from version {decision.champion_before} to {decision.version}"
    )


def _fields(args: argparse.Namespace, model: type[BaseModel]) -> dict:
    """The options of `args` named as the fields of `model` (the parser's dest names follow the configs)."""
    return {name: getattr(args, name) for name in model.model_fields if hasattr(args, name)}


RUN_CONFIGS = {"babi": BabiRunConfig, "sst": SstRunConfig, "pos": PosRunConfig, "vqa": VqaRunConfig}
FLOWS = {name: (f"flows.{name}", f"{name}_flow") for name in RUN_CONFIGS}


def _given(args: argparse.Namespace, model: type[BaseModel]) -> dict:
    """The options of `args` named as the fields of `model` that the user gave (unset ones are None)."""
    return {name: value for name, value in _fields(args, model).items() if value is not None}


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The run configuration of `args.application`: its defaults, overridden by the options given."""
    config_type = RUN_CONFIGS[args.application]
    defaults = config_type()
    return config_type(
        **_given(args, config_type),
        model=ModelConfig(**{**defaults.model.model_dump(), **_given(args, ModelConfig)}),
        distributed=DistributedConfig(**_fields(args, DistributedConfig)),
        train=TrainConfig(**{**defaults.train.model_dump(), **_train_options(args)}),
    )


def _train_options(args: argparse.Namespace) -> dict:
    """The TrainConfig options given, typed: 'none' turns the target accuracy or the average off, 'on'/'off' are
    booleans."""
    given = _given(args, TrainConfig)
    for name in ("target_valid_accuracy", "ema_decay"):
        if given.get(name) == "none":
            given[name] = None
    if "bucket_by_length" in given:
        given["bucket_by_length"] = given["bucket_by_length"] == "on"
    return given


def run_application(args: argparse.Namespace) -> None:
    import importlib

    from dmn.report import report_markdown

    module, name = FLOWS[args.application]
    outcome = getattr(importlib.import_module(module), name)(config_from_args(args), Gate(**_fields(args, Gate)))
    version = outcome["version"]
    if version is None:
        print(f"node {args.node_rank}: training done; node 0 evaluates and registers")
        return
    print(report_markdown(outcome["report"]))
    state = "registered" if version.created else "unchanged; already registered as"
    print(f"Model {state} {version.name} version {version.version}: {version.uri} (MLflow run {version.run_id})")
    print(next_steps(args, version, outcome["decision"]))


def next_steps(args: argparse.Namespace, version, decision) -> str:
    """What the run did to the aliases, and the commands that promote, ask and serve the version."""
    from mlflow.tracking import MlflowClient

    from dmn.apps import application
    from dmn.promotion import CHAMPION, alias_version

    tracking = f" --tracking-uri {args.tracking_uri}" if args.tracking_uri else ""
    client = MlflowClient(args.tracking_uri) if args.tracking_uri else MlflowClient()
    champion = alias_version(client, version.name, CHAMPION)
    if champion == version.version:
        lines = [f"Champion: version {version.version}" + (f" ({decision.reason})." if decision else ".")]
    else:
        if decision is not None:
            why = f"not champion: {decision.reason}"
        else:
            why = f"the champion is version {champion}" if champion else "no champion"
        lines = [
            f"Not champion ({why}). To promote it: dmn promote {version.name} --version {version.version}"
            f"{tracking}   (add --force --reason TEXT to skip the gate)"
        ]
    lines.append(f"Ask it:   dmn ask {version.uri} {application(args.application).ask_hint}{tracking}")
    serve_env = f"MLFLOW_TRACKING_URI={args.tracking_uri} " if args.tracking_uri else ""
    lines.append(f"Serve it: {serve_env}mlflow models serve -m {version.uri} --env-manager local -p 5001")
    return "\n".join(lines)


def ask(args: argparse.Namespace) -> None:
    import mlflow

    if args.tracking_uri:
        mlflow.set_tracking_uri(args.tracking_uri)
    request = {key: getattr(args, key) for key in ("question", "sentence") if getattr(args, key) is not None}
    if args.story is not None:
        try:
            request["story"] = args.story.read_text(encoding="utf-8")
        except OSError as error:
            raise SystemExit(f"error: --story {args.story}: {error.strerror}") from None
    if args.image is not None:
        request["image"] = _image_file(args.image)
    model = mlflow.pyfunc.load_model(args.model_uri).unwrap_python_model()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        answer = model.answer(request, args.unit)
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    text, probability = answer.answer, answer.probability
    if isinstance(text, list):  # tagging: a tag per word, shown as word/TAG, and the least sure tag
        text = " ".join(f"{word}/{tag}" for word, tag in zip(answer.sentences, text))
        probability = min(probability)
    print(f"answer: {text}   (probability {probability:.3f}; {model.app.unit_title} {answer.unit} model)")
    print("attention per pass (gate of each fact):")
    passes = len(answer.gates)
    print(" ".join(f"{'pass ' + str(p + 1):>8}" for p in range(passes)) + "  " + " " * (2 * passes) + "fact")
    for i, fact in enumerate(answer.sentences):
        gates = " ".join(f"{answer.gates[p][i]:8.3f}" for p in range(passes))
        marks = " ".join("*" if max(answer.gates[p]) == answer.gates[p][i] else " " for p in range(passes))
        print(f"  {gates}  {marks}  {fact}")


def _image_file(path: Path):
    """--image: a .npy array, or the bytes of an image file (the model decodes and checks them)."""
    try:
        if path.suffix == ".npy":
            import numpy as np

            return np.load(path, allow_pickle=False)
        return path.read_bytes()
    except OSError as error:
        raise SystemExit(f"error: --image {path}: {error.strerror}") from None
    except ValueError as error:
        raise SystemExit(f"error: --image {path}: not a .npy array ({error})") from None


FLOW_COMMANDS = ("run", "promote", "rollback")


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # the temporary server of a run without PREFECT_API_URL: its first start migrates a new database, which on a
    # slow or busy machine takes longer than Prefect's 20 s (seen on a 2-core AVX2 machine under the test suite:
    # 20.4 s, and the run ended in a traceback)
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    # a tracking server out of reach: MLflow's default retries wait about 4 minutes before saying so
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    if not sys.stderr.isatty():  # MLflow's download bars would fill logs with carriage returns
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    args = build_parser().parse_args(argv)
    from mlflow.exceptions import MlflowException
    from prefect.exceptions import TerminationSignal
    from pydantic import ValidationError

    from dmn.errors import DMNError
    from flows.interrupts import end_by_signal_at_exit, sigterm_as_exception

    if args.command in FLOW_COMMANDS:  # the commands that may start a temporary Prefect server
        from flows.run import use_server_in_own_session

        use_server_in_own_session()
    try:
        with sigterm_as_exception():
            status = {
                "run": run_application,
                "ask": ask,
                "promote": promote,
                "rollback": rollback,
                "audit": audit,
                "evaluate": evaluate,
                "schedule": schedule,
                "export": export,
                "import": import_file,
            }[args.command](args)
    except (DMNError, ValidationError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except MlflowException as error:  # no such model, version or alias; a tracking server out of reach
        print(f"error: {_mlflow_error(args, error)}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, TerminationSignal) as interrupt:
        number = getattr(interrupt, "signal", signal.SIGINT)  # a TerminationSignal's, or Ctrl-C's
        resume = "; trainings stopped: the same command resumes them from their last epoch"
        print(f"interrupted ({signal.Signals(number).name}){resume if args.command == 'run' else ''}", file=sys.stderr)
        end_by_signal_at_exit(number)
        return 128 + number  # what a shell shows for a command its signal ended
    return status or 0


def _mlflow_error(args: argparse.Namespace, error) -> str:
    """One line: the model URI or name the command was given, the tracking URI, and MLflow's first line."""
    import mlflow

    subject = getattr(args, "model_uri", None) or getattr(args, "model_name", None)
    tracking = args.tracking_uri or mlflow.get_tracking_uri()
    reason = str(error.message).strip().splitlines()[0]
    return f"{subject}: {reason} (tracking URI {tracking})" if subject else f"{reason} (tracking URI {tracking})"


if __name__ == "__main__":
    sys.exit(main())

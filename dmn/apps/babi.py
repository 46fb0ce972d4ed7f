"""bAbI question answering (Weston et al. 2015): one DMN per bAbI task, stories of sentences, one-word
answers (a class) or, with a sequence answer module, the lists of tasks 8 and 19 as words ("apple,football").

Reader: dmn/data/babi.py; sources (bundled, folder, tarball, URL, hub): dmn/data/sources.py.
"""

from __future__ import annotations

import re
from typing import Literal

import pyarrow as pa
from pydantic import Field, field_validator

from dmn.apps.base import Application, Column, RunConfig
from dmn.config import TrainConfig
from dmn.data.babi import SPLITS, parse_babi_file
from dmn.data.batching import Examples, encode_stories
from dmn.data.entities import rename_entities, renameable
from dmn.data.lengthen import lengthen_stories
from dmn.data.parquet import TokenisedData, is_published, publish, tokens_folder, train_rows
from dmn.data.sources import RawBabi, ingest_babi, source_fingerprint
from dmn.data.vocab import Vocabulary, tokenize
from dmn.errors import ConfigError

BABI_TASK_IDS = tuple(range(1, 21))
# a task's training file of at most this many questions gets renamed copies by default: bAbI 1k's 1,000, and a
# task whose 10k file is missing (task 3 in some copies), read from its 1k file; 10k's 10,000 need none
SMALL_TRAINING_FILE = 2_000
LIST_SEPARATOR = ","  # tasks 8 and 19 answer with lists written "apple,football", "n,w"
SCHEMA = pa.schema(
    [
        ("split", pa.string()),
        ("line", pa.int32()),  # line of the question in its raw file
        ("story", pa.list_(pa.string())),  # sentences as written
        ("story_tokens", pa.list_(pa.list_(pa.string()))),
        ("question", pa.string()),
        ("question_tokens", pa.list_(pa.string())),
        ("answer", pa.string()),
        ("supporting", pa.list_(pa.int32())),  # indices into `story`, in the file's order
    ]
)


class BabiRunConfig(RunConfig):
    """Everything one `dmn run babi` needs; also the parameters of the Prefect flow."""

    babi_tasks: list[int] = Field([1], description="bAbI task ids 1-20 to train.")
    size: Literal["1k", "10k"] = Field("1k", description="Training set size.")
    source: str = Field(
        "bundled",
        description="'bundled', a folder of bAbI files, a tasks_1-20_v1-2.tar.gz path or URL, or hf:NAME.",
    )
    source_sha256: str | None = Field(None, description="Expected sha256 of a tarball source.")
    model_name: str = Field("dmn-babi", description="Registered model name in MLflow.")
    train: TrainConfig = Field(
        TrainConfig(
            bucket_by_length=True, select_by="valid_accuracy", target_valid_accuracy=1.0, l2=1e-4, ema_decay=0.999
        ),
        description="The training protocol of each model: the paper's, but batches bucketed by story length, "
        "the epoch of the highest validation accuracy kept, stopping at 100 % (on 100 validation questions the loss "
        "rises with confidence while the accuracy still climbs; README, `dmn run babi`), an L2 penalty of 1e-4 "
        "(with the public code's 1e-3, task 17 stays at chance at 10k and task 18 fails; without one, task 2 fails "
        "and task 17 overfits: README, Results), and a moving average of the weights validated and kept (decay "
        "0.999: the 20 tasks at 1k, 15.6 % and 14.9 % mean error with seeds 0 and 1, against 16.9 % and 15.1 % with "
        "the weights as trained, and both within 20 minutes).",
    )
    entity_copies: list[int] | None = Field(
        None,
        description="Renamed copies of each training story (dmn/data/entities.py): its entities, the one-word answers "
        "found in their own story (places, people, objects), permuted in story, question and answer alike; a task "
        "whose answers are inferred rather than copied from its stories (15, 20) has none; 0: the stories as they "
        "are (the DMN+ paper). Several values train a model each per bAbI task and keep the best on validation. "
        "None: [4, 0] for a training file of up to 2,000 questions (bAbI 1k, where 900 stories overfit, and a task "
        "whose 10k file is missing, read from its 1k file), [0] for a larger one (10k).",
    )

    @field_validator("entity_copies")
    @classmethod
    def _copies(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or min(value) < 0 or len(set(value)) < len(value)):
            raise ValueError("give distinct counts of 0 or more, as '4,0'")
        return value

    joint: Literal["no", "also", "only"] | None = Field(
        None,
        description="Joint training (Weston et al. 2015): one model trained on all the run's bAbI tasks together "
        "(`joint_entity_copies`). 'also': beside each task's own models, validation choosing per task; 'only': that "
        "model answers every task; 'no': none, one model per task (the DMN papers). None: 'only' at 1k, where 1,000 "
        "questions a task are too few for a model of its own (README, Results: mean error 15.4 % against 19.8 % in "
        "about the same time), 'no' at 10k. It needs two tasks or more: a run of one task trains that task's own.",
    )
    joint_entity_copies: int | None = Field(
        None,
        ge=0,
        description="Renamed copies of each training story of a task in the joint model, where the task has "
        "entities to rename (as `entity_copies`). None: 2 for a training file of up to 2,000 questions (with 4, the "
        "20 tasks at 1k took 28.4 min against 16.7 and were no better: 15.6 % against 15.4 %), 0 for a larger one.",
    )
    joint_epochs: Literal["shared", "each_task"] = Field(
        "shared",
        description="The epoch of the joint model each task keeps: 'shared', the best on the validation questions "
        "of all the tasks (one model answers them all); 'each_task', the best on that task's own (a copy of the "
        "weights per task, each of the epoch its task did best; the training validates each task every epoch).",
    )
    max_sentences: int = Field(70, ge=1, description="Stories are cut to their last N sentences (DMN+ paper).")
    max_sentences_by_task: dict[int, int] = Field(
        {3: 130},
        description="Per-bAbI-task override of max_sentences, as {bAbI task: N} (task 3 needs 130, as the paper).",
    )

    @field_validator("babi_tasks")
    @classmethod
    def _known_tasks(cls, value: list[int]) -> list[int]:
        unknown = [t for t in value if t not in BABI_TASK_IDS]
        if unknown:
            raise ValueError(f"unknown bAbI task id(s) {unknown}; valid ids are 1-20")
        if not value:
            raise ValueError("at least one bAbI task id is needed")
        return sorted(set(value))


def parse_babi_tasks(text: str) -> list[int]:
    """'1,2,3' or 'all' -> [1, 2, 3]; raises ValueError naming the bad item."""
    if text.strip().lower() == "all":
        return list(BABI_TASK_IDS)
    ids = []
    for item in text.split(","):
        item = item.strip()
        if not item.isdigit() or int(item) not in BABI_TASK_IDS:
            raise ValueError(f"--babi-tasks: unknown bAbI task id {item!r}; valid ids are 1-20 or 'all'")
        ids.append(int(item))
    return sorted(set(ids))


def tokenise(raw: RawBabi, data_root: str) -> TokenisedData:
    """Parse and tokenise every file of `raw`; publish Parquet (a partition per bAbI task), vocabulary and
    manifest as one folder."""
    target = tokens_folder(data_root, f"babi-{raw.size}", raw.digest, __name__)
    files = raw.files()
    tasks = tuple(sorted({babi_task for babi_task, _ in files}))
    if not is_published(target):
        tables = {babi_task: _task_table(files, babi_task) for babi_task in tasks}
        train = train_rows(tables)
        answers = [answer for t in train for answer in t["answer"].to_pylist()]
        vocab = Vocabulary.build(
            [
                *(sentence for t in train for story in t["story_tokens"].to_pylist() for sentence in story),
                *(question for t in train for question in t["question_tokens"].to_pylist()),
            ],
            answers,
            [answer.split(LIST_SEPARATOR) for answer in answers],
        )
        manifest = {"digest": raw.digest, "size": raw.size, "babi_tasks": list(tasks)}
        publish(
            target, "babi_task", tables, vocab, {**manifest, "notes": {str(k): v for k, v in raw.fallbacks.items()}}
        )
    return TokenisedData(target, raw.digest, "babi_task", "bAbI task", tasks, dict(raw.fallbacks))


def _task_table(files: dict, babi_task: int) -> pa.Table:
    rows = []
    for split in SPLITS:
        for q in parse_babi_file(files[(babi_task, split)]):
            rows.append(
                {
                    "split": split,
                    "line": q.line,
                    "story": list(q.story),
                    "story_tokens": [tokenize(s) for s in q.story],
                    "question": q.question,
                    "question_tokens": tokenize(q.question),
                    "answer": q.answer,
                    "supporting": list(q.supporting),
                }
            )
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def settings(config: BabiRunConfig, babi_task: int) -> dict:
    """The story cut of this bAbI task in training and evaluation (its last N sentences; None: no cut), and the
    renamed copies of each training story (the first count of `entity_copies`; by default none: `variants`
    adds the renamed ones)."""
    return _variant(config, babi_task, (config.entity_copies or [0])[0])


def variants(config: BabiRunConfig, babi_task: int, dataset: TokenisedData) -> list[dict]:
    """The settings of each model trained on this bAbI task alone: none where the joint model alone answers
    (`joint="only"`, two tasks or more), else `_own_variants`."""
    if _joint_mode(config) == "only" and len(config.babi_tasks) > 1:
        return []
    return _own_variants(config, babi_task, dataset)


def _joint_mode(config: BabiRunConfig) -> str:
    """`joint` with its default resolved: 'only' at 1k, 'no' at 10k."""
    return config.joint or ("only" if config.size == "1k" else "no")


def _own_variants(config: BabiRunConfig, babi_task: int, dataset: TokenisedData) -> list[dict]:
    """One per count of renamed copies, where the task's training stories have entities to rename (tasks of
    yes/no, counts or directions have none: one model)."""
    rows = dataset.read(babi_task, "train")
    copies = config.entity_copies or ([4, 0] if _small(rows) else [0])
    return [_variant(config, babi_task, count) for count in (copies if renameable(rows) else [0])]


def _small(rows: list[dict]) -> bool:
    """A training file small enough to overfit (bAbI 1k's), whose stories get renamed copies by default."""
    return len(rows) <= SMALL_TRAINING_FILE


def joint_variant(config: BabiRunConfig, babi_tasks: list[int], dataset: TokenisedData) -> dict | None:
    """Each task's settings in the one model trained on them all (`joint`): its story cut,
    `joint_entity_copies` renamed copies where it has entities to rename (bAbI 1k: 2), and whether it keeps its
    own best epoch (`joint_epochs`); None when not asked."""
    if _joint_mode(config) == "no" or len(babi_tasks) < 2:
        return None
    copies = {task: _joint_copies(config, task, dataset) for task in babi_tasks}
    own_epoch = {"own_epoch": True} if config.joint_epochs == "each_task" else {}
    return {task: {**_variant(config, task, copies[task]), "joint": True, **own_epoch} for task in babi_tasks}


def _joint_copies(config: BabiRunConfig, babi_task: int, dataset: TokenisedData) -> int:
    rows = dataset.read(babi_task, "train")
    if not renameable(rows):
        return 0
    if config.joint_entity_copies is not None:
        return config.joint_entity_copies
    return 2 if _small(rows) else 0


def variant_name(settings: dict) -> str:
    """The variant in words: "joint, 4 renamed copies", "4 renamed copies", "joint" or "" (the plain model)."""
    copies = settings.get("entity_copies")
    return ", ".join(["joint"] * bool(settings.get("joint")) + ([f"{copies} renamed copies"] if copies else []))


def _variant(config: BabiRunConfig, babi_task: int, copies: int) -> dict:
    return {
        "sentence_limit": config.max_sentences_by_task.get(babi_task, config.max_sentences),
        "entity_copies": copies,
    }


def encode(rows: list[dict], vocab: Vocabulary, settings: dict, answer_kind: str) -> Examples:
    """Stories cut to `settings["sentence_limit"]`; answers as a class, or as words and the end word (rows
    without an answer, as requests to the served model are, get no target)."""
    if any("answer" not in row for row in rows):
        targets = None
    elif answer_kind == "class":
        targets = [[vocab.answer_id(row["answer"])] for row in rows]
    else:
        targets = [vocab.answer_word_ids(row["answer"].split(LIST_SEPARATOR)) for row in rows]
    return encode_stories(rows, vocab, settings["sentence_limit"], targets)


def render_answer(ids: list[int], vocab: Vocabulary, answer_kind: str) -> str:
    """Answer ids -> bAbI's notation: a class as it is, a word sequence up to the end word joined by ','."""
    if answer_kind == "class":
        return vocab.answers[ids[0]]
    words = []
    for i in ids:
        if i == 0:  # the end word
            break
        words.append(vocab.answer_words[i])
    return LIST_SEPARATOR.join(words)


SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
LINE_NUMBER = re.compile(r"^\s*\d+\s+")


def split_story(text: str) -> list[str]:
    """Plain text -> sentences: one per line, and lines split after '.', '!' or '?'; bAbI line numbers dropped."""
    sentences = []
    for line in text.splitlines():
        line = LINE_NUMBER.sub("", line).strip()
        sentences.extend(s.strip() for s in SENTENCE_END.split(line) if tokenize(s))
    return sentences


def parse_request(request: dict, settings: dict) -> dict:
    """{'story': plain text, 'question': text} -> a token row; ConfigError naming an empty column."""
    sentences = split_story(str(request.get("story", "")))
    if not sentences:
        raise ConfigError("story: no sentence with words in it")
    question = str(request.get("question", ""))
    if not tokenize(question):
        raise ConfigError("question: no words in it")
    return {
        "story": sentences,
        "story_tokens": [tokenize(s) for s in sentences],
        "question": question,
        "question_tokens": tokenize(question),
    }


def example_request(row: dict) -> dict:
    return {"story": "\n".join(row["story"]), "question": row["question"]}


def anchors(config: BabiRunConfig) -> list[str]:
    """The published results this run compares with (docs: ../shared/docs/PAPERS.md, marked there as checked
    (V) or quoted by a secondary source (S))."""
    if config.train.supervise_gates:
        return [
            "DMN (Kumar et al. 2016), bAbI 1k with the gates supervised by the supporting facts: 18 of 20 tasks "
            "passed, 17 and 19 failed (S)"
        ]
    if config.size == "10k":
        return ["DMN+ (Xiong et al. 2016), bAbI 10k: mean error 2.8 %, one failed task (QA16, 45.3 % error) (V)"]
    return ["bAbI 1k without supporting facts: end-to-end memory networks fail 10 tasks (V)"]


APPLICATION = Application(
    name="babi",
    module=__name__,
    unit_name="babi_task",
    unit_title="bAbI task",
    unit_type=int,
    config_type=BabiRunConfig,
    unit_field="babi_tasks",
    ingest_checks_units=True,
    describe=lambda config: f"bAbI en {config.size}",
    source_fingerprint=lambda config: source_fingerprint(config.source, config.size, config.source_sha256),
    ingest=lambda config, data_root: ingest_babi(
        config.source, config.size, data_root, config.source_sha256, config.babi_tasks
    ),
    tokenise=tokenise,
    settings=settings,
    encode=encode,
    render_answer=render_answer,
    parse_request=parse_request,
    request_columns=(Column("story"), Column("question")),
    output=Column("answer"),
    example_request=example_request,
    ask_hint='--story story.txt --question "Where is Mary?"',
    anchors=anchors,
    per_class=False,
    pass_error=0.05,  # the bAbI convention: a task is passed at 95 % accuracy or more
    first_max_error=0.5,  # a task-1 model of `make run` clears it; a model of 2 epochs does not
    audit_view=lambda row: (row["story"], row["question"], row["answer"]),
    serving_settings=lambda settings: {**settings, "sentence_limit": None},
    lengthen=lambda rows, settings, seed: lengthen_stories(rows, settings["sentence_limit"], seed),
    augment=lambda rows, settings, seed: rename_entities(rows, settings.get("entity_copies", 0), seed),
    variants=variants,
    variant_name=variant_name,
    joint_variant=joint_variant,
)

"""Entity renaming (dmn/data/entities.py) on real bAbI stories: entities come from the data, copies are
consistent renamings, and nothing else changes."""

from dmn.apps.babi import APPLICATION as BABI
from dmn.apps.babi import BabiRunConfig
from dmn.data.entities import entities, rename_entities
from dmn.data.sources import ingest_babi


def _rows(tmp_path, babi_root, babi_task):
    dataset = BABI.tokenise(ingest_babi(str(babi_root), "1k", tmp_path), tmp_path)
    return dataset.read(babi_task, "train")


def test_the_entities_are_the_answers_found_in_their_stories(tmp_path, babi_root):
    assert entities(_rows(tmp_path, babi_root, 1)) == ["bathroom", "bedroom", "garden", "hallway", "kitchen", "office"]
    assert entities(_rows(tmp_path, babi_root, 6)) == []  # yes / no: never in a story
    assert set(entities(_rows(tmp_path, babi_root, 5))) >= {"bill", "fred", "football", "milk"}  # "Bill" answers


def test_a_task_whose_answers_are_inferred_has_no_entities(tmp_path, babi_root):
    """Task 15 answers "wolf" from "mice are afraid of wolves" (its stories hold "wolf" only when someone is one),
    task 20 "kitchen" from "antoine is hungry": renamed, their copies would contradict the inference."""
    for babi_task in (15, 20):
        rows = _rows(tmp_path, babi_root, babi_task)
        story_words = {word for row in rows for sentence in row["story_tokens"] for word in sentence}
        inferred = [row for row in rows if not any(row["answer"] in sentence for sentence in row["story_tokens"])]
        assert inferred and {row["answer"] for row in inferred} <= story_words  # answers the stories use elsewhere
        assert entities(rows) == [] and rename_entities(rows, 2, seed=0) == rows, babi_task


def test_a_copy_renames_story_question_and_answer_alike(tmp_path, babi_root):
    rows = _rows(tmp_path, babi_root, 5)[:50]
    copies = rename_entities(rows, 2, seed=0)
    assert copies[:50] == rows and len(copies) == 150
    names = set(entities(rows))
    for original, copy in zip(rows * 2, copies[50:]):
        mapping = {}
        pairs = [*zip(sum(original["story_tokens"], []), sum(copy["story_tokens"], []))]
        pairs += [*zip(original["question_tokens"], copy["question_tokens"])]
        for before, after in pairs:
            assert (before in names) == (after in names) and (before in names or before == after)
            assert mapping.setdefault(before, after) == after  # one name for each entity, everywhere
        assert len(set(mapping.values())) == len(mapping)  # a bijection
        assert copy["answer"].lower() == mapping.get(original["answer"].lower(), original["answer"].lower())
        assert copy["answer"][0].isupper() == original["answer"][0].isupper()  # "Bill" -> "Fred"
    assert any(c["story_tokens"] != o["story_tokens"] for o, c in zip(rows * 2, copies[50:]))


def test_lists_are_not_copied_and_renamed_copies_are_the_1k_default(tmp_path, babi_root):
    rows = _rows(tmp_path, babi_root, 8)
    copies = rename_entities(rows, 1, seed=0)
    lists = [r for r in rows if "," in r["answer"]]
    assert lists and len(copies) == 2 * len(rows) - len(lists)
    dataset = BABI.tokenise(ingest_babi(str(babi_root), "1k", tmp_path), tmp_path)

    def counts(config, babi_task):
        return [s["entity_copies"] for s in BABI.setting_variants(config, babi_task, dataset)]

    assert counts(BabiRunConfig(), 8) == [4, 0]
    assert counts(BabiRunConfig(entity_copies=[2]), 8) == [2]
    assert counts(BabiRunConfig(), 6) == [0]  # yes / no: nothing to rename, one model
    assert counts(BabiRunConfig(), 15) == [0]  # inferred answers: nothing to rename


def test_at_1k_the_tasks_of_a_run_train_one_joint_model_with_2_renamed_copies_by_default(tmp_path, babi_root):
    dataset = BABI.tokenise(ingest_babi(str(babi_root), "1k", tmp_path), tmp_path)
    tasks = [3, 6, 8]
    config = BabiRunConfig(babi_tasks=tasks)
    assert [BABI.setting_variants(config, task, dataset) for task in tasks] == [[], [], []]  # no model of its own
    joint = BABI.joint_settings(config, tasks, dataset)
    assert {task: (s["entity_copies"], s["sentence_limit"], s["joint"]) for task, s in joint.items()} == {
        3: (2, 130, True),
        6: (0, 70, True),  # yes / no: nothing to rename
        8: (2, 70, True),
    }
    assert not any("own_epoch" in s for s in joint.values())  # the shared epoch: one model for all
    given = BabiRunConfig(babi_tasks=tasks, joint_entity_copies=1, joint="also", joint_epochs="each_task")
    assert [s["entity_copies"] for s in BABI.joint_settings(given, tasks, dataset).values()] == [1, 0, 1]
    assert all(s["own_epoch"] for s in BABI.joint_settings(given, tasks, dataset).values())
    assert [len(BABI.setting_variants(given, task, dataset)) for task in tasks] == [2, 1, 2]
    assert BABI.joint_settings(BabiRunConfig(babi_tasks=tasks, joint="no"), tasks, dataset) is None
    assert BABI.joint_settings(BabiRunConfig(babi_tasks=[8]), [8], dataset) is None  # one task: its own models
    assert BABI.setting_variants(BabiRunConfig(babi_tasks=[8]), 8, dataset)


def test_the_default_copies_follow_the_size_of_each_training_file(tmp_path, babi_en):
    """At 10k, a task read from its 10k file trains on its stories as they are; a task whose 10k training file
    is missing is read from its 1k file and gets the 1k default, renamed copies and the stories as they are."""
    release = tmp_path / "release"
    (release / "en-10k").mkdir(parents=True)
    (release / "en").symlink_to(babi_en)
    train = (babi_en / "qa8_lists-sets_train.txt").read_text()
    (release / "en-10k" / "qa8_lists-sets_train.txt").write_text(train * 3)  # 3,000 questions
    for name in ("qa8_lists-sets_test.txt", "qa2_two-supporting-facts_test.txt"):
        (release / "en-10k" / name).write_text((babi_en / name).read_text())
    raw = ingest_babi(str(release), "10k", tmp_path / "root")
    assert list(raw.fallbacks) == [2]
    dataset = BABI.tokenise(raw, tmp_path / "root")
    config = BabiRunConfig(size="10k")
    assert len(dataset.read(8, "train")) == 3_000
    assert [s["entity_copies"] for s in BABI.setting_variants(config, 8, dataset)] == [0]
    assert [s["entity_copies"] for s in BABI.setting_variants(config, 2, dataset)] == [4, 0]
    assert BABI.joint_settings(config.model_copy(update={"babi_tasks": [2, 8]}), [2, 8], dataset) is None
    joint = BABI.joint_settings(config.model_copy(update={"babi_tasks": [2, 8], "joint": "only"}), [2, 8], dataset)
    assert {task: s["entity_copies"] for task, s in joint.items()} == {2: 2, 8: 0}  # by each file's size


def test_every_renamed_answer_is_one_of_the_data_answers_in_every_task(tmp_path, babi_root):
    dataset = BABI.tokenise(ingest_babi(str(babi_root), "1k", tmp_path), tmp_path)
    for babi_task in range(1, 21):
        rows = dataset.read(babi_task, "train")
        answers = {row["answer"] for row in rows}
        copies = rename_entities(rows, 1, seed=babi_task)[len(rows) :]
        assert {copy["answer"] for copy in copies} <= answers, babi_task
    people = {row["answer"] for row in rename_entities(dataset.read(5, "train"), 1, seed=0) if row["answer"].istitle()}
    assert people == {"Bill", "Fred", "Jeff", "Mary"}  # people are renamed as people, objects as objects

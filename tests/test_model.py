"""The DMN models: the papers' formulas, shapes, and masks that make a story's answer independent of its
batch, for both architectures (DMN+ and the original DMN) and both answer modules."""

import pytest
import torch

from dmn.apps.babi import APPLICATION as BABI
from dmn.config import ModelConfig
from dmn.data.batching import encode_stories, make_batch
from dmn.data.vocab import Vocabulary, tokenize
from dmn.models import ModelSizes, build_model
from dmn.models.dmn_plus import positional_encoding

STORIES = [
    (["Mary went to the kitchen.", "John moved to the garden."], "Where is Mary?", "kitchen"),
    (
        [
            "Sandra journeyed to the office.",
            "Mary went to the hallway.",
            "John travelled to the bathroom.",
            "Daniel went back to the bedroom.",
            "Sandra moved to the garden and then to the kitchen.",
        ],
        "What is Sandra carrying?",
        "apple,football",
    ),
    (["Daniel went to the office."], "Where is Daniel now?", "office"),
]
ARCHITECTURES = [("dmn+", "class"), ("dmn", "sequence"), ("dmn+", "sequence"), ("dmn", "class")]
# (architecture, answer, input): the parts swapped between the papers
PARTS = [(a, answer, "auto") for a, answer in ARCHITECTURES] + [
    ("dmn", "sequence", "sentences"),
    ("dmn+", "class", "words"),
]


def _rows():
    return [
        {"story_tokens": [tokenize(s) for s in story], "question_tokens": tokenize(q), "answer": a, "supporting": [0]}
        for story, q, a in STORIES
    ]


def _vocab():
    rows = _rows()
    words = [s for r in rows for s in r["story_tokens"]] + [r["question_tokens"] for r in rows]
    answers = [r["answer"] for r in rows]
    return Vocabulary.build(words, answers, [a.split(",") for a in answers])


def _model(architecture, answer, hidden=16, input="auto"):
    config = ModelConfig(architecture=architecture, answer=answer, input=input, hidden_size=hidden, passes=3)
    vocab = _vocab()
    return build_model(config, ModelSizes(len(vocab.words), vocab.answer_size(answer))).eval(), vocab


def test_positional_encoding_follows_the_paper_with_the_sentence_own_length():
    torch.manual_seed(0)
    words = torch.randn(1, 1, 5, 4)  # one sentence of M = 3 words padded to width 5, D = 4
    word_mask = torch.tensor([[[True, True, True, False, False]]])
    encoded = positional_encoding(words, word_mask)  # (1, 1, 4)
    m, dim = 3, 4
    for d in range(1, dim + 1):
        expected = sum(((1 - j / m) - (d / dim) * (1 - 2 * j / m)) * words[0, 0, j - 1, d - 1] for j in range(1, m + 1))
        assert abs(encoded[0, 0, d - 1].item() - expected.item()) < 1e-5  # padded words weigh nothing


@pytest.mark.parametrize("architecture,answer", ARCHITECTURES)
def test_shapes_and_gates_are_zero_on_padded_facts(architecture, answer):
    torch.manual_seed(0)
    model, vocab = _model(architecture, answer)
    batch = make_batch(BABI.encode(_rows(), vocab, {"sentence_limit": 70}, answer))
    output = model(*batch.model_inputs())
    steps = 1 if answer == "class" else model.answer.max_words
    assert output.logits.shape == (3, steps, vocab.answer_size(answer))
    assert output.gates.shape == output.gate_scores.shape == (3, 3, 5)  # (B, P, S)
    assert (output.gates[0, :, 2:] == 0).all() and (output.gates[2, :, 1:] == 0).all()  # padded facts: exactly 0
    assert torch.isinf(output.gate_scores[0, :, 2:]).all()
    if architecture == "dmn+":  # a softmax over the story's facts
        assert torch.allclose(output.gates.sum(-1), torch.ones(3, 3))
    else:  # a sigmoid gate per fact
        assert ((output.gates[0, :, :2] > 0) & (output.gates[0, :, :2] < 1)).all()


@pytest.mark.parametrize("architecture,answer,input", PARTS)
def test_a_story_gets_the_same_answer_and_gates_alone_or_in_a_padded_batch(architecture, answer, input):
    torch.manual_seed(0)
    model, vocab = _model(architecture, answer, hidden=24, input=input)
    data = BABI.encode(_rows(), vocab, {"sentence_limit": 70}, answer)
    together = model(*make_batch(data).model_inputs())
    teacher_forced = model(*make_batch(data).model_inputs(), target=make_batch(data).target)
    for i in range(len(STORIES)):
        alone_batch = make_batch(data.select(torch.tensor([i])))  # trimmed to this story's own sizes
        alone = model(*alone_batch.model_inputs())
        n_facts = alone.gates.size(-1)
        assert torch.allclose(alone.logits[0], together.logits[i], atol=1e-5)
        assert torch.allclose(alone.gates[0], together.gates[i, :, :n_facts], atol=1e-6)
        forced = model(*alone_batch.model_inputs(), target=alone_batch.target)  # the answer's own length
        steps = forced.logits.size(1)
        assert torch.allclose(forced.logits[0], teacher_forced.logits[i, :steps], atol=1e-5)


def test_the_decoder_emits_words_up_to_the_end_and_renders_lists_in_babi_notation():
    vocab = _vocab()
    assert vocab.answer_words[0] == "<end>"
    ids = vocab.answer_word_ids(["apple", "football"])  # the words, then the end word
    assert [vocab.answer_words[i] for i in ids] == ["apple", "football", "<end>"]
    assert BABI.render_answer([*ids, 3, 2], vocab, "sequence") == "apple,football"  # after the end: ignored
    assert BABI.render_answer([vocab.answer_id("office")], vocab, "class") == "office"
    data = BABI.encode(_rows(), vocab, {"sentence_limit": 70}, "sequence")
    assert data.target[1].tolist() == ids and data.target[0].tolist()[-1] == -100  # padded past the end


def test_story_cut_keeps_the_last_sentences_and_keeps_supporting_facts_in_order():
    rows = [{"story_tokens": [["a"], ["b"], ["c"], ["d"]], "question_tokens": ["q"], "supporting": [3, 0, 2]}]
    vocab = Vocabulary.build([["a", "b", "c", "d", "q"]], ["x"])
    data = encode_stories(rows, vocab, sentence_limit=2)
    assert data.story[0, :, 0].tolist() == vocab.word_ids(["c", "d"])
    assert data.supporting[0].tolist() == [1, -1, 0]  # fact 0 was cut away: -1 in its place, the order kept


def test_both_architectures_from_one_builder_and_dmn_plus_initialisation_unchanged():
    """DMN+ draws its initial weights in the order of the model before the seam (names aside), so a seed
    gives the same model as before; the DMN has its own parts (word GRU, gate network, decoder)."""
    sizes = ModelSizes(30, 5)
    torch.manual_seed(0)
    plus = build_model(ModelConfig(), sizes)
    names = [name for name, _ in plus.named_parameters()]
    assert names[0] == "embedding.weight" and names[-2:] == ["answer.linear.weight", "answer.linear.bias"]
    assert plus.embedding is plus.input_module.embedding is plus.question_module.embedding
    torch.manual_seed(0)
    original = build_model(ModelConfig(architecture="dmn"), sizes)
    parts = {type(m).__name__ for m in original.children()}
    assert parts == {"Embedding", "WordGRUInput", "QuestionEncoder", "GatedMemory", "AnswerDecoder"}
    assert original.memory.gate_hidden.in_features == 7 * 80 + 2  # z(c, m, q): 7 vectors and 2 bilinear terms
    mixed = build_model(ModelConfig(architecture="dmn", input="sentences"), sizes)  # DMN+'s reader, the DMN's rest
    assert [type(m).__name__ for m in mixed.children()][1:] == [
        "FusionInput",
        "QuestionEncoder",
        "GatedMemory",
        "AnswerDecoder",
    ]


def test_answer_interactions_read_the_comparisons_of_memory_and_question_and_need_a_class_answer():
    torch.manual_seed(0)
    hidden = 16
    config = ModelConfig(hidden_size=hidden, passes=2, answer_interactions=True)
    vocab = _vocab()
    model = build_model(config, ModelSizes(len(vocab.words), vocab.answer_size("class"))).eval()
    memory, question = torch.randn(3, hidden), torch.randn(3, hidden)
    logits = model.answer(memory, question, facts=None)  # (B, 1, A)
    weight, bias = model.answer.linear.weight, model.answer.linear.bias  # (A, 4H), (A,)
    w_m, w_q, w_product, w_distance = weight.split(hidden, dim=1)
    expected = memory @ w_m.T + question @ w_q.T + (memory * question) @ w_product.T
    expected = expected + (memory - question).abs() @ w_distance.T + bias
    assert torch.allclose(logits.squeeze(1), expected, atol=1e-5)
    # the paper's answer module is the default, and an answer of any other kind refuses the option
    assert build_model(ModelConfig(hidden_size=hidden), ModelSizes(10, 4)).answer.linear.in_features == 2 * hidden
    with pytest.raises(ValueError, match="answer_interactions: only a class answer"):
        ModelConfig(architecture="dmn", answer_interactions=True)

"""DMN models built from their parts: `build_model(config, sizes)` for the architecture `config` names.

    dmn+  Xiong et al. 2016: positional encoding + input fusion, attention gates + attention GRU,
          untied ReLU memory update (dmn_plus.py)
    dmn   Kumar et al. 2016: word GRU input, gates over z(c, m, q) + gated GRU episodes, GRU memory
          update (dmn.py)

Both share the question module (network.py); either reads images through the visual input module of DMN+
(visual.py, `ModelConfig.input = "regions"`). `ModelConfig.input` and `ModelConfig.answer` put either
paper's input module and answer module on either memory ('auto': the architecture's own). The answer module
follows the answer's kind: a class (DMN+'s softmax over [m; q]), a word sequence (the DMN's GRU decoder) or a
tag per fact (the DMN's tagger); `ModelConfig.answer = "auto"`
(`ModelConfig.answer_kind`) takes the paper's, so `dmn+` answers with a class and `dmn` with a sequence.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from dmn.config import ModelConfig
from dmn.models.dmn import AnswerDecoder, FactTagger, GatedMemory, WordGRUInput
from dmn.models.dmn_plus import AnswerClassifier, AttentionMemory, FusionInput
from dmn.models.network import DynamicMemoryNetwork, ModelOutput, QuestionEncoder
from dmn.models.visual import VisualInput

__all__ = ["ModelOutput", "ModelSizes", "DynamicMemoryNetwork", "build_model"]


@dataclass(frozen=True)
class ModelSizes:
    """What the data decides: vocabulary and answer sizes (answer classes, or answer words with the end)."""

    vocab_size: int
    answer_size: int


def build_model(config: ModelConfig, sizes: ModelSizes) -> DynamicMemoryNetwork:
    """A freshly initialised DMN of `config.architecture` (the order of construction fixes the initial
    weights for a seed: keep it)."""
    hidden = config.hidden_size
    embedding = nn.Embedding(sizes.vocab_size, hidden, padding_idx=0)
    if config.input_kind == "sentences":
        input_module = FusionInput(embedding, hidden, config.dropout)
    elif config.input_kind == "regions":
        input_module = VisualInput(hidden, config.dropout)
    else:
        input_module = WordGRUInput(embedding, hidden, config.dropout)
    question_module = QuestionEncoder(embedding, hidden)
    if config.architecture == "dmn+":
        memory = AttentionMemory(hidden, config.passes)
    else:
        memory = GatedMemory(hidden, config.passes)
    if config.answer_kind == "class":
        answer = AnswerClassifier(hidden, sizes.answer_size, config.dropout, config.answer_interactions)
    elif config.answer_kind == "sequence":
        answer = AnswerDecoder(hidden, sizes.answer_size, config.dropout, config.max_answer_words)
    else:
        answer = FactTagger(hidden, sizes.answer_size, config.dropout)
    return DynamicMemoryNetwork(embedding, input_module, question_module, memory, answer)

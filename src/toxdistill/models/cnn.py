"""A student without attention: the teacher's token embeddings, 1-D convolutions and pooling (Kim 2014), distilled
from the teacher's soft targets as any student is (Tang et al. 2019 distilled BERT into a BiLSTM this way).

It reads the teacher's tokenizer, so training, consistency perturbations, export, the engines, ``predict`` and
``serve`` take it as they take an encoder: ``input_ids`` and ``attention_mask`` in, ``logits`` out. Per token it
does about a sixth of a 384-wide encoder layer's work and has no attention, whose cost grows with the square of
the text's length.

This file imports only torch and transformers: it is copied into every saved folder (``auto_map``), so that plain
``transformers`` loads the model with ``trust_remote_code=True``; toxdistill registers the classes itself.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

MODEL_TYPE = "toxdistill-cnn"


class CnnConfig(PretrainedConfig):
    model_type = MODEL_TYPE

    def __init__(
        self,
        vocab_size: int = 30522,
        embedding_size: int = 384,
        filters: int = 128,
        widths: tuple[int, ...] | list[int] = (1, 2, 3),
        hidden_size: int = 384,
        dropout: float = 0.1,
        max_position_embeddings: int = 512,
        pad_token_id: int = 0,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.embedding_size = embedding_size
        """The token embeddings' width: the teacher's, whose embedding table the student starts from."""
        self.filters = filters
        """Feature maps per window width. 128 × 3 widths × (max, mean) pooling = 768 pooled features: as many as
        the teacher's [CLS] state has values twice over, at a sixth of an encoder layer's work per token."""
        self.widths = list(widths)
        """Window widths in tokens. 1 reads single (sub)words, where most slurs are; 2 and 3 read the short
        phrases that turn a word offensive or not ("you're a", "not a")."""
        self.hidden_size = hidden_size
        """The pooled representation's width before the head: the teacher's hidden size, so the [CLS] cosine term
        compares the two without a projection."""
        self.dropout = dropout
        """Before the head, as in BERT's classifier."""
        self.max_position_embeddings = max_position_embeddings
        """The longest input read: the teacher's window. The convolutions learn no positions; readers cap texts
        by this as they do for an encoder."""
        # One block of convolutions: toxdistill's layer-wise code reads it as one layer above the embeddings.
        kwargs.setdefault("num_hidden_layers", 1)
        super().__init__(**kwargs)
        self.pad_token_id = pad_token_id


class CnnForSequenceClassification(PreTrainedModel):
    config_class = CnnConfig
    base_model_prefix = "cnn"
    main_input_name = "input_ids"

    def __init__(self, config: CnnConfig):
        super().__init__(config)
        e, f = config.embedding_size, config.filters
        self.embeddings = nn.Embedding(config.vocab_size, e, padding_idx=config.pad_token_id)
        # "Full" convolutions (padding w - 1 on both sides): a text shorter than the widest window still has
        # windows, and every token is seen at every position of every window.
        self.convs = nn.ModuleList(nn.Conv1d(e, f, w, padding=w - 1) for w in config.widths)
        self.pool = nn.Linear(2 * f * len(config.widths), config.hidden_size)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.hidden_size, int(config.num_labels or 2))
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Conv1d)):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings

    def set_input_embeddings(self, value: nn.Module) -> None:
        assert isinstance(value, nn.Embedding), "the convolutions read an embedding table"
        self.embeddings = value

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        mask = attention_mask.to(self.embeddings.weight.dtype)
        tokens = self.embeddings(input_ids) * mask.unsqueeze(-1)  # padding contributes zeros to every window
        x = tokens.transpose(1, 2)
        maxes, means = [], []
        for conv, w in zip(self.convs, self.config.widths):
            h = nn.functional.gelu(conv(x))
            # A window counts where it covers at least one real token: the mask, max-pooled over the window.
            m = nn.functional.max_pool1d(nn.functional.pad(mask, (w - 1, w - 1)).unsqueeze(1), w, stride=1)
            maxes.append((h + (m - 1.0) * 1e4).amax(dim=-1))
            means.append((h * m).sum(dim=-1) / m.sum(dim=-1).clamp(min=1.0))
        pooled = torch.tanh(self.pool(torch.cat(maxes + means, dim=-1)))
        logits = self.classifier(self.dropout(pooled))
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.float(), labels)
        # The pooled state stands where an encoder's last hidden states are, at position 0: the distillation
        # loss's [CLS] cosine term reads ``hidden_states[-1][:, 0]`` from every model alike.
        hidden = (tokens, pooled.unsqueeze(1)) if output_hidden_states else None
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=hidden)


def register() -> None:
    """Make ``AutoConfig`` and ``AutoModelForSequenceClassification`` load ``toxdistill-cnn`` folders without
    ``trust_remote_code``, and saved folders carry this file for readers without toxdistill."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    try:
        AutoConfig.register(MODEL_TYPE, CnnConfig)
        AutoModelForSequenceClassification.register(CnnConfig, CnnForSequenceClassification)
    except ValueError:  # registered already
        return
    # save_pretrained then copies this file into the folder and names it in config.json's auto_map.
    CnnConfig.register_for_auto_class()
    CnnForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")

"""The tokenizer of an exported folder, read by the ``tokenizers`` library alone.

``transformers`` (and, through ``models.teacher``, torch) is the heavy half of a serving install; an ONNX
export only needs its ``tokenizer.json``. ``JsonTokenizer`` gives the ``Predictor`` the part of a fast
tokenizer it calls (``__call__`` for ids, ``pad``, ``model_input_names``, ``vocab_size``) and tokenizes
exactly as ``AutoTokenizer`` does on the same folder: a fast tokenizer is this same ``tokenizer.json``,
with truncation and padding switched per call.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from toxdistill.errors import ToxdistillError

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
# transformers' default for tokenizers whose config names no inputs (BERT's); the Predictor drops the
# ones a graph does not take.
DEFAULT_INPUTS = ["input_ids", "token_type_ids", "attention_mask"]


def _token_text(token: Any) -> str | None:
    """A special token as ``tokenizer_config.json`` stores it: a string, or an AddedToken's dict."""
    if isinstance(token, dict):
        token = token.get("content")
    return token if isinstance(token, str) else None


class JsonTokenizer:
    def __init__(self, tokenizer: Any, config: dict):
        # A tokenizer.json may carry the truncation and padding it was saved with; a fast tokenizer
        # ignores them too and sets both per call.
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tok = tokenizer
        self._cut: dict[int, Any] = {}  # truncating copies by max_length: never re-configure a shared one
        self.model_input_names = list(config.get("model_input_names") or DEFAULT_INPUTS)
        self.padding_side = config.get("padding_side") or "right"
        self.truncation_side = config.get("truncation_side") or "right"
        pad = _token_text(config.get("pad_token"))
        self.pad_token_id = tokenizer.token_to_id(pad) if pad else None
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=False)

    @classmethod
    def load(cls, folder: Path) -> JsonTokenizer | None:
        """The folder's tokenizer, or None when it has no ``tokenizer.json`` or no pad token to batch with
        (a slow-only tokenizer, say): the caller then falls back to ``transformers``."""
        from tokenizers import Tokenizer  # imported when a folder loads: --help stays quick

        file = Path(folder) / TOKENIZER_FILE
        if not file.is_file():
            return None
        cfg_file = Path(folder) / TOKENIZER_CONFIG
        try:
            config = json.loads(cfg_file.read_text(encoding="utf-8")) if cfg_file.is_file() else {}
            tok = Tokenizer.from_file(str(file))
        except Exception as e:  # noqa: BLE001 - a bad file is a user-facing bad folder; tokenizers raises plain Exception
            msg = str(e).splitlines()[0][:160] if str(e) else e.__class__.__name__
            raise ToxdistillError(f"cannot load a tokenizer from {folder}: {msg}", "check the model folder") from None
        out = cls(tok, config if isinstance(config, dict) else {})
        return out if out.pad_token_id is not None else None

    def _truncating(self, max_length: int) -> Any:
        from tokenizers import Tokenizer

        tok = self._cut.get(max_length)
        if tok is None:
            tok = Tokenizer.from_str(self._tok.to_str())
            tok.no_padding()
            tok.enable_truncation(max_length, strategy="longest_first", direction=self.truncation_side)
            self._cut[max_length] = tok
        return tok

    def __call__(
        self,
        texts: Sequence[str],
        truncation: bool = False,
        max_length: int | None = None,
        add_special_tokens: bool = True,
    ) -> dict[str, list[list[int]]]:
        tok = self._truncating(max_length) if truncation and max_length else self._tok
        # The ids only: without the character offsets that nothing here reads, a 16-tweet batch tokenizes in
        # 25 rather than 37 us a text.
        encs = tok.encode_batch_fast(list(texts), add_special_tokens=add_special_tokens)
        return {"input_ids": [e.ids for e in encs]}

    def pad(self, encoded: dict[str, list[list[int]]], return_tensors: str = "np") -> dict[str, np.ndarray]:
        """Ids padded to the longest row, and the attention mask, as int64 arrays."""
        rows = encoded["input_ids"]
        width = max((len(r) for r in rows), default=0)
        ids = np.full((len(rows), width), self.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, r in enumerate(rows):
            at = slice(0, len(r)) if self.padding_side == "right" else slice(width - len(r), width)
            ids[i, at] = r
            mask[i, at] = 1
        return {"input_ids": ids, "attention_mask": mask}

"""Token-level models: language models that read and write item identifiers as tokens.

A `RecModel` is a Hugging Face model (encoder-decoder or decoder-only) plus its tokenizer
with one token per (level, code) added: `<a_0>` ... `<a_255>`, `<b_0>` ... Identifier tokens
of one level get consecutive ids, so mapping codes to tokens is `level_offsets[t] + code`.

From-scratch presets need no download: T5 configurations sized like the published
TIGER/LETTER recommender and smaller ones for CPU runs and tests, and GPT-2 shaped
decoder-only models (pre-LayerNorm blocks, learned positions, output tied to the token
embeddings, residual dropout) for the all-position path. Their text vocabulary is a
WordPiece tokenizer trained on the item texts, so the alignment tasks have words to read.

Identifier tokens are scored against their own level's codes only: the training loss, the
teacher-forced scores and beam search all use a softmax over level t's codes at level t.
The token itself says its level, so a decoder-only model needs no level embedding or
separator, and any Hugging Face causal LM reads the same layout.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ..progress import quiet_transformers

log = logging.getLogger(__name__)

ModelKind = Literal["seq2seq", "causal"]
PromptStyle = Literal["plain", "natural"]

# Task markers of the plain (from-scratch) prompts; pretrained models read natural prompts.
TASK_TOKENS = ("<seqrec>", "<item2id>", "<id2item>")
# The learned projection of item text embeddings (item2id_input="embedding"), a submodule of
# the model so that it trains, moves and is saved with it.
PROJECTION = "siit_item_projection"
PROJECTION_FILE = "item_projection.safetensors"
SPECIAL_TOKENS = ("<pad>", "</s>", "<unk>")

NEG_INF = float("-inf")


@contextmanager
def evaluating(module: torch.nn.Module) -> Iterator[None]:
    """`module` in eval mode (no dropout) inside, in its previous mode after."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def full_precision(x: torch.Tensor) -> torch.Tensor:
    """Half-precision logits are scored in float32; float32 and float64 stay as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}


class ModelBase:
    """What both model families share: the network (`model`), the identifier layout
    (`codebook_sizes`) and an eval-mode context."""

    model: Any
    codebook_sizes: tuple[int, ...]

    @property
    def n_levels(self) -> int:
        return len(self.codebook_sizes)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def evaluating(self) -> AbstractContextManager[None]:
        """Eval mode (no dropout) inside, the previous mode after."""
        return evaluating(self.model)


@dataclass
class RecModel(ModelBase):
    """A model, its tokenizer and where the identifier tokens sit in the vocabulary."""

    model: Any  # transformers.PreTrainedModel
    tokenizer: Any  # transformers.PreTrainedTokenizerFast
    kind: ModelKind
    style: PromptStyle
    codebook_sizes: tuple[int, ...]
    prefixes: tuple[str, ...]
    level_offsets: np.ndarray  # (L,) token id of code 0 of each level
    # item2id from text embeddings: each item's vector becomes `vector_tokens` input
    # positions through the projection; prompts reach them by virtual token ids past the
    # vocabulary (`vector_ids`), resolved against `item_vectors` (set_item_vectors)
    vector_tokens: int = 0
    item_vectors: torch.Tensor | None = field(default=None, repr=False)

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    @property
    def eos_id(self) -> int:
        return int(self.tokenizer.eos_token_id)

    def code_tokens(self, codes: np.ndarray) -> np.ndarray:
        """Token ids of identifiers (..., L)."""
        return self.level_offsets + np.asarray(codes, dtype=np.int64)

    def level_token_ids(self, level: int) -> slice:
        start = int(self.level_offsets[level])
        return slice(start, start + self.codebook_sizes[level])

    def text_ids(self, texts: Sequence[str], max_tokens: int) -> np.ndarray:
        """Token ids of texts, (n, max_tokens) padded with -1, without special tokens."""
        encoded = self.tokenizer(
            list(texts), add_special_tokens=False, truncation=True, max_length=max_tokens
        )["input_ids"]
        out = np.full((len(encoded), max_tokens), -1, dtype=np.int64)
        lengths = np.fromiter((len(e) for e in encoded), dtype=np.int64, count=len(encoded))
        if lengths.sum():
            rows = np.repeat(np.arange(len(encoded)), lengths)
            cols = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
            out[rows, cols] = np.concatenate([np.asarray(e, dtype=np.int64) for e in encoded if e])
        return out

    def prompt_ids(self, text: str) -> np.ndarray:
        return np.asarray(self.tokenizer(text, add_special_tokens=False)["input_ids"], np.int64)

    # -- item vectors as input -----------------------------------------------------------

    @property
    def vector_base(self) -> int:
        """The first virtual token id: past every row of the input embedding table."""
        return int(self.model.get_input_embeddings().num_embeddings)

    def add_item_projection(self, dim: int, tokens: int) -> None:
        """A learned projection of `dim`-sized item vectors to `tokens` input positions."""
        if self.vector_tokens:
            raise ValueError("the model already has an item vector projection")
        if dim < 1 or tokens < 1:
            raise ValueError(f"item vectors need dim >= 1 and tokens >= 1, got {dim}, {tokens}")
        hidden = self.model.get_input_embeddings().embedding_dim
        projection = torch.nn.Linear(dim, tokens * hidden)
        param = next(self.model.parameters())
        self.model.add_module(PROJECTION, projection.to(param.device, param.dtype))
        self.vector_tokens = tokens

    def set_item_vectors(self, vectors: np.ndarray) -> None:
        """The table that `vector_ids(i)` reads: row i is item i's vector."""
        if not self.vector_tokens:
            raise ValueError("the model has no item vector projection (add_item_projection)")
        vectors = np.asarray(vectors, dtype=np.float32)
        dim = getattr(self.model, PROJECTION).in_features
        if vectors.ndim != 2 or vectors.shape[1] != dim:
            raise ValueError(f"item vectors must be (n, {dim}), got shape {vectors.shape}")
        self.item_vectors = torch.as_tensor(vectors, device=self.device)

    def vector_ids(self, items: np.ndarray) -> np.ndarray:
        """Virtual token ids (n, vector_tokens) of items' vectors, for prompts."""
        items = np.asarray(items, dtype=np.int64)
        if self.item_vectors is None or (len(items) and items.max() >= len(self.item_vectors)):
            raise ValueError("item vectors are not set for these items (set_item_vectors)")
        k = self.vector_tokens
        return self.vector_base + items[:, None] * k + np.arange(k)

    def _embed_vectors(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """`input_ids`, or `inputs_embeds` where virtual tokens stand for item vectors."""
        base = self.vector_base
        virtual = ids >= base
        if not self.vector_tokens or not bool(virtual.any()):
            return {"input_ids": ids}
        if self.item_vectors is None:
            raise ValueError("the prompts hold item vector tokens but no item vectors are set")
        emb = self.model.get_input_embeddings()(ids.masked_fill(virtual, self.pad_id))
        offset = ids[virtual] - base
        k = self.vector_tokens
        vectors = self.item_vectors[offset // k].to(emb.dtype)
        projected = getattr(self.model, PROJECTION)(vectors).view(len(offset), k, -1)
        slots = projected[torch.arange(len(offset), device=ids.device), offset % k]
        return {"inputs_embeds": emb.index_put(torch.nonzero(virtual, as_tuple=True), slots)}

    # -- tensors -------------------------------------------------------------------------

    def inputs(
        self, prompt: np.ndarray, target: np.ndarray | None = None
    ) -> dict[str, torch.Tensor]:
        """Model inputs of left-padded prompts (B, P) and right-padded targets (B, T), both
        padded with -1. Decoder-only models read prompt + target in one sequence."""
        device = self.device
        p = torch.as_tensor(prompt, device=device)
        if self.kind == "seq2seq":
            out = {
                **self._embed_vectors(p.masked_fill(p < 0, self.pad_id)),
                "attention_mask": (p >= 0).long(),
            }
            if target is not None:
                t = torch.as_tensor(target, device=device)
                start = torch.full_like(t[:, :1], int(self.model.config.decoder_start_token_id))
                shifted = torch.cat([start, t[:, :-1]], dim=1)
                out["decoder_input_ids"] = shifted.masked_fill(shifted < 0, self.pad_id)
            return out
        seq = p if target is None else torch.cat([p, torch.as_tensor(target, device=device)], 1)
        mask = (seq >= 0).long()
        return {
            **self._embed_vectors(seq.masked_fill(seq < 0, self.pad_id)),
            "attention_mask": mask,
            "position_ids": (mask.cumsum(1) - 1).clamp(min=0),
        }

    def target_log_probs(self, net: Any, prompt: np.ndarray, target: np.ndarray) -> torch.Tensor:
        """Log-probability of each target token given the prompt and the targets before it
        (B, T), by teacher forcing; 0 at padding. Identifier tokens are normalized over
        their level's codes, other tokens over the whole vocabulary. `net` is the model or
        its DDP wrapper.

        A decoder-only model whose targets are all identifier tokens (seqrec windows,
        item2id) projects its last hidden states onto the identifier rows of the output
        layer only: at a few thousand text tokens that is most of a small model's step."""
        t = torch.as_tensor(target, device=self.device)
        tables = self._level_tables()
        level = torch.where(t >= 0, tables["token_level"][t.clamp(min=0)], -1)
        is_id = level >= 0
        is_text = (t >= 0) & ~is_id
        inputs = self.inputs(prompt, target)
        n = t.shape[1]
        full = None
        if self.kind == "seq2seq":
            full = full_precision(net(**inputs).logits)
        elif is_text.any():
            full = full_precision(net(**inputs, logits_to_keep=n + 1).logits[:, :n])
        if full is not None:
            id_logits = full[..., tables["id_tokens"]]
        else:
            out = net(**inputs, output_hidden_states=True, logits_to_keep=1)
            head = self.model.get_output_embeddings()
            bias = None if head.bias is None else head.bias[tables["id_tokens"]]
            hidden = out.hidden_states[-1][:, -(n + 1) : -1]
            id_logits = full_precision(
                torch.nn.functional.linear(hidden, head.weight[tables["id_tokens"]], bias)
            )
        # one softmax per position over its level's columns (level 0 stands in at padding)
        other_level = tables["column_level"] != level.clamp(min=0)[..., None]
        id_lp = torch.log_softmax(id_logits.masked_fill(other_level, NEG_INF), -1)
        column = tables["token_column"][t.clamp(min=0)]
        out_lp = id_lp.gather(2, column[..., None])[..., 0]
        if full is not None and is_text.any():
            text_lp = torch.log_softmax(full, -1).gather(2, t.clamp(min=0)[..., None])[..., 0]
            out_lp = torch.where(is_text, text_lp, out_lp)
        return out_lp.masked_fill(t < 0, 0.0)

    def level_log_probs(self, logits: torch.Tensor, level: int) -> torch.Tensor:
        """Log-probabilities of level `level`'s codes (..., V_t) from full-vocabulary
        logits (..., V): the softmax the model is trained with."""
        return torch.log_softmax(full_precision(logits[..., self.level_token_ids(level)]), -1)

    def _level_tables(self) -> dict[str, torch.Tensor]:
        """Lookup tensors on the model's device: `id_tokens` (all identifier token ids in
        level order), `column_level` (level of each of those columns), and per vocabulary
        token its level (-1: not an identifier token) and column."""
        device = self.device
        cached = getattr(self, "_tables", None)
        if cached is not None and cached["id_tokens"].device == device:
            return cached
        sizes = np.asarray(self.codebook_sizes)
        id_tokens = np.concatenate(
            [np.arange(size) + off for off, size in zip(self.level_offsets, sizes, strict=True)]
        )
        vocab = max(len(self.tokenizer), int(id_tokens.max()) + 1)
        token_level = np.full(vocab, -1, dtype=np.int64)
        token_column = np.zeros(vocab, dtype=np.int64)
        token_level[id_tokens] = np.repeat(np.arange(len(sizes)), sizes)
        token_column[id_tokens] = np.arange(len(id_tokens))
        tables = {
            "id_tokens": id_tokens,
            "column_level": np.repeat(np.arange(len(sizes)), sizes),
            "token_level": token_level,
            "token_column": token_column,
        }
        self._tables = {k: torch.as_tensor(v, device=device) for k, v in tables.items()}
        return self._tables

    def token_log_probs(self, prompt: np.ndarray, target: np.ndarray) -> torch.Tensor:
        """`target_log_probs` of the model itself (no DDP wrapper)."""
        return self.target_log_probs(self.model, prompt, target)

    def token_losses(self, net: Any, prompt: np.ndarray, target: np.ndarray) -> torch.Tensor:
        """Cross-entropy of every target token (B, T); 0 at padding."""
        return -self.target_log_probs(net, prompt, target)

    # -- persistence ---------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Weights as safetensors, tokenizer files and `siit_model.json`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        projection = self.model._modules.pop(PROJECTION, None)  # not an architecture weight
        try:
            with quiet_transformers():
                self.model.save_pretrained(directory, safe_serialization=True)
        finally:
            if projection is not None:
                self.model.add_module(PROJECTION, projection)
        if projection is not None:
            from safetensors.torch import save_file

            state = {k: v.detach().contiguous() for k, v in projection.state_dict().items()}
            save_file(state, str(directory / PROJECTION_FILE))
        self.tokenizer.save_pretrained(directory)
        meta = dict(
            kind=self.kind,
            style=self.style,
            codebook_sizes=list(self.codebook_sizes),
            prefixes=list(self.prefixes),
            level_offsets=self.level_offsets.tolist(),
        )
        if self.vector_tokens:
            meta.update(
                vector_tokens=self.vector_tokens,
                vector_dim=getattr(self.model, PROJECTION).in_features,
            )
        (directory / "siit_model.json").write_text(json.dumps(meta, indent=1))
        return directory

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device = "cpu") -> RecModel:
        from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

        directory = Path(directory)
        meta_path = directory / "siit_model.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{directory} is not a saved siit model (no siit_model.json)")
        meta = json.loads(meta_path.read_text())
        auto = AutoModelForSeq2SeqLM if meta["kind"] == "seq2seq" else AutoModelForCausalLM
        with quiet_transformers():
            model = auto.from_pretrained(directory).to(device)
        # Loaded tensors can sit at unaligned offsets of the file buffer, and CPU kernels
        # round differently there: fresh allocations make a resumed run replay bit for bit.
        with torch.no_grad():
            for tensor in [*model.parameters(), *model.buffers()]:
                tensor.data = tensor.data.clone()
        tokenizer = AutoTokenizer.from_pretrained(directory)
        rec = cls(
            model=model,
            tokenizer=tokenizer,
            kind=meta["kind"],
            style=meta["style"],
            codebook_sizes=tuple(meta["codebook_sizes"]),
            prefixes=tuple(meta["prefixes"]),
            level_offsets=np.asarray(meta["level_offsets"], dtype=np.int64),
        )
        if meta.get("vector_tokens"):
            rec.add_item_projection(int(meta["vector_dim"]), int(meta["vector_tokens"]))
            rec._load_projection(directory)
        return rec

    def _load_projection(self, directory: Path) -> None:
        from safetensors.torch import load_file

        path = directory / PROJECTION_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: the saved model has no projection weights")
        getattr(self.model, PROJECTION).load_state_dict(load_file(str(path)))

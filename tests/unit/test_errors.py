"""Every invalid input raises `siit.SiitError` (a ValueError) naming the argument and, where
there is one, the offending row; non-contiguous inputs are valid."""

import numpy as np
import pytest
import siit
from siit import IdentifierTrie, SiitError, assign_unique, disambiguate, group_duplicates
from strategies import layouts

I64 = np.int64
TRIE = IdentifierTrie(np.array([[0, 1], [1, 2], [1, 0]]), [2, 3])
SIZES = [3, 3]
CANDIDATES = np.array([[[0, 0], [1, 1]], [[0, 0], [2, 2]]])  # (n=2, k=2, L=2)
SCORES = np.array([[0.5, 0.1], [0.4, 0.2]])


def assign(candidates=CANDIDATES, scores=SCORES, sizes=SIZES, **kwargs):
    return assign_unique(candidates, scores, sizes, **kwargs)


def replaced(array: np.ndarray, index, value) -> np.ndarray:
    out = array.copy()
    out[index] = value
    return out


def case(name, call, *words):
    return pytest.param(call, words, id=name)


CASES = [
    # IdentifierTrie(codes, codebook_sizes)
    case("trie-codes-1d", lambda: IdentifierTrie(np.array([0, 1]), [2, 3]), "codes"),
    case("trie-codes-3d", lambda: IdentifierTrie(np.zeros((1, 1, 2), I64), [2, 3]), "codes"),
    case("trie-codes-none", lambda: IdentifierTrie(None, [2, 3]), "codes"),
    case("trie-codes-float", lambda: IdentifierTrie(np.zeros((1, 2)), [2, 3]), "codes"),
    case("trie-codes-bool", lambda: IdentifierTrie(np.zeros((1, 2), bool), [2, 3]), "codes"),
    case("trie-codes-str", lambda: IdentifierTrie([["0", "1"]], [2, 3]), "codes"),
    case(
        "trie-levels-mismatch",
        lambda: IdentifierTrie(np.zeros((1, 3), I64), [2, 3]),
        "codes",
        "codebook_sizes",
    ),
    case("trie-code-too-large", lambda: IdentifierTrie([[0, 1], [2, 0]], [2, 3]), "codes", "row 1"),
    case("trie-code-negative", lambda: IdentifierTrie([[0, 1], [1, -1]], [2, 3]), "codes", "row 1"),
    case(
        "trie-code-uint64-huge",
        lambda: IdentifierTrie(np.array([[2**63, 0]], np.uint64), [2, 3]),
        "codes",
    ),
    case("trie-n0", lambda: IdentifierTrie(np.zeros((0, 2), I64), [2, 3]), "codes"),
    case(
        "trie-duplicate",
        lambda: IdentifierTrie([[0, 1], [1, 1], [0, 1]], [2, 3]),
        "codes",
        "0 and 2",
    ),
    case(
        "trie-L0", lambda: IdentifierTrie(np.zeros((1, 0), I64), np.zeros(0, I64)), "codebook_sizes"
    ),
    case("trie-size-0", lambda: IdentifierTrie([[0, 0]], [2, 0]), "codebook_sizes"),
    case("trie-size-negative", lambda: IdentifierTrie([[0, 0]], [2, -3]), "codebook_sizes"),
    case("trie-over-64-bits", lambda: IdentifierTrie([[0, 0]], [2**40, 2**40]), "codebook_sizes"),
    case("trie-sizes-float", lambda: IdentifierTrie([[0, 0]], [2.0, 3.0]), "codebook_sizes"),
    case("trie-sizes-2d", lambda: IdentifierTrie([[0, 0]], [[2, 3]]), "codebook_sizes"),
    case(
        "trie-sizes-uint64-huge",
        lambda: IdentifierTrie([[0]], np.array([2**63 + 1], np.uint64)),
        "codebook_sizes",
    ),
    # IdentifierTrie.lookup(codes)
    case("lookup-wrong-columns", lambda: TRIE.lookup([[0, 1, 2]]), "codes"),
    case("lookup-too-few-columns", lambda: TRIE.lookup([[0]]), "codes"),
    case("lookup-1d", lambda: TRIE.lookup([0, 1]), "codes"),
    case("lookup-float", lambda: TRIE.lookup([[0.0, 1.0]]), "codes"),
    case("lookup-code-too-large", lambda: TRIE.lookup([[0, 1], [0, 3]]), "codes", "row 1"),
    case("lookup-code-negative", lambda: TRIE.lookup([[-1, 1]]), "codes", "row 0"),
    case("lookup-uint64-huge", lambda: TRIE.lookup(np.array([[2**64 - 1, 0]], np.uint64)), "codes"),
    # IdentifierTrie.allowed_mask(prefixes)
    case("mask-t-equals-L", lambda: TRIE.allowed_mask([[0, 1]]), "prefixes"),
    case("mask-t-above-L", lambda: TRIE.allowed_mask([[0, 1, 2]]), "prefixes"),
    case("mask-1d", lambda: TRIE.allowed_mask([0]), "prefixes"),
    case("mask-float", lambda: TRIE.allowed_mask([[0.0]]), "prefixes"),
    case("mask-code-too-large", lambda: TRIE.allowed_mask([[0], [2]]), "prefixes", "row 1"),
    case("mask-code-negative", lambda: TRIE.allowed_mask([[-1]]), "prefixes", "row 0"),
    case("mask-uint64-huge", lambda: TRIE.allowed_mask(np.array([[2**63]], np.uint64)), "prefixes"),
    # IdentifierTrie.tables(dense_limit)
    case("tables-negative-limit", lambda: TRIE.tables(dense_limit=-1), "dense_limit"),
    # assign_unique(candidates, scores, codebook_sizes, reserved, fallback)
    case("cand-2d", lambda: assign(candidates=CANDIDATES[:, 0]), "candidates"),
    case(
        "cand-levels-mismatch",
        lambda: assign(candidates=CANDIDATES[:, :, :1]),
        "candidates",
        "codebook_sizes",
    ),
    case("cand-float", lambda: assign(candidates=CANDIDATES.astype(float)), "candidates"),
    case("cand-bool", lambda: assign(candidates=CANDIDATES.astype(bool)), "candidates"),
    case(
        "cand-too-large",
        lambda: assign(candidates=replaced(CANDIDATES, (1, 0, 1), 3)),
        "candidates",
        "[1, 0]",
    ),
    case(
        "cand-negative",
        lambda: assign(candidates=replaced(CANDIDATES, (1, 1, 0), -1)),
        "candidates",
        "[1, 1]",
    ),
    case(
        "cand-uint64-huge",
        lambda: assign(candidates=replaced(CANDIDATES.astype(np.uint64), (0, 0, 0), 2**63)),
        "candidates",
    ),
    case("cand-n0", lambda: assign(np.zeros((0, 2, 2), I64), np.zeros((0, 2))), "candidates"),
    case("cand-k0", lambda: assign(np.zeros((2, 0, 2), I64), np.zeros((2, 0))), "candidates"),
    case("scores-1d", lambda: assign(scores=SCORES[:, 0]), "scores"),
    case("scores-shape-mismatch", lambda: assign(scores=np.zeros((2, 3))), "scores"),
    case("scores-bool", lambda: assign(scores=SCORES > 0.3), "scores"),
    case("scores-str", lambda: assign(scores=SCORES.astype(str)), "scores"),
    case("scores-complex", lambda: assign(scores=SCORES.astype(complex)), "scores"),
    case("scores-nan", lambda: assign(scores=replaced(SCORES, (1, 0), np.nan)), "scores", "[1, 0]"),
    case(
        "scores-posinf", lambda: assign(scores=replaced(SCORES, (0, 1), np.inf)), "scores", "[0, 1]"
    ),
    case("sizes-empty-int", lambda: assign(sizes=np.zeros(0, I64)), "codebook_sizes"),
    case("sizes-empty-list", lambda: assign(sizes=[]), "codebook_sizes"),
    case("sizes-0", lambda: assign(sizes=[3, 0]), "codebook_sizes"),
    case("sizes-over-64-bits", lambda: assign(sizes=[2**40, 2**40]), "codebook_sizes"),
    case("sizes-float", lambda: assign(sizes=[3.0, 3.0]), "codebook_sizes"),
    case("sizes-2d", lambda: assign(sizes=[[3, 3]]), "codebook_sizes"),
    case(
        "capacity-items",
        lambda: assign(np.zeros((3, 1, 1), I64), np.zeros((3, 1)), [2]),
        "codebook_sizes",
    ),
    case(
        "capacity-with-reserved",
        lambda: assign(np.zeros((2, 1, 1), I64), np.zeros((2, 1)), [3], reserved=[[1], [2]]),
        "reserved",
        "codebook_sizes",
    ),
    case(
        "reserved-duplicate",
        lambda: assign(reserved=[[0, 1], [2, 2], [0, 1]]),
        "reserved",
        "0 and 2",
    ),
    case("reserved-too-large", lambda: assign(reserved=[[0, 1], [0, 3]]), "reserved", "row 1"),
    case("reserved-negative", lambda: assign(reserved=[[-1, 1]]), "reserved", "row 0"),
    case("reserved-levels-mismatch", lambda: assign(reserved=[[0, 1, 2]]), "reserved"),
    case("reserved-1d", lambda: assign(reserved=[0, 1]), "reserved"),
    case("reserved-float", lambda: assign(reserved=[[0.0, 1.0]]), "reserved"),
    case("fallback-unknown", lambda: assign(fallback="closest"), "fallback"),
    case(
        "fallback-error-unassignable",
        lambda: assign(scores=np.full((2, 2), -np.inf), fallback="error"),
        "fallback",
        "[0, 1]",
    ),
    # group_duplicates / disambiguate
    *[
        case(f"{fn.__name__}-{name}", lambda fn=fn, codes=codes: fn(codes), *words)
        for fn in (group_duplicates, disambiguate)
        for name, codes, words in [
            ("1d", np.array([0, 1]), ["codes"]),
            ("3d", np.zeros((1, 1, 1), I64), ["codes"]),
            ("float", np.zeros((2, 2)), ["codes"]),
            ("bool", np.zeros((2, 2), bool), ["codes"]),
            ("negative", np.array([[0, 1], [2, -1]]), ["codes", "row 1"]),
            ("n0", np.zeros((0, 2), I64), ["codes"]),
            ("L0", np.zeros((2, 0), I64), ["codes"]),
            ("uint64-huge", np.array([[2**64 - 1]], np.uint64), ["codes"]),
            ("over-64-bits", np.array([[2**40, 2**40]]), ["codes"]),
        ]
    ],
]


@pytest.mark.parametrize(("call", "words"), CASES)
def test_bad_input_raises_siit_error_naming_it(call, words):
    with pytest.raises(SiitError) as info:
        call()
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


def test_siit_error_is_exported_and_a_value_error():
    assert siit.SiitError is SiitError
    assert issubclass(SiitError, ValueError)


# --- non-contiguous and narrow-dtype inputs are valid ---


def test_trie_accepts_any_layout():
    space = np.array([[a, b] for a in range(2) for b in range(3)])
    expected = TRIE.lookup(space)
    mask = TRIE.allowed_mask(space[:, :1])
    for name, variant in layouts(space).items():
        np.testing.assert_array_equal(TRIE.lookup(variant), expected, err_msg=name)
        np.testing.assert_array_equal(TRIE.allowed_mask(variant[:, :1]), mask, err_msg=name)
        np.testing.assert_array_equal(
            IdentifierTrie(variant[[1, 5, 2]], np.array([2, 3], np.uint8)).lookup(space[[1, 5, 2]]),
            [0, 1, 2],
            err_msg=name,
        )


def test_assign_accepts_any_layout():
    reserved = np.array([[1, 1], [2, 0]])
    expected = assign(reserved=reserved)
    strided_scores = np.zeros((2, 4))
    strided_scores[:, ::2] = SCORES
    for name, variant in layouts(CANDIDATES).items():
        for scores in (
            strided_scores[:, ::2],
            np.asfortranarray(SCORES),
            SCORES.astype(np.float32),
        ):
            for res in layouts(reserved).values():
                codes, rank = assign(variant, scores, np.array(SIZES, np.int8), reserved=res)
                np.testing.assert_array_equal(codes, expected[0], err_msg=name)
                np.testing.assert_array_equal(rank, expected[1], err_msg=name)


def test_integer_scores_are_accepted():
    codes, rank = assign(scores=np.array([[5, 1], [4, 2]], np.int16))
    np.testing.assert_array_equal(rank, assign()[1])

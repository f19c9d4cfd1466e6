"""Benchmark of the Rust core (`siit._core`) against straightforward pure-Python baselines.

Every workload runs the core and its baseline side by side, in this process, on the same
inputs, checks that they agree (untimed), and reports median wall times (time.perf_counter,
one warm-up call, then as many repetitions as fit a small time budget) and their ratio:

1. trie build: IdentifierTrie vs a nested-dict trie (dict of dict ... per level, as in the
   prefix_allowed_tokens_fn helpers of public generative-recommendation code);
2. allowed_mask for 256 users x 20 beams at every prefix length: core vs a per-beam Python
   walk of the nested dict filling a numpy bool row; plus a torch (CPU) gather path over
   IdentifierTrie.tables();
3. lookup of full identifiers: core vs a dict walk;
4. assign_unique with k = 20 candidates per item: core vs a pure-Python "sort + set" greedy;
5. group_duplicates / disambiguate: core vs numpy (np.unique(axis=0) based).

Usage: python benches/bench_core.py [--items 1000000] [--quick] [--out benches/results]
Writes <out>/core.json (results and machine description) and <out>/core.md (a table).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from harness import machine_line, provenance
from siit import IdentifierTrie, assign_unique, disambiguate, group_duplicates

SEED = 20240611
LEVELS = 4
CODEBOOK = 256
SIZES = np.full(LEVELS, CODEBOOK, dtype=np.int64)
USERS, BEAMS = 256, 20
CANDIDATES = 20
# assign_unique items: a "true" identifier with Zipf-distributed codes per level (exponents
# below, over the 256 codes), candidates varying it in the last one or two levels. The default
# makes about 2% of 1M items share their rank-0 identifier (real refinement rounds see less);
# the stress setting makes 13% share it and leaves regions with more items than identifiers.
ZIPF_EXPONENTS = (0.8, 0.8, 0.6, 0.6)
STRESS_EXPONENTS = (1.0, 1.0, 0.8, 0.8)


# ---------------------------------------------------------------------------------------------
# Timing and reporting


@dataclass
class Timing:
    median_s: float
    min_s: float
    reps: int


class Timer:
    """Median wall time of a call: one warm-up call, then as many timed calls as fit in
    `budget_s` (at least one, at most `max_reps`). A warm-up call slower than 10 budgets is
    not repeated: its own time is reported (reps = 1)."""

    def __init__(self, budget_s: float) -> None:
        self.budget_s = budget_s

    def __call__(self, fn: Callable[[], Any], max_reps: int = 7) -> tuple[Timing, Any]:
        start = time.perf_counter()
        result = fn()  # warm-up
        warm_up = time.perf_counter() - start
        if warm_up > 10 * self.budget_s:
            return Timing(warm_up, warm_up, 1), result
        times: list[float] = []
        while len(times) < max_reps:
            start = time.perf_counter()
            fresh = fn()
            times.append(time.perf_counter() - start)
            result = fresh  # the previous result is freed here, outside the timed region
            if sum(times) + times[0] > self.budget_s:
                break
        return Timing(statistics.median(times), min(times), len(times)), result


@dataclass
class Row:
    workload: str
    size: str
    core: Timing | None
    baseline: Timing | None = None
    baseline_name: str = ""
    ratio_min: float | None = None  # target: baseline / core >= ratio_min
    core_max_s: float | None = None  # target: core <= core_max_s
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        if self.core is None or self.baseline is None:
            return None
        return self.baseline.median_s / self.core.median_s

    @property
    def target(self) -> str:
        parts = []
        if self.ratio_min is not None:
            parts.append(f">= {self.ratio_min:g}x")
        if self.core_max_s is not None:
            parts.append(f"<= {fmt_time(self.core_max_s)}")
        return ", ".join(parts) or "-"

    @property
    def met(self) -> bool | None:
        checks = []
        if self.ratio_min is not None and self.ratio is not None:
            checks.append(self.ratio >= self.ratio_min)
        if self.core_max_s is not None and self.core is not None:
            checks.append(self.core.median_s <= self.core_max_s)
        return all(checks) if checks else None

    def cells(self) -> list[str]:
        ratio = self.ratio
        met = {None: "-", True: "yes", False: "NO"}[self.met]
        return [
            self.workload,
            self.size,
            fmt_timing(self.core),
            f"{fmt_timing(self.baseline)} {self.baseline_name}".strip(),
            "-" if ratio is None else f"{ratio:,.1f}x",
            self.target,
            met,
        ]

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(ratio=self.ratio, target=self.target, met=self.met)
        return out


HEADER = ["workload", "size", "core", "baseline", "ratio", "target", "met"]


def fmt_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def fmt_timing(timing: Timing | None) -> str:
    return "-" if timing is None else fmt_time(timing.median_s)


def fmt_count(n: int) -> str:
    for unit, scale in (("M", 1_000_000), ("k", 1_000)):
        if n >= scale and n % (scale // 10) == 0:
            return f"{n / scale:g}{unit}"
    return str(n)


def text_table(rows: list[Row]) -> str:
    grid = [HEADER] + [row.cells() for row in rows]
    widths = [max(len(line[c]) for line in grid) for c in range(len(HEADER))]
    right = {2, 3, 4}  # numeric columns

    def render(line: list[str]) -> str:
        cells = [
            cell.rjust(w) if c in right else cell.ljust(w)
            for c, (cell, w) in enumerate(zip(line, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([render(grid[0]), rule] + [render(line) for line in grid[1:]])


def markdown_table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def notes_lines(rows: list[Row]) -> list[str]:
    return [f"{row.workload} ({row.size}): {note}" for row in rows for note in row.notes]


# ---------------------------------------------------------------------------------------------
# Inputs and baselines


def distinct_identifiers(rng: np.random.Generator, n: int) -> np.ndarray:
    """n distinct random identifiers (n, L), in random order."""
    draw = rng.integers(0, CODEBOOK, size=(n + n // 50 + 16, LEVELS))
    unique = np.unique(draw, axis=0)
    return unique[rng.permutation(len(unique))[:n]]


def dict_trie(codes: np.ndarray) -> dict:
    """Nested-dict trie: root[c0][c1]...[c_{L-1}] = item index."""
    root: dict = {}
    for item, identifier in enumerate(codes.tolist()):
        node = root
        for code in identifier[:-1]:
            node = node.setdefault(code, {})
        node[identifier[-1]] = item
    return root


def dict_allowed_mask(root: dict, prefixes: np.ndarray, size: int) -> np.ndarray:
    """Per beam: walk the prefix down the dict, set the row of its children's codes."""
    mask = np.zeros((len(prefixes), size), dtype=bool)
    for row, prefix in enumerate(prefixes.tolist()):
        node = root
        for code in prefix:
            node = node.get(code)
            if node is None:
                break
        else:
            mask[row, list(node)] = True
    return mask


def dict_lookup(root: dict, codes: np.ndarray) -> np.ndarray:
    items = []
    for identifier in codes.tolist():
        node = root
        for code in identifier:
            node = node.get(code)
            if node is None:
                break
        items.append(-1 if node is None else node)
    return np.array(items, dtype=np.int64)


def prefix_nodes(identifiers: np.ndarray, prefixes: np.ndarray) -> np.ndarray:
    """Depth-t node ids of prefixes (b, t): their rank among the distinct t-prefixes of the
    trie's identifiers (nodes are numbered in lexicographic order)."""
    t = prefixes.shape[1]
    if t == 0:
        return np.zeros(len(prefixes), dtype=np.int64)
    nodes = np.unique(np.ravel_multi_index(identifiers[:, :t].T, SIZES[:t]))
    return np.searchsorted(nodes, np.ravel_multi_index(prefixes.T, SIZES[:t]))


def torch_allowed_mask(tables: dict[str, torch.Tensor], t: int, node: torch.Tensor) -> torch.Tensor:
    """(b, V_t) mask from depth-t node ids with tensor ops only (see IdentifierTrie.tables)."""
    dense = tables.get(f"dense_{t}")
    if dense is not None:
        return dense[node] >= 0
    offsets, codes = tables[f"offsets_{t}"], tables[f"codes_{t}"]
    positions = offsets[node].unsqueeze(1) + tables[f"arange_{t}"]
    valid = positions < offsets[node + 1].unsqueeze(1)
    child_codes = codes[positions.clamp_max(len(codes) - 1)]
    size = CODEBOOK
    columns = torch.where(valid, child_codes, size)  # invalid positions go to a spill column
    mask = torch.zeros((len(node), size + 1), dtype=torch.bool)
    mask.scatter_(1, columns, True)
    return mask[:, :size]


def torch_tables(trie: IdentifierTrie) -> dict[str, torch.Tensor]:
    tables = {key: torch.from_numpy(value) for key, value in trie.tables().items()}
    for t, width in enumerate(tables["max_children"].tolist()):
        tables[f"arange_{t}"] = torch.arange(width)
    return tables


def assignment_inputs(
    rng: np.random.Generator, n: int, exponents: tuple[float, ...] = ZIPF_EXPONENTS
) -> tuple[np.ndarray, np.ndarray]:
    """candidates (n, k, L) and scores (n, k): rank 0 is the item's "true" identifier (Zipf
    codes per level, so popular prefixes collide), ranks 1.. vary it in the last level
    (+-1..23 around its code) and, for 30% of them, also the level before (+1..7); scores are
    descending log-probabilities."""

    def zipf(exponent: float) -> np.ndarray:
        weights = 1.0 / np.arange(1, CODEBOOK + 1) ** exponent
        return rng.choice(CODEBOOK, size=n, p=weights / weights.sum())

    true = np.column_stack([zipf(s) for s in exponents])
    candidates = np.repeat(true[:, None, :], CANDIDATES, axis=1)
    shape = (n, CANDIDATES)
    offset = rng.integers(1, 24, size=shape) * rng.choice([-1, 1], size=shape)
    candidates[:, :, -1] = (candidates[:, :, -1] + offset) % CODEBOOK
    deep = rng.random(shape) < 0.3
    shifted = (candidates[:, :, -2] + rng.integers(1, 8, size=shape)) % CODEBOOK
    candidates[:, :, -2] = np.where(deep, shifted, candidates[:, :, -2])
    candidates[:, 0] = true
    scores = -np.cumsum(rng.exponential(0.5, size=shape), axis=1)
    return candidates, scores


def greedy_sort_set(candidates: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Pure-Python greedy: all (score, item, rank) triples best first, each item takes its
    candidate if the identifier is still free; leftover items get nothing (rank -1)."""
    identifiers = [[tuple(c) for c in item] for item in candidates.tolist()]
    triples = sorted(
        (-score, item, rank)
        for item, row in enumerate(scores.tolist())
        for rank, score in enumerate(row)
    )
    taken: set[tuple[int, ...]] = set()
    ranks = [-1] * len(identifiers)
    for _, item, rank in triples:
        if ranks[item] < 0:
            identifier = identifiers[item][rank]
            if identifier not in taken:
                taken.add(identifier)
                ranks[item] = rank
    return np.array(ranks, dtype=np.int64)


def numpy_group(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    return inverse.ravel(), counts


def numpy_disambiguate(codes: np.ndarray) -> np.ndarray:
    """np.unique groups, then each row's rank among the rows of its group (stable order)."""
    _, inverse = np.unique(codes, axis=0, return_inverse=True)
    order = np.argsort(inverse.ravel(), kind="stable")
    grouped = inverse.ravel()[order]
    index = np.arange(len(codes))
    starts = np.maximum.accumulate(np.where(np.r_[True, grouped[1:] != grouped[:-1]], index, 0))
    suffix = np.empty(len(codes), dtype=np.int64)
    suffix[order] = index - starts
    return np.column_stack([codes, suffix])


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two group labellings of the same rows define the same groups."""
    pairs = np.unique(a.astype(np.int64) * (b.max() + 1) + b)
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))


# ---------------------------------------------------------------------------------------------
# Workloads


@dataclass
class Context:
    rng: np.random.Generator
    timer: Timer
    items: int
    identifiers: np.ndarray | None = None
    trie: IdentifierTrie | None = None
    root: dict | None = None


def bench_trie_build(ctx: Context) -> list[Row]:
    codes = distinct_identifiers(ctx.rng, ctx.items)
    core, trie = ctx.timer(lambda: IdentifierTrie(codes, SIZES), max_reps=7)
    base, root = ctx.timer(lambda: dict_trie(codes), max_reps=3)
    ctx.identifiers, ctx.trie, ctx.root = codes, trie, root
    return [Row("trie build", f"{fmt_count(len(codes))} ids", core, base, "nested dict")]


def bench_allowed_mask(ctx: Context) -> list[Row]:
    assert ctx.identifiers is not None and ctx.trie is not None and ctx.root is not None
    beams = ctx.identifiers[ctx.rng.integers(0, len(ctx.identifiers), size=USERS * BEAMS)]
    tables = torch_tables(ctx.trie)
    rows = []
    for t in range(LEVELS):
        prefixes = np.ascontiguousarray(beams[:, :t])
        nodes = torch.from_numpy(prefix_nodes(ctx.identifiers, prefixes))
        core, mask = ctx.timer(lambda p=prefixes: ctx.trie.allowed_mask(p), max_reps=300)
        base, expected = ctx.timer(
            lambda p=prefixes: dict_allowed_mask(ctx.root, p, CODEBOOK), max_reps=7
        )
        gather, via_torch = ctx.timer(
            lambda n=nodes, t=t: torch_allowed_mask(tables, t, n), max_reps=300
        )
        assert np.array_equal(mask, expected), f"allowed_mask differs from the dict at t={t}"
        assert np.array_equal(via_torch.numpy(), expected), f"torch mask differs at t={t}"
        kind = "dense" if f"dense_{t}" in tables else "CSR"
        size = f"{len(prefixes)} x t={t}"
        allowed = mask.sum(axis=1).mean()
        rows.append(
            Row(
                "allowed_mask",
                size,
                core,
                base,
                "dict loop",
                ratio_min=100,
                core_max_s=200e-6,
                notes=[f"{allowed:.1f} allowed codes per prefix on average"],
            )
        )
        rows.append(Row(f"allowed_mask torch gather ({kind})", size, gather, base, "dict loop"))
    return rows


def bench_lookup(ctx: Context) -> list[Row]:
    assert ctx.identifiers is not None and ctx.trie is not None and ctx.root is not None
    picks = ctx.rng.integers(0, len(ctx.identifiers), size=USERS * BEAMS)
    queries = ctx.identifiers[picks]
    core, items = ctx.timer(lambda: ctx.trie.lookup(queries), max_reps=300)
    base, expected = ctx.timer(lambda: dict_lookup(ctx.root, queries), max_reps=20)
    assert np.array_equal(items, expected) and np.array_equal(items, picks), "lookup differs"
    return [Row("lookup", f"{len(queries)} ids", core, base, "dict walk")]


def check_assignment(candidates: np.ndarray, codes: np.ndarray, rank: np.ndarray) -> None:
    _, counts = group_duplicates(codes)
    assert counts.max() == 1, "assign_unique returned duplicate identifiers"
    matched = np.flatnonzero(rank >= 0)
    assert np.array_equal(codes[matched], candidates[matched, rank[matched]]), "wrong candidate"


def bench_assign_unique(ctx: Context) -> list[Row]:
    rows = []
    cases = (
        (ctx.items // 10, True, ZIPF_EXPONENTS),
        (ctx.items, False, ZIPF_EXPONENTS),
        (ctx.items, False, STRESS_EXPONENTS),
    )
    for n, with_baseline, exponents in cases:
        stress = exponents == STRESS_EXPONENTS
        candidates, scores = assignment_inputs(ctx.rng, n, exponents)
        core, (codes, rank) = ctx.timer(
            lambda c=candidates, s=scores: assign_unique(c, s, SIZES), max_reps=5
        )
        check_assignment(candidates, codes, rank)
        _, counts = group_duplicates(candidates[:, 0])
        colliding = int((counts[counts > 1]).sum())
        notes = [
            f"{colliding / n:.1%} of items share their rank-0 identifier with another item",
            f"core: matched {int((rank >= 0).sum()):,}, rank 0 {int((rank == 0).sum()):,}, "
            f"fallback {int((rank < 0).sum()):,} of {n:,}",
        ]
        name = "assign_unique (stress)" if stress else "assign_unique"
        row = Row(name, f"{fmt_count(n)} x {CANDIDATES}", core, notes=notes)
        if with_baseline:
            row.baseline, greedy = ctx.timer(
                lambda c=candidates, s=scores: greedy_sort_set(c, s), max_reps=2
            )
            row.baseline_name, row.ratio_min = "sort + set", 50
            assigned = int((greedy >= 0).sum())
            assert (rank >= 0).sum() >= assigned, "core matched fewer items than the greedy"
            notes.append(
                f"baseline: assigned {assigned:,}, left {n - assigned:,} items with nothing "
                "(greedy only: no augmenting paths, no fallback)"
            )
        elif not stress:
            row.core_max_s = 1.0
        rows.append(row)
    return rows


def bench_duplicates(ctx: Context) -> list[Row]:
    pool = ctx.rng.integers(0, CODEBOOK, size=(2 * ctx.items, LEVELS))
    codes = pool[ctx.rng.integers(0, len(pool), size=10 * ctx.items)]
    small = codes[: ctx.items]
    big_size, small_size = f"{fmt_count(len(codes))} rows", f"{fmt_count(len(small))} rows"

    core_big, (_, counts) = ctx.timer(lambda: group_duplicates(codes), max_reps=5)
    core_small, (group, _) = ctx.timer(lambda: group_duplicates(small), max_reps=7)
    base_small, (inverse, _) = ctx.timer(lambda: numpy_group(small), max_reps=3)
    assert same_partition(group, inverse), "group_duplicates differs from np.unique"
    groups_note = [f"{len(counts):,} distinct identifiers, largest group {counts.max()}"]

    dis_big, _ = ctx.timer(lambda: disambiguate(codes), max_reps=5)
    dis_small, suffixed = ctx.timer(lambda: disambiguate(small), max_reps=7)
    dis_base, expected = ctx.timer(lambda: numpy_disambiguate(small), max_reps=3)
    assert np.array_equal(suffixed, expected), "disambiguate differs from numpy"
    return [
        Row("group_duplicates", big_size, core_big, core_max_s=0.4, notes=groups_note),
        Row("group_duplicates", small_size, core_small, base_small, "np.unique"),
        Row("disambiguate", big_size, dis_big),
        Row("disambiguate", small_size, dis_small, dis_base, "np.unique+argsort"),
    ]


WORKLOADS = [
    bench_trie_build,
    bench_allowed_mask,
    bench_lookup,
    bench_assign_unique,
    bench_duplicates,
]


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--items", type=int, help="catalogue size (default 1M; 20k with --quick)")
    parser.add_argument("--quick", action="store_true", help="small sizes, a few seconds (smoke)")
    parser.add_argument("--out", type=Path, default=Path("benches/results"))
    args = parser.parse_args(argv)
    items = args.items or (20_000 if args.quick else 1_000_000)

    info = provenance()
    print(machine_line(info))
    if info["load_average_1min"] > 0.5:
        print("warning: the machine is busy (load average above 0.5); timings will be noisy")
    print(f"items = {items:,}{' (quick)' if args.quick else ''}; L = {LEVELS}, V = {CODEBOOK}")
    ctx = Context(np.random.default_rng(SEED), Timer(0.3 if args.quick else 3.0), items)
    rows: list[Row] = []
    started = time.perf_counter()
    for workload in WORKLOADS:
        t0 = time.perf_counter()
        rows += workload(ctx)
        print(f"  {workload.__name__}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    total = time.perf_counter() - started

    print()
    print(text_table(rows))
    print()
    print("Notes:")
    for line in notes_lines(rows):
        print(f"  - {line}")
    print(f"Total {total:.1f} s. Times are medians; ratio = baseline / core.")

    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "machine": info,
        "config": {
            "items": items,
            "quick": args.quick,
            "levels": LEVELS,
            "codebook": CODEBOOK,
            "seed": SEED,
            "zipf_exponents": ZIPF_EXPONENTS,
            "stress_exponents": STRESS_EXPONENTS,
            "total_s": total,
        },
        "results": [row.as_json() for row in rows],
    }
    (args.out / "core.json").write_text(json.dumps(report, indent=2) + "\n")
    markdown = [
        "# siit core benchmark",
        "",
        f"Machine: {machine_line(info)}",
        "",
        f"items = {items:,}; median wall times; ratio = baseline / core.",
        "",
        markdown_table(rows),
        "",
        "Notes:",
        "",
        *[f"- {line}" for line in notes_lines(rows)],
        "",
    ]
    (args.out / "core.md").write_text("\n".join(markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Initial tokenizers on the real datasets: fit time, codes used per level, collisions
before the uniqueness step and items it moved, for RQ-VAE, LETTER and CID, plus LETTER's
published Beauty identifiers loaded from file.

Usage: python benches/bench_tokenizers.py [--data ../shared/data] [--epochs 200] [--quick]
Writes benches/results/tokenizers.json and tokenizers.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import siit
from harness import machine_line, provenance
from siit.embed import embed, item_texts
from siit.tokenizers import FileTokenizer, Tokenizer
from siit.tokenizers.cid import CIDTokenizer
from siit.tokenizers.letter import LETTERTokenizer
from siit.tokenizers.rqvae import RQVAETokenizer

DATASETS = ("scientific", "office", "beauty")


def row(dataset: str, method: str, tokenizer: Tokenizer, data: siit.Dataset) -> dict:
    identifiers = tokenizer.fit(data)
    report = tokenizer.report_
    assert report is not None and identifiers.is_unique()
    before = report.before
    return {
        "dataset": dataset,
        "method": method,
        "items": data.n_items,
        "fit_s": round(report.seconds, 2),
        "codebook_sizes": list(before.codebook_sizes),
        "codes_used": list(before.codes_used),
        "shared_identifiers": before.shared_identifiers,
        "colliding_items": before.colliding_items,
        "largest_collision": before.largest_collision,
        "moved": report.unique.moved,
        "fallback": report.unique.fallback,
    }


def markdown(rows: list[dict], machine: str) -> str:
    lines = [
        "# Initial tokenizers on the real datasets",
        "",
        f"Machine: {machine}. Fit time excludes the text embeddings (cached, timed separately).",
        "",
        "| dataset | method | items | fit | codes used per level | identifiers shared "
        "(items) before the uniqueness step | items moved (to nearest free) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        used = " / ".join(
            f"{u}/{s}" for u, s in zip(r["codes_used"], r["codebook_sizes"], strict=True)
        )
        lines.append(
            f"| {r['dataset']} | {r['method']} | {r['items']:,} | {r['fit_s']:.1f} s | {used} | "
            f"{r['shared_identifiers']:,} ({r['colliding_items']:,}) | "
            f"{r['moved']:,} ({r['fallback']:,}) |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    here = Path(__file__).resolve().parent
    parser.add_argument("--data", type=Path, default=here.parent.parent / "shared" / "data")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="office only, 20 epochs")
    parser.add_argument("--out", type=Path, default=here / "results")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    epochs = 20 if args.quick else args.epochs
    rows, embed_s = [], {}
    for name in ("office",) if args.quick else DATASETS:
        data = siit.Dataset.from_json(args.data / name)
        start = time.perf_counter()
        vectors = embed(item_texts(data))
        embed_s[name] = round(time.perf_counter() - start, 1)
        shape = {"levels": 3, "codebook_size": 256, "epochs": epochs, "progress": False}
        rows.append(row(name, "RQ-VAE", RQVAETokenizer(vectors, **shape), data))
        rows.append(row(name, "LETTER", LETTERTokenizer(vectors, **shape), data))
        rows.append(row(name, "CID", CIDTokenizer(), data))
        if name == "beauty":
            index = args.data / "beauty" / "Beauty.index.json"
            rows.append(
                row(name, "LETTER (published file)", FileTokenizer(index, (256,) * 4), data)
            )
        print(markdown(rows, ""), flush=True)
    info = provenance()
    machine = machine_line(info)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"provenance": info, "epochs": epochs, "embed_seconds": embed_s, "results": rows}
    (args.out / "tokenizers.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "tokenizers.md").write_text(markdown(rows, machine))
    print(markdown(rows, machine))


if __name__ == "__main__":
    main()

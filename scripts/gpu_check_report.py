"""The table of scripts/gpu-check.sh: its figures, written into docs/performance.md.

    python scripts/gpu_check_report.py --bench BENCH.json --scratch RUN_DIR [--population P.json]
        --doc docs/performance.md --command "scripts/gpu-check.sh"

Reads what the check's steps wrote (``experiments.bench --json``, the scratch run's
``summary.json``, the population bench's JSON where there was one), prints a Markdown table with
the goals of issue 11 (the book's scratch RNN at 1.2M tokens/s or more, every configuration's
jax-bptt at or above PyTorch's cuDNN), and puts it into ``--doc`` between the lines
``<!-- gpu-check: begin -->`` and ``<!-- gpu-check: end -->`` (appended when they are missing).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

BEGIN, END = "<!-- gpu-check: begin -->", "<!-- gpu-check: end -->"
SCRATCH_GOAL = 1.2e6  # tokens/s, the book's scratch RNN (d2l 8.5) on an H100/H200


def bench_lines(bench: dict) -> tuple[list[str], list[str]]:
    """The bench's rows as Markdown, and one line per goal (met or not)."""
    lines = [
        "| config | impl | step ms | tokens/s | vs torch (cuDNN) | compile s | warm s |",
        "|---|---|---|---|---|---|---|",
    ]
    goals = []
    for r in bench["results"]:
        vs = "" if r["vs_torch"] is None else f"{r['vs_torch']:.2f}x"
        cold = "" if r["compile_s"] is None else f"{r['compile_s']:.2f}"
        warm = "" if r.get("warm_s") is None else f"{r['warm_s']:.2f}"
        lines.append(
            f"| {r['config']} | {r['impl']} | {r['step_ms']:.2f} | "
            f"{r['tokens_per_sec']:,.0f} | {vs} | {cold} | {warm} |"
        )
        if r["impl"] == "jax-bptt" and r["vs_torch"] is not None:
            met = "met" if r["vs_torch"] >= 1.0 else "NOT met"
            goals.append(
                f"- {r['config']}: jax-bptt {r['vs_torch']:.2f}x cuDNN (goal >= 1.0x): {met}"
            )
    return lines, goals


def scratch_lines(run: Path) -> tuple[list[str], list[str]]:
    summary = json.loads((run / "summary.json").read_text())
    speed = summary["tokens_per_sec_median"]
    lines = [
        f"Scratch run ({summary['epochs']} epochs, {summary['impl']} on {summary['device']}): "
        f"`{summary['book_line']}`; median over epochs {speed:,.0f} tokens/s; "
        f"late-median perplexity {summary['train_perplexity_late_median']:.3f}; "
        f"{summary['seconds_total']:.1f} s in all."
    ]
    met = "met" if speed >= SCRATCH_GOAL else "NOT met"
    return lines, [f"- scratch RNN {speed:,.0f} tokens/s (goal >= 1.2M): {met}"]


def report(bench: dict, scratch: Path, population: dict | None, command: str) -> str:
    env = bench["environment"]
    rows, goals = bench_lines(bench)
    scratch_text, scratch_goal = scratch_lines(scratch)
    parts = [
        f"Measured by `{command}` on {env['date'][:10]}: "
        f"{env.get('torch_device') or env['jax_device']}, "
        f"host {env['machine']}, load average {env['load_average'][0]:.2f}; jax {env['jax']}, "
        f"torch {env['torch']}; threads {env['threads']}.",
        "",
        *rows,
        "",
        *scratch_text,
        "",
    ]
    if population is not None:
        parts += [
            "Population bench:",
            "",
            "```",
            json.dumps(population, indent=1)[:4000],
            "```",
            "",
        ]
    parts += ["Goals:", *goals, *scratch_goal]
    return "\n".join(parts)


def write_into(doc: Path, text: str) -> None:
    old = doc.read_text(encoding="utf-8") if doc.exists() else ""
    block = f"{BEGIN}\n{text}\n{END}"
    if BEGIN in old and END in old:
        new = old[: old.index(BEGIN)] + block + old[old.index(END) + len(END) :]
    else:
        new = old.rstrip("\n") + ("\n\n" if old else "") + block + "\n"
    doc.write_text(new, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--bench", required=True)
    parser.add_argument("--scratch", required=True, help="the scratch run's directory")
    parser.add_argument("--population", default=None)
    parser.add_argument("--doc", required=True)
    parser.add_argument("--command", default="scripts/gpu-check.sh")
    args = parser.parse_args(argv)
    bench = json.loads(Path(args.bench).read_text())
    population = json.loads(Path(args.population).read_text()) if args.population else None
    text = report(bench, Path(args.scratch), population, args.command)
    write_into(Path(args.doc), text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

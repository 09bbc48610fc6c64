"""The terminal's generation table: per decoder variant, time to first token per prompt length, decode
ms/token with its CI and tokens/s per context, memory per 1k tokens of context, token-level parity.

"peak mem/1k ctx" is the measured growth of the decode phase's peak RSS with context length; it includes
what the runtime's allocator keeps from the prefill (ONNX Runtime's CPU arena does not shrink), so it is
usually well above the KV cache's own bytes per 1k tokens, shown beside it in parentheses."""

from __future__ import annotations

from io import StringIO
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from harness.results.schema import Result
from reports.plain import printable


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if value >= 100 else f"{value:.2f}" if value >= 1 else f"{value:.3f}"


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value / 1e6:+.1f} MB"


def _divergence(metrics: dict[str, Any], key: str) -> str:
    value, budget = metrics.get(key), metrics.get("token_budget")
    if value is None:
        return "-"
    return "none" if budget is not None and value >= budget else f"{value:.0f}"


# Without `wide`: time to first token, speed and the decoder's own parity figures.
DEFAULT_COLUMNS = ("variant", "TTFT", "tok/s", "next-tok agree", "1st diverg.", "ppl ratio", "parity")


def generation_table(
    model: str, results: list[Result], enforced: bool = True, wide: bool = False, width: int | None = None
) -> Table | None:
    """None when no result of the model has generation figures; skipped cases have no row (the model's
    skip lines name them; prompt lengths the decoder's context cannot hold are named under the table).
    Within `width` (a terminal narrower than the table) each header breaks onto
    two lines before any cell is cut: a header is wider than its figures."""
    table = _generation_table(model, results, enforced, wide, stacked=False)
    if table is None or width is None or wide or fits(table, width):
        return table
    return _generation_table(model, results, enforced, wide, stacked=True)


def fits(table: Table, width: int) -> bool:
    """Whether, drawn `width` wide, the table cuts no cell short (rich marks a cut with an ellipsis; only
    parity may wrap)."""
    probe = Console(width=width, file=StringIO(), color_system=None)
    probe.print(table)
    return "…" not in probe.file.getvalue()  # type: ignore[attr-defined]


def _stack(name: str) -> str:
    """A header on two lines, broken at the space nearest its middle."""
    spaces = [i for i, c in enumerate(name) if c == " "]
    if not spaces:
        return name
    cut = min(spaces, key=lambda i: abs(i - len(name) / 2))
    return name[:cut] + "\n" + name[cut + 1 :]


def _generation_table(model: str, results: list[Result], enforced: bool, wide: bool, stacked: bool) -> Table | None:
    measured = [r.generation for r in results if r.generation]
    if not measured:
        return None
    lengths = [str(n) for n in measured[0].prompt_lengths]
    budget = measured[0].new_tokens
    table = Table(
        title=Text(
            f"{printable(model)}: generation (greedy, {budget} new tokens;"
            " decode ms/token at prompt length + generated)"
        ),
        title_justify="left",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        padding=(0, 1, 0, 0),
        pad_edge=False,
    )
    skipped = measured[0].skipped_prompt_lengths
    if skipped:
        table.caption = Text(f"prompt lengths not run: {'; '.join(skipped.values())}")
        table.caption_justify = "left"
    columns = [
        ("variant", "left"),
        (f"TTFT ms {'/'.join(lengths)}", "right"),
        *[(f"decode ms/tok @{n} [95% CI]", "right") for n in lengths],
        (f"tok/s {'/'.join(lengths)}", "right"),
        ("peak mem/1k ctx (KV)", "right"),
        ("CPU ms/tok", "right"),
        ("next-tok agree", "right"),
        ("1st diverg. med/worst", "right"),
        ("ppl ratio", "right"),
        ("parity", "left"),
    ]
    kept = [i for i, (name, _) in enumerate(columns) if wide or name.startswith(DEFAULT_COLUMNS)]
    for index in kept:
        name, justify = columns[index]
        header = _stack(name) if stacked else name
        table.add_column(header, justify=justify, no_wrap=name != "parity")  # type: ignore[arg-type]
    for result in results:
        gen = result.generation
        if result.status == "skipped":
            continue
        if not gen:
            cells: list[Any] = [result.variant, *["-"] * (len(columns) - 2), Text(result.status, style="yellow")]
            table.add_row(*[cells[i] for i in kept])
            continue
        decode = [gen.decode_ms_per_token[n] for n in lengths]
        metrics = result.parity.metrics if result.parity else {}
        parity = "-"  # the failures themselves are in the model's main table
        if result.parity is not None:
            parity = "pass" if result.parity.passed else ("FAIL" if enforced else "fail (report only)")
        agreement = metrics.get("next_token_agreement")
        ratio = metrics.get("perplexity_ratio")
        kv = gen.kv_cache_bytes_per_1k_tokens
        state = gen.kv_state_bytes
        growth = _mb(gen.memory_growth_bytes_per_1k_tokens)
        if kv:
            kv_text = f"{growth} ({kv / 1e6:.1f} MB)"
        elif state:  # a Core ML state: allocated whole at load, so it does not grow
            kv_text = f"{growth} (state {state / 1e6:.1f} MB)"
        else:
            kv_text = "-"
        cells = [
            result.variant,
            "/".join(_ms(gen.ttft_ms[n].median) for n in lengths),
            *[f"{_ms(d.median)} [{_ms(d.ci95[0])}, {_ms(d.ci95[1])}]" for d in decode],
            "/".join(f"{gen.tokens_per_s[n]:.0f}" if gen.tokens_per_s[n] else "-" for n in lengths),
            kv_text,
            _ms(gen.cpu_ms_per_token),
            f"{agreement:.1%}" if agreement is not None else "-",
            f"{_divergence(metrics, 'first_divergence_median')}/{_divergence(metrics, 'first_divergence_worst')}",
            f"{ratio:.4f}" if ratio is not None else "-",
            Text(parity, style="green" if parity == "pass" else "red"),
        ]
        table.add_row(*[cells[i] for i in kept])
    return table

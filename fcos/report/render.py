"""The comparison and verdict tables as Markdown and LaTeX (booktabs), paper style: per model,
grouped by budget, then by method family (reference, channel, layer, FCOS and its ablations).
Every row shows the target MAC reduction and the reduction it achieved side by side."""

from __future__ import annotations

import math

import pandas as pd

from .latency import latency_markdown_columns
from .runs import OFF_TARGET

FAMILY_LABELS = {"reference": "reference", "channel": "channel", "layer": "layer", "fcos": "FCOS", "other": "other"}


def _pct(value: float, digits: int = 2) -> str:
    return "" if value is None or pd.isna(value) else f"{100 * value:.{digits}f}"


def _accuracy_cell(row, plus_minus: str = " ± ") -> str:
    text = _pct(row.accuracy)
    if row.seeds > 1 and not pd.isna(row.accuracy_std):
        text += f"{plus_minus}{_pct(row.accuracy_std)}"
    return text


def _interval_cell(row) -> str:
    if row.seeds < 2 or pd.isna(row.accuracy_ci95):
        return ""
    return f"[{_pct(row.accuracy - row.accuracy_ci95)}, {_pct(row.accuracy + row.accuracy_ci95)}]"


def _target_cell(row) -> str:
    return "" if pd.isna(row.budget) else f"{100 * row.budget:.0f}%"


def _achieved_cell(row, dagger: str = "†", dash: str = "–") -> str:
    text = _pct(row.macs_reduction, 1)
    if row.macs_reduction_max - row.macs_reduction_min > 0.0005:
        text += f" ({_pct(row.macs_reduction_min, 1)}{dash}{_pct(row.macs_reduction_max, 1)})"
    return text + (dagger if row.off_target else "")


def _epochs_cell(row) -> str:
    if pd.isna(row.recovery_epochs):
        return ""
    if row.recovery_epochs_max != row.recovery_epochs:
        return f"{row.recovery_epochs:.1f} (max {row.recovery_epochs_max:.0f})"
    return f"{row.recovery_epochs:.0f}"


def markdown_table(table: pd.DataFrame) -> str:
    """Comparison table as GitHub Markdown, one section per (dataset, model)."""
    header = ["Target", "Achieved MACs red. (%)", "Family", "Method", "Seeds", "Acc. (%) mean ± std",
              "95% CI", "Acc. ≥10 dB (%)", "Δ base (pp)", "Δ base-ft (pp)", "MACs", "Params (red. %)",
              "Recovery epochs"]
    out = []
    for (dataset, model), rows in table.groupby(["dataset", "model"], sort=False):
        out.append(f"\n## {model} on {dataset}\n")
        speed_header, speed_cells = latency_markdown_columns(rows)
        out.append("| " + " | ".join(header + speed_header) + " |")
        out.append("|" + "---|" * (len(header) + len(speed_header)))
        for row, speed in zip(rows.itertuples(index=False), speed_cells):
            cells = [_target_cell(row), _achieved_cell(row), FAMILY_LABELS.get(row.family, row.family),
                     row.method, str(row.seeds), _accuracy_cell(row), _interval_cell(row),
                     _pct(row.accuracy_high_snr), _pct(row.drop_vs_base), _pct(row.drop_vs_base_ft),
                     f"{row.macs:,}", f"{row.params:,} ({_pct(row.params_reduction, 1)})", _epochs_cell(row)]
            cells += speed
            out.append("| " + " | ".join(cells) + " |")
    notes = ("\nΔ: accuracy of the reference minus the row's, mean over seeds of the paired (same base "
             "model) difference; positive = the row is worse. 95% CI: Student-t interval of the mean "
             "over seeds (the test split's own standard error is the CSV's accuracy_test_se). "
             f"†: some seed's achieved MAC reduction is more than {100 * OFF_TARGET:.0f} points "
             "from the target. Achieved reductions are measured on the final model against the base model "
             "(range over seeds when they differ).\n")
    return "\n".join(out).lstrip("\n") + "\n" + notes


def verdicts_markdown(verdicts: pd.DataFrame) -> str:
    """One line per (model, budget, method): the paired difference, its interval and the verdict."""
    if verdicts.empty:
        return "No paired comparison: the reference method was not run.\n"
    out = []
    for (dataset, model), rows in verdicts.groupby(["dataset", "model"], sort=False):
        reference = rows["reference"].iloc[0]
        out.append(f"\n## {reference} vs each method, {model} on {dataset}\n")
        out.append("| Target | Method | Seeds | Achieved MACs red. (%): "
                   f"{reference} / method | {reference} − method (pp) | 95% CI (pp) | Verdict |")
        out.append("|---|---|---|---|---|---|---|")
        for row in rows.itertuples(index=False):
            interval = "" if math.isnan(row.ci_low) else f"[{row.ci_low * 100:+.2f}, {row.ci_high * 100:+.2f}]"
            out.append(f"| {100 * row.budget:.0f}% | {row.method} | {row.seeds} | "
                       f"{_pct(row.reference_macs_reduction, 1)} / {_pct(row.method_macs_reduction, 1)} | "
                       f"{100 * row.difference:+.2f} | {interval} | {row.verdict} |")
    return "\n".join(out).lstrip("\n") + ("\n\nBetter / worse: the 95% t interval over seeds of the paired "
                                         "difference excludes 0; otherwise not distinguishable.\n")


def _latex_escape(text: str) -> str:
    return (str(text).replace("\\", r"\textbackslash{}").replace("&", r"\&").replace("%", r"\%")
            .replace("_", r"\_").replace("#", r"\#"))


def latex_table(table: pd.DataFrame, caption: str | None = None) -> str:
    """Comparison table as a LaTeX booktabs ``table`` (one block per model; needs ``booktabs``)."""
    lines = [r"\begin{table}[t]", r"\centering", r"\small",
             r"\begin{tabular}{llllrrrrl}", r"\toprule",
             r"Target & Achieved & Family & Method & Acc. (\%) & $\geq$10\,dB (\%) & $\Delta$base & "
             r"$\Delta$base-ft & MACs / Params \\",
             r"\midrule"]
    first_model = True
    for (dataset, model), rows in table.groupby(["dataset", "model"], sort=False):
        if not first_model:
            lines.append(r"\midrule")
        first_model = False
        lines.append(rf"\multicolumn{{9}}{{l}}{{\textbf{{{_latex_escape(model)}}} on {_latex_escape(dataset)}}} \\")
        previous_budget = None
        for row in rows.itertuples(index=False):
            budget = _target_cell(row)
            if previous_budget is not None and budget != previous_budget:
                lines.append(r"\addlinespace")
            previous_budget = budget
            accuracy = _pct(row.accuracy) + (rf"$\pm${_pct(row.accuracy_std)}"
                                             if row.seeds > 1 and not pd.isna(row.accuracy_std) else "")
            cost = f"{row.macs / 1e6:.2f}M / {row.params / 1e3:.1f}k"
            cells = [_latex_escape(budget), _achieved_cell(row, dagger=r"$^\dagger$", dash="--"),
                     FAMILY_LABELS.get(row.family, row.family), _latex_escape(row.method), accuracy,
                     _pct(row.accuracy_high_snr), _pct(row.drop_vs_base), _pct(row.drop_vs_base_ft), cost]
            lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    caption = caption or ("Accuracy (mean $\\pm$ std over seeds) and cost. Target and achieved: MAC "
                          "reduction against the base model. $\\Delta$: paired accuracy drop in points. "
                          f"$^\\dagger$: more than {100 * OFF_TARGET:.0f} points from the target.")
    lines += [rf"\caption{{{caption}}}", r"\end{table}"]
    return "\n".join(lines) + "\n"

"""Markdown tables of a spec, for README (a test keeps README's copy identical to this output)."""

from __future__ import annotations

from vitalflow.spec.model import Infusion, NoConversion, PerIdealBodyWeight, Scale, Spec, VolPercentToKpa


def describe_conversion(conversion) -> str:
    """A conversion as README shows it.

    >>> describe_conversion(Scale(kind="scale", divisor=7.50062))
    '/ 7.50062'
    """
    if isinstance(conversion, NoConversion):
        return ""
    if isinstance(conversion, Scale):
        return f"x {conversion.factor:g}" if conversion.factor is not None else f"/ {conversion.divisor:g}"
    if isinstance(conversion, Infusion):
        per = " / 60" if conversion.per == "minute" else ""
        return f"mL/h x {conversion.concentration:g}{per} / weight"
    if isinstance(conversion, PerIdealBodyWeight):
        return "/ ideal body weight" if conversion.factor == 1 else f"x {conversion.factor:g} / ideal body weight"
    if isinstance(conversion, VolPercentToKpa):
        return f"vol % x ambient kPa / 100 ({conversion.ambient_track}, else {conversion.ambient_default_kpa:g})"
    raise TypeError(conversion)


def markdown_tables(spec: Spec) -> str:
    rows = [
        f"Spec `{spec.name}` version {spec.version}, hash `{spec.content_hash()}`.",
        "",
        "| # | feature | unit | sources (priority) and conversion | norm range | plausible | before first | carried up to | then |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for i, f in enumerate(spec.timeseries, start=1):
        sources = [s.track + (f" ({describe_conversion(s.convert)})" if describe_conversion(s.convert) else "")
                   for s in f.sources]
        if f.derive is not None:
            sources.append(f"else ({f.derive.systolic} + 2 x {f.derive.diastolic}) / 3")
        imp = f.impute
        target = " (target)" if f.name in spec.targets else ""
        rows.append(
            f"| {i} | {f.name}{target} | {f.unit} | {'; '.join(sources)} | {f.range[0]:g}..{f.range[1]:g} "
            f"| {f.plausible[0]:g}..{f.plausible[1]:g} | {imp.before_first_value:g} | {imp.carry_s} s "
            f"| {imp.after_last_value:g} |"
        )
    rows += ["", "| # | static feature | unit | normalization | default |", "|---|---|---|---|---|"]
    for i, f in enumerate(spec.static, start=1):
        if f.categories is not None:
            norm = ", ".join(f"{k} = {v:g}" for k, v in f.categories.items())
        else:
            lo, hi = f.range
            norm = f"(x - {lo:g}) / {hi - lo:g} x 2 - 1"
        default = f.default if isinstance(f.default, str) else f"{f.default:g}"
        rows.append(f"| {i} | {f.name} | {f.unit} | {norm} | {default} |")
    rows += ["", "Targets (the 30 s value task), in order: " + ", ".join(spec.targets) + "."]
    if spec.decisions is not None:
        rows += ["", *decision_table(spec)]
    return "\n".join(rows)


def decision_table(spec: Spec) -> list[str]:
    """The decision targets: set-points with their group, sources, unit, tolerance and gap; horizons."""
    d = spec.decisions
    assert d is not None
    rows = ["| # | set-point | group | unit | sources (priority) and conversion | value range | change above "
            "| known for | used |", "|---|---|---|---|---|---|---|---|---|"]
    for i, sp in enumerate(d.setpoints, start=1):
        sources = [s.track + (f" ({describe_conversion(s.convert)})" if describe_conversion(s.convert) else "")
                   for s in sp.sources]
        used = f"when {sp.only_without} has no source" if sp.only_without else "always"
        rows.append(f"| {i} | {sp.name} | {d.group_of(sp.name)} | {sp.unit} | {'; '.join(sources)} "
                    f"| {sp.range[0]:g}..{sp.range[1]:g} | {sp.tolerance:g} | {sp.max_gap_s} s | {used} |")
    ctx = d.context
    history = (f"{ctx.history_s} s of every feature at one mean per {ctx.history_step_s} s" if ctx.history_steps
               else "none")
    return rows + ["", f"Horizons: {', '.join(f'{h} s' for h in d.horizons_s)}; tasks: {', '.join(d.tasks)}; "
                       f"{len(d.labels)} labels per window ({len(d.events)} events). Context: history {history}; "
                       f"time since changes and since anestart: {'yes' if ctx.time_since else 'no'}."]

"""The morning report: what a night tried, what worked, what did not and what to do next.

`write_report(lab, cfg)` reads `.nightlab/state.db` and writes, into
`.nightlab/reports/<night_id>/`:

- `final_condensed_story.md`: the night in at most 40 lines;
- `final_paper_report.md`: Summary, Approach, Results (with plots), Challenges,
  Recommendations;
- `final_leaderboard_top{K}.json` / `.md`: the best candidates (same code and parameters
  over several seeds = one candidate): the confirmed ones by their confirmed mean (runs on
  new seeds, never the selection run), then the unconfirmed single runs, with the ratchet's
  figures (each verdict's threshold and σ, false keeps avoided, the confirmation cost); the
  JSON satisfies `leaderboard.schema.json`;
- a Pruning part: the worker trials `[pruning]` stopped early, the trial-seconds they used
  against their budget, an estimate of the compute saved, and their partial curves against
  the baseline envelope (`pruned_curves.png`);
- learning curves: the objective's history of the baseline and the best candidates
  (`learning_curves.png`);
- links per candidate: its MLflow run (with `[tracking] ui_url`), its logs and its diff;
- the plots as PNG files, and `report.html`: all of it in one self-contained page.

Selection uses validation figures only; a held-out test figure, computed once for the final
pick, is reported beside it. Secrets (`*_API_KEY`, `*_TOKEN` values) never reach a report.
Nothing heavy is imported until a report is written.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nightlab.config import Config

__all__ = ["write_report", "PLOT_FILES"]

PLOT_FILES = (
    "objective_per_trial.png",
    "best_so_far.png",
    "by_dimension.png",
    "seed_spread.png",
    "sigma_over_night.png",
    "pruned_curves.png",
    "learning_curves.png",
)
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def write_report(
    lab: Path,
    cfg: Config,
    *,
    night_id: str | None = None,
    top_k: int = 5,
    test: dict[str, Any] | None = None,
) -> Path:
    """Write the night's report files and return their folder.

    `night_id` defaults to the store's (meta `night_id`); `top_k` bounds the leaderboard;
    `test` is the held-out figure for the final pick, e.g. `{"trial": 7, "metric":
    "test_acc", "value": 0.95}` (None: the newest `test_metric` event, if any).
    Raises FileNotFoundError when the lab never ran, ReportError when asked for something
    the store cannot back (a test figure for an unknown trial, a bad night id)."""
    from nightlab.report import candidates as cands
    from nightlab.report import (
        curves,
        html,
        leaderboard,
        links,
        paper,
        plots,
        pruning,
        related,
        story,
    )
    from nightlab.report.data import ReportError, load, test_figure
    from nightlab.report.doc import md_text, to_markdown
    from nightlab.store.files import write_atomic
    from nightlab.store.redact import redact, secret_values

    if top_k < 1:
        raise ReportError(f"top_k must be at least 1 (got {top_k})")
    if night_id is not None and not _SAFE_ID.match(night_id):
        raise ReportError(
            f"night_id {night_id!r} is not a plain folder name (letters, digits, ._-)"
        )
    lab = Path(lab).resolve()
    night = load(lab, cfg, night_id)
    out = night.paths.report(night.night_id)
    out.mkdir(parents=True, exist_ok=True)
    for stale in PLOT_FILES:  # a plot skipped now must not show an old picture
        (out / stale).unlink(missing_ok=True)
    links.clear(out)

    figure = test_figure(night, test)
    ranked = cands.rank(night, cands.group(night))
    pick = cands.final_pick(night, ranked, figure) if ranked else None
    if figure is not None:
        if pick is None or figure["trial"] not in pick.ids:
            raise ReportError(
                f"the test figure names trial {figure['trial']}, which has no validation "
                "objective to stand beside; compute it for a trial that succeeded"
            )
        pick.test = figure
    if pick is not None:
        pick.final_pick = True
    top = ranked[:top_k]
    if pick is not None and pick not in top:
        top.append(pick)  # the final pick is always listed, even below the cut
    singles = [c for c in ranked if not c.confirmed][: len(top)]  # as Results lists them
    for c in top:
        c.diff = cands.diff_summary(night, c.first)
    for c in {id(c): c for c in top + singles}.values():
        c.links = links.trial_links(night, c.first, out)

    secrets = secret_values()
    board = leaderboard.write(out, night, top, top_k, len(ranked))
    condensed = redact(story.render(night), secrets)
    write_atomic(out / "final_condensed_story.md", md_text(condensed))
    drawn = [
        *plots.draw_all(night, ranked, out),
        plots.guarded(curves.NAME, curves.learning_curves, night, ranked, out),
    ]
    pruned = pruning.gather(night)
    built = paper.build(night, pick, ranked, top, drawn, figure)
    part = pruning.section(
        night, pruned, plots.guarded(pruning.PLOT, pruning.plot, night, pruned, out)
    )
    built.sections.insert(3, part)  # after Results, before Challenges
    if cited := related.section(related.gather(night)):
        built.sections.insert(4, cited)
    doc = _redacted(built, secrets)
    write_atomic(out / "final_paper_report.md", to_markdown(doc))
    write_atomic(out / "report.html", html.render(doc, out, condensed, board, top))
    return out


def _redacted(obj: Any, secrets: dict[str, str]) -> Any:
    """A copy of a report document with every string passed through `redact`."""
    from nightlab.report.doc import Linked
    from nightlab.store.redact import redact

    if isinstance(obj, Linked):  # its links stay links (a redacted href shows its label alone)
        links = [(redact(label, secrets), redact(href, secrets)) for label, href in obj.links]
        return Linked(links, redact(obj.after, secrets))
    if isinstance(obj, str):
        return redact(obj, secrets)
    if isinstance(obj, list):
        return [_redacted(v, secrets) for v in obj]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = dataclasses.fields(obj)
        changes = {f.name: _redacted(getattr(obj, f.name), secrets) for f in fields if f.init}
        return dataclasses.replace(obj, **changes)
    return obj

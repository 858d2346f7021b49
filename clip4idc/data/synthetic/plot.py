"""A figure of generated before / after / distractor triples with their captions (for docs and notebooks)."""

from __future__ import annotations

from pathlib import Path

from .scenes import load_scenes


def plot_triples(
    root: str | Path, ids: list[int | str] | None = None, out: str | Path | None = None, captions: int = 2
):
    """Plot one row per scene: before, after (one semantic change), distractor (camera/light jitter only),
    with the change type and ``captions`` of its captions underneath. Saves to ``out`` when given."""
    import json
    import textwrap

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from PIL import Image

    root = Path(root)
    scenes = load_scenes(root)
    ids = [str(i) for i in (ids if ids is not None else list(scenes)[:3])]
    caps = json.loads((root / "change_captions.json").read_text(encoding="utf-8"))
    nc_caps = json.loads((root / "no_change_captions.json").read_text(encoding="utf-8"))
    fig = Figure(figsize=(9.6, 3.9 * len(ids)))  # no pyplot: leaves the user's backend (e.g. inline) alone
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(ids), 3, squeeze=False)
    for row, sid in zip(axes, ids):
        scene = scenes[sid]
        key = Path(scene["images"]["before"]).name
        for ax, which in zip(row, ("before", "after", "distractor")):
            ax.imshow(Image.open(root / scene["images"][which]))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(which if which != "after" else f"after ({scene['change']['type']})", fontsize=10)
        text = "\n".join(textwrap.fill(c, 46) for c in caps[key][:captions])
        row[1].set_xlabel(text, fontsize=8.5, wrap=True)
        row[2].set_xlabel(textwrap.fill(nc_caps[key][0], 46), fontsize=8.5)
        row[0].set_xlabel(f"scene {sid}", fontsize=8.5)
    fig.tight_layout()
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=100)
    return fig

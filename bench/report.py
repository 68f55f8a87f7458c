"""results.json, report.md (tables) and PNG plots from a comparison's results."""

from __future__ import annotations

import json
import os


def write(results: dict, out: str) -> None:
    with open(os.path.join(out, "results.json"), "w") as handle:
        json.dump(results, handle, indent=2)
    with open(os.path.join(out, "report.md"), "w") as handle:
        handle.write(markdown(results))
    plot(results, out)


def cell(value) -> str:
    """A figure as the reports print it: three significant digits, whole thousands with separators, – for none."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 999.5 else f"{value:,.0f}"  # 999.6 to 3 digits is 1e+03
    return str(value)


def markdown(results: dict) -> str:
    methods = results["methods"]
    ran = [m for m, figures in methods.items() if "skipped" not in figures]
    kept_out = ("the rest kept out for false matches" if results["songs"] > results["indexed_songs"] else
                "none kept out for false matches: too few songs")
    lines = [f"Corpus: {results['songs']} songs ({results['indexed_songs']} indexed, {kept_out}), "
             f"{results['queries']} queries, seed {results['seed']}.", ""]
    for name, figures in methods.items():
        if "skipped" in figures:
            lines.append(f"- **{name}**: skipped: {figures['skipped']}")
        elif not figures.get("meaningful", True):
            lines.append(f"- **{name}**: figures NOT meaningful (stand-in weights): they show that the pipeline "
                         "runs and what it stores; its recall means nothing, and its speed is not MERT-v1-95M's "
                         "(`bench mert-speed` times the full-size architecture).")
    lines.append("")
    if not ran:
        return "\n".join(lines) + "\n"
    lines += ["| condition | " + " | ".join(ran) + " |", "|---|" + "---|" * len(ran)]
    for condition in results["conditions"]:
        lines.append(f"| recall {condition} | " + " | ".join(cell(methods[m]["recall"].get(condition)) for m in ran)
                     + " |")
    for name in results["conditions"]:
        if any(name in methods[m].get("factor_right", {}) for m in ran):
            lines.append(f"| warp within 0.5 % {name} | "
                         + " | ".join(cell(methods[m].get("factor_right", {}).get(name)) for m in ran) + " |")
    rows: list[tuple[str, str | tuple[str, str]]] = [
            ("warp within 0.5 % of 1.0, clips played as recorded", "factor_right_as_recorded"),
            ("false-match rate (songs not indexed)", "false_match_rate"),
            ("false-match rate, sped-up clips", ("false_match_rate_by_condition", "unindexed_speed")),
            ("wrong-song rate (indexed songs)", "wrong_match_rate"),
            ("fingerprint bytes / song", "fingerprint_bytes_per_song"), ("database bytes / song", "db_bytes_per_song"),
            ("database bytes / s of audio", "db_bytes_per_audio_s"), ("indexing × realtime", "index_x_realtime"),
            ("indexing × realtime per core", "index_x_realtime_per_core"), ("query ms p50", "query_ms_p50"),
            ("query ms p95", "query_ms_p95"), ("peak memory MB (above the interpreter's start)", "peak_rss_mb")]
    for label, key in rows:
        lines.append(f"| {label} | " + " | ".join(cell(_figure(methods[m], key)) for m in ran) + " |")
    return "\n".join(lines) + "\n"


def _figure(figures: dict, key: str | tuple[str, str]):
    """A method's figure by name, or by (table, row) for one row of a table of figures."""
    if isinstance(key, tuple):
        return figures.get(key[0], {}).get(key[1])
    return figures.get(key)


PLOTS_NEED = "the plots need matplotlib: pip install matplotlib (or the bench extra: pip install -e '.[bench]')"


def check_plotting() -> None:
    """Stop at once, naming what to install, when the plots cannot be drawn (before a run of many minutes)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise SystemExit(f"bench: {PLOTS_NEED}") from None


def plot(results: dict, out: str) -> None:
    check_plotting()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = {m: f for m, f in results["methods"].items() if "skipped" not in f}
    if not methods:
        return
    figure, axes = plt.subplots(figsize=(6, 4))
    for name, figures in methods.items():
        for kind in results.get("noise_kinds", []):
            points = sorted((int(c.rsplit("_", 1)[1][:-2]), v) for c, v in figures["recall"].items()
                            if c.startswith(f"noise_{kind}_"))  # noise_KIND_SNRdB
            if points:
                axes.plot(*zip(*points), marker="o", label=f"{name}, {kind}")
    axes.set(xlabel="SNR (dB)", ylabel="recall@1", title="Recall against noise (5 s clips)", ylim=(0, 1.02))
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(os.path.join(out, "recall_vs_snr.png"), dpi=110)
    plt.close(figure)

    figure, axes = plt.subplots(figsize=(6, 4))
    for name, figures in methods.items():
        recall = figures["recall"].get("clean_5s", next(iter(figures["recall"].values()), 0))
        axes.scatter([figures["fingerprint_bytes_per_song"]], [recall], s=60, label=name)
        high = recall > 0.5  # the label toward the middle: at a recall of 1 it ran into the title, at 0 the axis
        axes.annotate(name, (figures["fingerprint_bytes_per_song"], recall), textcoords="offset points",
                      xytext=(8, -6 if high else 6), va="top" if high else "bottom")
    axes.set_xscale("log")
    axes.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # labelled minor ticks ran into each other
    axes.margins(x=0.25)
    axes.set(xlabel="fingerprint bytes per song (log)", ylabel="recall@1, clean 5 s", ylim=(0, 1.02),
             title="Recall against storage")
    axes.grid(alpha=0.3, which="both")
    figure.tight_layout()
    figure.savefig(os.path.join(out, "recall_vs_storage.png"), dpi=110)
    plt.close(figure)

#!/usr/bin/env python3
"""Draws the dashboard's panels from a real Prometheus, for the README (Grafana is not in the
package registries this project can use, so this stands in for its screenshot).

Each panel's PromQL is taken from pipgate.json unchanged, except that the template variables
become `.*` and `$__rate_interval` a fixed window; the series come from Prometheus's range API.

    render.py PROMETHEUS_URL START END OUT.png
"""
import json
import pathlib
import sys
import urllib.parse
import urllib.request

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RATE_WINDOW = "20s"
SCALE = {"percentunit": (100, "%"), "bytes": (1 / 2**20, "MiB"), "Bps": (1 / 2**10, "KiB/s"), "s": (1000, "ms")}


def query(base, expr, start, end):
    expr = expr.replace("$__rate_interval", RATE_WINDOW)
    for var in ("$job", "$instance", "$upstream"):
        expr = expr.replace(var, ".*")
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": "2"})
    with urllib.request.urlopen(f"{base}/api/v1/query_range?{params}") as answer:
        return json.load(answer)["data"]["result"]


def legend(template, labels):
    for key, value in labels.items():
        template = template.replace("{{" + key + "}}", value)
    return template


def main():
    base, start, end, out = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    dashboard = json.loads(pathlib.Path(__file__).with_name("pipgate.json").read_text())
    panels, rows, current = [], [], ""
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            current = panel["title"]
            continue
        panels.append((current, panel))
    columns = 4
    lines = (len(panels) + columns - 1) // columns
    figure, axes = plt.subplots(lines, columns, figsize=(5.2 * columns, 3.1 * lines))
    figure.suptitle("pipgate dashboard: real scrapes of a running pipgate (scripted outage, hold and shadow)", fontsize=14)
    for ax, (row, panel) in zip(axes.flat, panels):
        unit = panel["fieldConfig"]["defaults"]["unit"]
        factor, shown = SCALE.get(unit, (1, {"reqps": "req/s", "ops": "/s"}.get(unit, "")))
        for target in panel["targets"]:
            for series in query(base, target["expr"], start, end):
                xs = [(float(t) - start) / 60 for t, _ in series["values"]]
                ys = [float(v) * factor if v not in ("NaN", "+Inf", "-Inf") else float("nan") for _, v in series["values"]]
                ax.plot(xs, ys, linewidth=1.4, label=legend(target["legendFormat"], series["metric"])[:38])
        ax.set_title(f"{panel['title']}", fontsize=10)
        ax.text(0.0, 1.13, row, transform=ax.transAxes, fontsize=7, color="gray")
        ax.set_xlabel("minutes", fontsize=7)
        ax.set_ylabel(shown, fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, loc="upper left")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    figure.tight_layout(rect=(0, 0, 1, 0.97))
    figure.savefig(out, dpi=70)


if __name__ == "__main__":
    main()

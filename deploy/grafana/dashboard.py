#!/usr/bin/env python3
"""Writes pipgate.json, the Grafana dashboard for pipgate (Grafana 10+).

Edit the panels here, not the JSON: `python3 deploy/grafana/dashboard.py` rewrites it, and the
test suite checks that the two agree (`--check`). The rows follow the questions an operator asks,
in order: is it up, is it fast, is it saving upstream traffic, is the feed healthy, is anything
being blocked, and what does it cost.
"""
import json
import pathlib
import sys

DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'job=~"$job", instance=~"$instance"'
UP_SEL = SEL + ', upstream=~"$upstream"'
RATE = "$__rate_interval"


class Layout:
    def __init__(self):
        self.panels, self.y, self.x, self.next_id = [], 0, 0, 1

    def row(self, title):
        self.newline()
        self.panels.append({"type": "row", "title": title, "id": self.take_id(), "collapsed": False,
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "panels": []})
        self.y += 1

    def newline(self):
        if self.x:
            self.y += 8
            self.x = 0

    def take_id(self):
        self.next_id += 1
        return self.next_id - 1

    def panel(self, title, unit, targets, kind="timeseries", width=8, description="", extra=None):
        if self.x + width > 24:
            self.newline()
        panel = {
            "type": kind,
            "title": title,
            "description": description,
            "id": self.take_id(),
            "datasource": DS,
            "gridPos": {"h": 8, "w": width, "x": self.x, "y": self.y},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom"}} if kind == "timeseries" else {},
            "targets": [
                {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": chr(ord("A") + i)}
                for i, (expr, legend) in enumerate(targets)
            ],
        }
        if extra:
            panel["fieldConfig"]["defaults"].update(extra)
        self.panels.append(panel)
        self.x += width


def quantiles(metric, by, sel):
    return [
        (f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket{{{sel}}}[{RATE}])))", f"p{int(q * 100)} {{{{{by}}}}}")
        for q in (0.5, 0.99)
    ]


def build():
    d = Layout()
    d.row("Is it up?")
    d.panel("Requests by route", "reqps", [(f"sum by (route) (rate(pipgate_requests_total{{{SEL}}}[{RATE}]))", "{{route}}")])
    d.panel("Error ratio (5xx)", "percentunit", [(
        f'sum(rate(pipgate_requests_total{{{SEL}, status=~"5.."}}[{RATE}])) / sum(rate(pipgate_requests_total{{{SEL}}}[{RATE}]))',
        "5xx share")], description="Answers with a 5xx status, of all answers. 502/503/504 name the failing upstream in the body.")
    d.panel("In flight, aborted", "short", [
        (f"sum(pipgate_requests_in_flight{{{SEL}}})", "in flight"),
        (f"sum(rate(pipgate_client_aborts_total{{{SEL}}}[{RATE}]))", "client aborts /s"),
    ])
    d.row("Is it fast?")
    d.panel("Latency to headers by route", "s", quantiles("pipgate_request_duration_seconds", "route", SEL), width=12)
    d.panel("Upstream latency", "s", quantiles("pipgate_upstream_request_duration_seconds", "upstream", UP_SEL), width=12)
    d.row("Is it saving upstream traffic?")
    for cache in ("index", "file"):
        d.panel(f"Cache hit ratio ({'pages' if cache == 'index' else 'files'})", "percentunit", [(
            f'sum(rate(pipgate_cache_lookups_total{{{SEL}, cache="{cache}", result=~"hit|revalidated"}}[{RATE}]))'
            f' / sum(rate(pipgate_cache_lookups_total{{{SEL}, cache="{cache}"}}[{RATE}]))', "hit ratio")])
    d.panel("Bytes served vs fetched upstream", "Bps", [
        (f"sum(rate(pipgate_response_bytes_total{{{SEL}}}[{RATE}]))", "served to clients"),
        (f"sum(rate(pipgate_upstream_bytes_total{{{UP_SEL}}}[{RATE}]))", "fetched upstream"),
    ], description="What pipgate saves: the gap between the two lines.")
    d.panel("Cache results", "ops", [(f"sum by (cache, result) (rate(pipgate_cache_lookups_total{{{SEL}}}[{RATE}]))", "{{cache}} {{result}}")], width=12)
    d.panel("Pass-through serves", "ops", [(f"sum by (upstream, reason) (rate(pipgate_file_pass_through_total{{{UP_SEL}}}[{RATE}]))", "{{upstream}} {{reason}}")], width=12)
    d.row("Is the feed healthy?")
    d.panel("Upstream errors by outcome", "ops", [(
        f'sum by (upstream, outcome) (rate(pipgate_upstream_requests_total{{{UP_SEL}, outcome!~"ok|not_found|not_modified"}}[{RATE}]))',
        "{{upstream}} {{outcome}}")])
    d.panel("Upstream health", "bool_yes_no", [(f"min by (upstream) (pipgate_upstream_healthy{{{UP_SEL}}})", "{{upstream}}")], kind="stat",
            description="Health-checked upstreams: 1 while the index root answers well.")
    d.panel("Token expiry", "s", [(f"min by (upstream) (pipgate_token_expiry_seconds{{{UP_SEL}}})", "{{upstream}}")],
            description="Seconds until pipgate's token for an Azure upstream expires; renewed at half its life.")
    d.row("Is anything being blocked?")
    d.panel("Fail-closed decisions", "short", [(f"sum by (upstream) (increase(pipgate_fail_closed_total{{{UP_SEL}}}[{RATE}]))", "{{upstream}}")])
    d.panel("Held names", "short", [
        (f"sum by (owner) (pipgate_held_projects{{{SEL}}})", "held on {{owner}}"),
        (f"sum by (owner) (increase(pipgate_owner_releases_total{{{SEL}}}[{RATE}]))", "released from {{owner}}"),
    ])
    d.panel("Shadowed private names", "short", [(f"sum by (owner, shadow, tracked) (pipgate_shadowed_projects{{{SEL}}})", "{{owner}} on {{shadow}} (tracked={{tracked}})")])
    d.panel("Hash mismatches", "short", [(f"sum by (upstream) (increase(pipgate_hash_mismatches_total{{{UP_SEL}}}[{RATE}]))", "{{upstream}}")], width=12)
    d.panel("Requests kept from a shadow", "ops", [(f"sum by (owner, shadow) (rate(pipgate_shadow_kept_total{{{SEL}}}[{RATE}]))", "{{owner}} over {{shadow}}")], width=12)
    d.row("What does it cost?")
    d.panel("Cache fill level", "percentunit", [(f"sum by (cache) (pipgate_cache_bytes{{{SEL}}}) / sum by (cache) (pipgate_cache_max_bytes{{{SEL}}})", "{{cache}}")],
            extra={"max": 1, "min": 0})
    d.panel("Resident memory", "bytes", [(f"process_resident_memory_bytes{{{SEL}}}", "{{instance}}")])
    d.panel("Fills in progress, open files", "short", [
        (f"sum(pipgate_file_fills_in_progress{{{SEL}}})", "fills"),
        (f"sum(process_open_fds{{{SEL}}})", "open fds"),
    ])
    variables = [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus", "current": {}, "hide": 0},
        {"name": "job", "type": "query", "datasource": DS, "query": "label_values(pipgate_build_info, job)",
         "refresh": 2, "includeAll": True, "multi": True, "current": {}, "hide": 0},
        {"name": "instance", "type": "query", "datasource": DS,
         "query": 'label_values(pipgate_build_info{job=~"$job"}, instance)', "refresh": 2, "includeAll": True,
         "multi": True, "current": {}, "hide": 0},
        {"name": "upstream", "type": "query", "datasource": DS,
         "query": 'label_values(pipgate_upstream_requests_total{job=~"$job"}, upstream)', "refresh": 2,
         "includeAll": True, "multi": True, "current": {}, "hide": 0},
    ]
    return {
        "uid": "pipgate-overview",
        "title": "pipgate",
        "description": "pipgate: requests, latency, cache savings, upstream health, and what the owner rule blocks.",
        "tags": ["pipgate", "python", "packages"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "1m",
        "templating": {"list": variables},
        "annotations": {"list": []},
        "panels": d.panels,
    }


def main():
    path = pathlib.Path(__file__).with_name("pipgate.json")
    text = json.dumps(build(), indent=2) + "\n"
    if "--check" in sys.argv:
        if path.read_text() != text:
            sys.exit(f"{path} is out of date: run python3 {__file__}")
        return
    path.write_text(text)


if __name__ == "__main__":
    main()

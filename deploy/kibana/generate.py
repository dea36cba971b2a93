#!/usr/bin/env python3
# Regenerates confluence-audit.ndjson (Kibana saved objects: data view, visualizations,
# saved searches, the "Soteri findings" and "Confluence admin activity" dashboards).
# Run from the repository root: python3 deploy/kibana/generate.py
import json
DV = "confluence-audit-data-view"
def ssj(query, index=True):
    s = {"query": {"query": query, "language": "kuery"}, "filter": []}
    if index:
        s["indexRefName"] = "kibanaSavedObjectMeta.searchSourceJSON.index"
    return json.dumps(s)
REF = [{"id": DV, "name": "kibanaSavedObjectMeta.searchSourceJSON.index", "type": "index-pattern"}]
objs = []
objs.append({
  "id": DV, "type": "index-pattern", "migrationVersion": {"index-pattern": "7.11.0"},
  "attributes": {"title": "logs-confluence.audit-*", "timeFieldName": "@timestamp", "name": "Confluence audit", "fields": "[]"},
  "references": []})
COUNT = {"id": "1", "enabled": True, "type": "count", "params": {}, "schema": "metric"}
def terms(i, field, schema, size=10, label=None):
    p = {"field": field, "orderBy": "1", "order": "desc", "size": size, "otherBucket": False,
         "otherBucketLabel": "Other", "missingBucket": False, "missingBucketLabel": "Missing"}
    if label: p["customLabel"] = label
    return {"id": str(i), "enabled": True, "type": "terms", "params": p, "schema": schema}
DATE = {"id": "2", "enabled": True, "type": "date_histogram", "schema": "segment",
        "params": {"field": "@timestamp", "useNormalizedEsInterval": True, "scaleMetricValues": False,
                   "interval": "auto", "drop_partials": False, "min_doc_count": 1, "extended_bounds": {}}}
def xy(split_field):
    aggs = [COUNT, DATE]
    if split_field: aggs.append(terms(3, split_field, "group"))
    params = {
      "type": "histogram", "grid": {"categoryLines": False},
      "categoryAxes": [{"id": "CategoryAxis-1", "type": "category", "position": "bottom", "show": True, "style": {},
                        "scale": {"type": "linear"}, "labels": {"show": True, "filter": True, "truncate": 100}, "title": {}}],
      "valueAxes": [{"id": "ValueAxis-1", "name": "LeftAxis-1", "type": "value", "position": "left", "show": True, "style": {},
                     "scale": {"type": "linear", "mode": "normal"}, "labels": {"show": True, "rotate": 0, "filter": False, "truncate": 100},
                     "title": {"text": "Events"}}],
      "seriesParams": [{"show": True, "type": "histogram", "mode": "stacked", "data": {"label": "Events", "id": "1"},
                        "valueAxis": "ValueAxis-1", "drawLinesBetweenPoints": True, "lineWidth": 2, "showCircles": True}],
      "addTooltip": True, "addLegend": True, "legendPosition": "right", "times": [], "addTimeMarker": False,
      "labels": {"show": False}, "thresholdLine": {"show": False, "value": 10, "width": 1, "style": "full", "color": "#E7664C"},
      "detailedTooltip": True, "palette": {"type": "palette", "name": "default"}, "isVislibVis": True,
      "fittingFunction": "zero", "radiusRatio": 0}
    return "histogram", aggs, params
def table(*fields):
    aggs = [COUNT] + [terms(i + 2, f, "bucket", size=20) for i, f in enumerate(fields)]
    return "table", aggs, {"perPage": 10, "showPartialRows": False, "showMetricsAtAllLevels": False, "showTotal": False,
                           "totalFunc": "sum", "percentageCol": "", "autoFitRowToContent": False, "row": True}
def pie(field):
    return "pie", [COUNT, terms(2, field, "segment")], {
        "type": "pie", "addTooltip": True, "legendDisplay": "show", "legendPosition": "right", "isDonut": True,
        "nestedLegend": False, "distinctColors": False, "truncateLegend": True, "maxLegendLines": 1,
        "labels": {"show": False, "values": True, "last_level": True, "truncate": 100},
        "palette": {"type": "palette", "name": "default"}}
def metric(label):
    c = dict(COUNT); c["params"] = {"customLabel": label}
    return "metric", [c], {"addTooltip": True, "addLegend": False, "type": "metric", "metric": {
        "percentageMode": False, "useRanges": False, "colorSchema": "Green to Red", "metricColorMode": "None",
        "colorsRange": [{"from": 0, "to": 10000}], "labels": {"show": True}, "invertColors": False,
        "style": {"bgFill": "#000", "bgColor": False, "labelColor": False, "subText": "", "fontSize": 60}}}
def vis(id, title, query, spec, description=""):
    kind, aggs, params = spec
    objs.append({"id": id, "type": "visualization", "migrationVersion": {"visualization": "7.10.0"},
      "attributes": {"title": title, "description": description, "uiStateJSON": "{}", "version": 1,
                     "visState": json.dumps({"title": title, "type": kind, "aggs": aggs, "params": params}),
                     "kibanaSavedObjectMeta": {"searchSourceJSON": ssj(query)}},
      "references": REF})
    return id
def search(id, title, query, columns, description=""):
    objs.append({"id": id, "type": "search", "migrationVersion": {"search": "7.9.3"},
      "attributes": {"title": title, "description": description, "columns": columns, "sort": [["@timestamp", "desc"]],
                     "kibanaSavedObjectMeta": {"searchSourceJSON": ssj(query)}},
      "references": REF})
    return id
def dashboard(id, title, description, panels):
    pj, refs = [], []
    y = 0; x = 0
    for i, (pid, ptype, w, h) in enumerate(panels):
        if x + w > 48: x = 0; y += 15
        pj.append({"version": "7.10.0", "type": ptype, "gridData": {"x": x, "y": y, "w": w, "h": h, "i": str(i + 1)},
                   "panelIndex": str(i + 1), "embeddableConfig": {}, "panelRefName": f"panel_{i}"})
        refs.append({"name": f"panel_{i}", "type": ptype, "id": pid})
        x += w
    objs.append({"id": id, "type": "dashboard", "migrationVersion": {"dashboard": "7.9.3"},
      "attributes": {"title": title, "description": description, "hits": 0, "timeRestore": True,
                     "timeFrom": "now-7d", "timeTo": "now", "refreshInterval": {"pause": False, "value": 60000},
                     "panelsJSON": json.dumps(pj),
                     "optionsJSON": json.dumps({"useMargins": True, "syncColors": False, "hidePanelTitles": False}),
                     "version": 1,
                     "kibanaSavedObjectMeta": {"searchSourceJSON": ssj("", index=False)}},
      "references": refs})

SOTERI = 'event.provider : "soteri-security-for-confluence"'
ALERT = 'event.kind : "alert"'
EXPORTS = SOTERI + ' and event.category : "file" and event.type : "access"'
CHANGES = SOTERI + ' and event.category : "configuration" and event.type : ("change" or "creation" or "deletion") and not event.action : ("scan-finding-reviewed" or "scan-finding-unreviewed" or "scan-findings-all-unreviewed")'
s = [
  (vis("soteri-findings-count", "Soteri: findings", ALERT, metric("Findings")), "visualization", 12, 15),
  (vis("soteri-findings-over-time", "Soteri: findings over time, by rule", ALERT, xy("rule.name")), "visualization", 36, 15),
  (vis("soteri-findings-by-space", "Soteri: findings by space", ALERT, pie("confluence.space.key")), "visualization", 16, 15),
  (vis("soteri-findings-by-rule", "Soteri: findings by rule", ALERT, table("rule.name")), "visualization", 16, 15),
  (vis("soteri-findings-by-user", "Soteri: findings by user", ALERT, table("user.name")), "visualization", 16, 15),
  (vis("soteri-exports-over-time", "Soteri: exports over time", EXPORTS, xy("event.action")), "visualization", 24, 15),
  (vis("soteri-exports-by-user", "Soteri: exports by user and kind", EXPORTS, table("user.name", "event.action")), "visualization", 24, 15),
  (search("soteri-exports", "Soteri: exports", EXPORTS, ["user.name", "event.action", "confluence.space.key", "source.ip", "message"]), "search", 24, 15),
  (search("soteri-rule-and-setting-changes", "Soteri: rule and setting changes", CHANGES, ["user.name", "event.action", "rule.name", "message"]), "search", 24, 15),
]
dashboard("soteri-findings", "Soteri findings",
  "Soteri Security for Confluence: sensitive content findings over time, by space, rule and user; exports of findings; changes to scanning rules and settings.",
  [(pid, t, w, h) for (pid, t, w, h) in s])

IAM = 'event.category : "iam"'
PERM = 'event.action : ("global-permission-added" or "global-permission-removed" or "space-permission-added" or "space-permission-removed")'
USERGROUP = 'event.category : "iam" and event.type : ("user" or "group")'
LOGIN = 'event.category : "authentication"'
APPS = 'event.category : "package"'
a = [
  (vis("confluence-admin-over-time", "Confluence: admin activity over time", '(event.category : ("iam" or "configuration" or "package")) and not ' + SOTERI, xy("event.action")), "visualization", 48, 15),
  (vis("confluence-permission-changes", "Confluence: permission changes", PERM, table("event.action", "user.name", "confluence.space.key")), "visualization", 24, 15),
  (search("confluence-permission-changes-list", "Confluence: permission changes (events)", PERM, ["user.name", "event.action", "confluence.space.key", "group.name", "user.target.name", "message"]), "search", 24, 15),
  (vis("confluence-user-group-changes", "Confluence: user and group changes", USERGROUP, table("event.action", "user.name")), "visualization", 24, 15),
  (search("confluence-user-group-changes-list", "Confluence: user and group changes (events)", USERGROUP, ["user.name", "event.action", "user.target.name", "group.name", "message"]), "search", 24, 15),
  (vis("confluence-logins-over-time", "Confluence: logins over time, by outcome", LOGIN, xy("event.outcome")), "visualization", 24, 15),
  (vis("confluence-failed-logins", "Confluence: failed logins by user and address", LOGIN + ' and event.outcome : "failure"', table("user.name", "source.ip")), "visualization", 24, 15),
  (search("confluence-app-events", "Confluence: app events", APPS, ["user.name", "event.action", "message"]), "search", 48, 15),
]
dashboard("confluence-admin-activity", "Confluence admin activity",
  "Confluence administration: permission, user and group changes, logins, and app installs/updates/removals.",
  [(pid, t, w, h) for (pid, t, w, h) in a])

with open("deploy/kibana/confluence-audit.ndjson", "w") as f:
    for o in objs:
        f.write(json.dumps(o, separators=(",", ":")) + "\n")
print(len(objs))

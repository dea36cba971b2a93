//! The Grafana dashboard's queries, evaluated against a real Prometheus: every panel's
//! `targets[].expr` with Grafana's variables filled in, and every templating variable's
//! `label_values(METRIC, LABEL)`, must answer `success` with at least one series — and a
//! query filtered by `$source`/`$sink` must return a series of the source/sink under test.

use serde_json::Value;

use super::Prometheus;

/// One query of the dashboard: where it is (panel title, refId) and its expression.
pub struct PanelQuery {
    pub place: String,
    pub expr: String,
}

/// Every `targets[].expr` of every panel (rows' nested panels included).
pub fn panel_queries(dashboard: &Value) -> Vec<PanelQuery> {
    fn walk(panels: &[Value], out: &mut Vec<PanelQuery>) {
        for p in panels {
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"].as_str().unwrap_or_else(|| {
                    panic!("panel {:?} target {:?} has no expr", p["title"], t["refId"])
                });
                out.push(PanelQuery {
                    place: format!("panel {:?} target {}", p["title"], t["refId"]),
                    expr: expr.to_owned(),
                });
            }
            walk(p["panels"].as_array().map_or(&[], Vec::as_slice), out);
        }
    }
    let mut out = Vec::new();
    walk(
        dashboard["panels"].as_array().expect("dashboard.panels"),
        &mut out,
    );
    out
}

/// Grafana's variables as the dashboard sees them with "All" selected: `$source`/`$sink` are
/// the `.*` regex (`allValue`), `$__rate_interval` a window holding many 1 s scrapes.
pub fn fill_variables(expr: &str) -> String {
    expr.replace("$__rate_interval", "30s")
        .replace("$source", ".*")
        .replace("$sink", ".*")
}

/// Evaluate every panel query and variable; panic naming each one that errs or is empty.
pub fn check_every_query(prom: &Prometheus, dashboard: &Value, source: &str, sink: &str) {
    let mut problems = Vec::new();
    let queries = panel_queries(dashboard);
    assert!(queries.len() >= 10, "only {} queries found", queries.len());
    for q in &queries {
        let expr = fill_variables(&q.expr);
        assert!(
            !expr.contains('$'),
            "{}: unknown variable in {expr}",
            q.place
        );
        let answer = prom.query(&expr);
        let result = answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let has = |key: &str, value: &str| result.iter().any(|s| s["metric"][key] == value);
        if answer["status"] != "success" {
            problems.push(format!("{}: {expr}: {}", q.place, answer["error"]));
        } else if result.is_empty() {
            problems.push(format!("{}: {expr}: no series", q.place));
        } else if q.expr.contains("$source") && !has("source", source) {
            problems.push(format!("{}: {expr}: no series for {source}", q.place));
        } else if q.expr.contains("$sink") && !has("sink", sink) {
            problems.push(format!("{}: {expr}: no series for {sink}", q.place));
        }
    }
    for v in dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
    {
        let definition = v["definition"].as_str().expect("variable definition");
        let (metric, label) = definition
            .strip_prefix("label_values(")
            .and_then(|s| s.strip_suffix(')'))
            .and_then(|s| s.split_once(", "))
            .unwrap_or_else(|| panic!("variable {:?}: not label_values: {definition}", v["name"]));
        let answer = prom.query(metric);
        let values: Vec<&str> = answer["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["metric"][label].as_str())
            .collect();
        if values.is_empty() {
            problems.push(format!("variable {:?}: {definition}: no values", v["name"]));
        }
    }
    assert!(
        problems.is_empty(),
        "dashboard queries that fail or are empty:\n{}",
        problems.join("\n")
    );
}

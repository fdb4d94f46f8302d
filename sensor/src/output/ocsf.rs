//! OCSF output (`--format ocsf`): every `alert` record as an OCSF 1.3
//! Detection Finding (class_uid 2004). The mapping is documented in
//! `docs/output.md#ocsf`. Session records (`tls`, `quic`) and the stats
//! record are EVE-only and not written in this format.

use serde_json::{json, Map, Value};

/// EVE severity (1 most severe) → OCSF severity_id (4 High, 3 Medium, 2 Low).
fn severity_id(eve: u64) -> u64 {
    match eve {
        1 => 4,
        2 => 3,
        _ => 2,
    }
}

fn confidence_id(c: &str) -> Option<u64> {
    match c {
        "low" => Some(1),
        "medium" => Some(2),
        "high" => Some(3),
        _ => None,
    }
}

/// Parse Suricata's timestamp back to epoch milliseconds.
fn epoch_ms(ts: &str) -> Option<i64> {
    let t = time::PrimitiveDateTime::parse(ts.get(..26)?, time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]")).ok()?;
    Some((t.assume_utc().unix_timestamp_nanos() / 1_000_000) as i64)
}

/// Map one EVE alert to an OCSF Detection Finding; `None` for other records.
pub fn detection_finding(eve: &Value) -> Option<Value> {
    if eve.get("event_type")?.as_str()? != "alert" {
        return None;
    }
    let alert = eve.get("alert")?;
    let sid = alert.get("signature_id")?.as_u64()?;
    let tls = eve.get("tls").cloned().unwrap_or(Value::Null);
    let mut evidence = Map::new();
    evidence.insert("src_endpoint".into(), json!({"ip": eve["src_ip"], "port": eve["src_port"]}));
    let mut dst = json!({"ip": eve["dest_ip"], "port": eve["dest_port"]});
    if let Some(sni) = tls.get("sni").and_then(Value::as_str) {
        dst["hostname"] = json!(sni);
    }
    evidence.insert("dst_endpoint".into(), dst);
    evidence.insert(
        "connection_info".into(),
        json!({"protocol_name": eve["proto"].as_str().unwrap_or("").to_ascii_lowercase(), "uid": eve["community_id"]}),
    );
    if !tls.is_null() {
        let mut t = json!({"version": tls["version"]});
        if let Some(sni) = tls.get("sni") {
            t["sni"] = sni.clone();
        }
        if let Some(code) = eve.pointer("/tls_failure/alert_code") {
            t["alert"] = code.clone();
        }
        if let Some(h) = tls.pointer("/ja3/hash") {
            t["ja3_hash"] = json!({"algorithm_id": 0, "algorithm": "MD5", "value": h});
        }
        evidence.insert("tls".into(), t);
        if let Some(j4) = tls.get("ja4").and_then(Value::as_str) {
            evidence.insert("ja4_fingerprint_list".into(), json!([{"type_id": 0, "type": "JA4", "value": j4}]));
        }
    }
    let mut f = json!({
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "category_uid": 2,
        "category_name": "Findings",
        "activity_id": 1,
        "activity_name": "Create",
        "type_uid": 200401,
        "type_name": "Detection Finding: Create",
        "status_id": 1,
        "status": "New",
        "is_alert": true,
        "time": eve.get("timestamp").and_then(Value::as_str).and_then(epoch_ms),
        "severity_id": severity_id(alert.get("severity").and_then(Value::as_u64).unwrap_or(3)),
        "message": alert["signature"],
        "metadata": {
            "version": "1.3.0",
            "product": {"name": "pinwatch", "vendor_name": "pinwatch", "version": env!("CARGO_PKG_VERSION")},
        },
        "finding_info": {
            "uid": format!("{}-{}", eve["flow_id"], sid),
            "title": alert["signature"],
            "types": [alert["category"]],
            "analytic": {"uid": "AN1725", "name": "Mobile app TLS trust customisation vs enterprise inspection", "type_id": 2, "type": "Behavioral"},
            "attacks": [{"technique": {"uid": "T1521.003", "name": "SSL Pinning"}, "version": "ATT&CK Mobile"}],
            "related_analytics": [{"uid": "DET0646", "name": "Detection of SSL Pinning"}],
        },
        "evidences": [Value::Object(evidence)],
        "unmapped": {
            "pinwatch": {
                "gid": alert["gid"],
                "signature_id": sid,
                "flow_id": eve["flow_id"],
                "evidence": eve.get("evidence"),
                "tls_failure": eve.get("tls_failure"),
                "path": eve.get("path"),
                "an1725": eve.get("an1725"),
            }
        },
    });
    // The finding's confidence, from which its severity was derived, so
    // the two agree (docs/output.md, Signatures).
    if let Some(c) = eve.pointer("/alert/metadata/confidence/0").or_else(|| eve.pointer("/an1725/confidence")).and_then(Value::as_str).and_then(confidence_id) {
        f["confidence_id"] = json!(c);
    }
    if let Some(m) = eve.get("mobile") {
        f["device"] = json!({"uid": m["device_id"], "ip": eve["src_ip"], "type_id": 5, "type": "Mobile"});
        if let Some(pkg) = m.pointer("/app/package") {
            f["unmapped"]["pinwatch"]["app"] = m["app"].clone();
            f["finding_info"]["desc"] = json!(format!("app {}", pkg.as_str().unwrap_or("?")));
        }
    }
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_an_alert_and_skips_sessions() {
        let eve = json!({
            "timestamp": "2026-08-21T09:14:03.512311+0000", "flow_id": 7, "event_type": "alert",
            "src_ip": "10.0.0.1", "src_port": 5000, "dest_ip": "198.51.100.2", "dest_port": 443, "proto": "TCP",
            "community_id": "1:x", "alert": {"gid": 1725, "signature_id": 1725005, "severity": 1, "signature": "s", "category": "c"},
            "tls": {"sni": "api.example.com", "version": "TLS 1.3", "ja4": "t13d1516h2_8daaf6152771_e5627efa2ab1"},
            "tls_failure": {"alert_code": 46}, "an1725": {"confidence": "high"},
            "mobile": {"device_id": "dev-1", "app": {"package": "com.example"}}
        });
        let f = detection_finding(&eve).expect("alert maps");
        assert_eq!(f["class_uid"], 2004);
        assert_eq!(f["type_uid"], 200401);
        assert_eq!(f["severity_id"], 4);
        assert_eq!(f["confidence_id"], 3);
        assert_eq!(f["time"], 1_787_303_643_512i64);
        assert_eq!(f["device"]["type_id"], 5);
        assert_eq!(f["evidences"][0]["tls"]["alert"], 46);
        assert_eq!(f["evidences"][0]["dst_endpoint"]["hostname"], "api.example.com");
        assert_eq!(f["finding_info"]["attacks"][0]["technique"]["uid"], "T1521.003");
        assert!(detection_finding(&json!({"event_type": "tls"})).is_none());
    }
}

//! OCSF output (`--format ocsf`): every `alert` record as an OCSF 1.4.0
//! Detection Finding (class_uid 2004). The mapping is documented in
//! `docs/output.md#ocsf`. Session records (`tls`, `quic`) and the stats
//! record are EVE-only and not written in this format.
//!
//! Every attribute, enum id and caption is OCSF 1.4.0's: the tests validate
//! the output against that version's JSON Schema and dictionary captions,
//! vendored in `tests/ocsf/` (made by `scripts/ocsf-schema.sh`).
//! A folded AN1725 alert keeps one finding: `finding_info.uid` is its
//! `an1725.alert_id`, its first revision is a Create (`activity_id` 1) and
//! every later one an Update (2) of the same uid.

use serde_json::{json, Map, Value};

/// The OCSF version every record claims and follows.
pub const OCSF_VERSION: &str = "1.4.0";

/// EVE severity (1 most severe) → OCSF severity_id (4 High, 3 Medium, 2 Low)
/// and its caption.
fn severity(eve: u64) -> (u64, &'static str) {
    match eve {
        1 => (4, "High"),
        2 => (3, "Medium"),
        _ => (2, "Low"),
    }
}

/// pinwatch confidence → OCSF confidence_id and its caption.
fn confidence(c: &str) -> Option<(u64, &'static str)> {
    match c {
        "low" => Some((1, "Low")),
        "medium" => Some((2, "Medium")),
        "high" => Some((3, "High")),
        _ => None,
    }
}

/// Parse Suricata's timestamp back to epoch milliseconds.
fn epoch_ms(ts: &str) -> Option<i64> {
    let t = time::PrimitiveDateTime::parse(
        ts.get(..26)?,
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]"),
    )
    .ok()?;
    Some((t.assume_utc().unix_timestamp_nanos() / 1_000_000) as i64)
}

/// Map one EVE alert to an OCSF Detection Finding; `None` for other records.
pub fn detection_finding(eve: &Value) -> Option<Value> {
    if eve.get("event_type")?.as_str()? != "alert" {
        return None;
    }
    let alert = eve.get("alert")?;
    let sid = alert.get("signature_id")?.as_u64()?;
    let evidence = evidence_of(eve);
    let (uid, revision) = finding_uid(eve, sid);
    let (activity_id, activity) = if revision > 1 { (2, "Update") } else { (1, "Create") };
    let (sev_id, sev) = severity(alert.get("severity").and_then(Value::as_u64).unwrap_or(3));
    let mut f = json!({
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "category_uid": 2,
        "category_name": "Findings",
        "activity_id": activity_id,
        "activity_name": activity,
        "type_uid": 200400 + activity_id,
        "type_name": format!("Detection Finding: {activity}"),
        "status_id": 1,
        "status": "New",
        "is_alert": true,
        "time": eve.get("timestamp").and_then(Value::as_str).and_then(epoch_ms).unwrap_or(0),
        "severity_id": sev_id,
        "severity": sev,
        "message": alert["signature"],
        "metadata": {
            "version": OCSF_VERSION,
            "product": {"name": "pinwatch", "vendor_name": "pinwatch", "version": env!("CARGO_PKG_VERSION")},
        },
        "finding_info": {
            "uid": uid,
            "title": alert["signature"],
            "types": [alert["category"]],
            "analytic": {"uid": "AN1725", "name": "Mobile app TLS trust customisation vs enterprise inspection", "type_id": 2, "type": "Behavioral"},
            "attacks": [{"technique": {"uid": "T1521.003", "name": "SSL Pinning"}, "version": "ATT&CK Mobile"}],
            // A MITRE ATT&CK detection strategy is none of OCSF's analytic
            // types: 99 Other, with the source's own type name.
            "related_analytics": [{"uid": "DET0646", "name": "Detection of SSL Pinning", "type_id": 99, "type": "MITRE ATT&CK Detection Strategy"}],
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
    add_confidence_count_device(&mut f, eve);
    Some(f)
}

/// The finding's one evidence: the endpoints (the server's name as the
/// destination's hostname), the connection and, for TLS, the version, SNI,
/// alert code and JA3/JA4 fingerprints.
fn evidence_of(eve: &Value) -> Map<String, Value> {
    let tls = eve.get("tls").cloned().unwrap_or(Value::Null);
    let mut evidence = Map::new();
    evidence.insert("src_endpoint".into(), json!({"ip": eve["src_ip"], "port": eve["src_port"]}));
    let mut dst = json!({"ip": eve["dest_ip"], "port": eve["dest_port"]});
    if let Some(sni) = tls.get("sni").and_then(Value::as_str) {
        dst["hostname"] = json!(sni);
    }
    evidence.insert("dst_endpoint".into(), dst);
    // The client is the source: a managed device talking out.
    evidence.insert("connection_info".into(), connection_info(eve));
    if !tls.is_null() {
        let mut t = json!({"version": tls["version"]});
        if let Some(sni) = tls.get("sni") {
            t["sni"] = sni.clone();
        }
        if let Some(code) = eve.pointer("/tls_failure/alert_code") {
            t["alert"] = code.clone();
        }
        if let Some(h) = tls.pointer("/ja3/hash") {
            // A JA3 is an MD5: fingerprint algorithm_id 1.
            t["ja3_hash"] = json!({"algorithm_id": 1, "algorithm": "MD5", "value": h});
        }
        evidence.insert("tls".into(), t);
        if let Some(j4) = tls.get("ja4").and_then(Value::as_str) {
            evidence.insert("ja4_fingerprint_list".into(), json!([{"type_id": 1, "type": "JA4", "value": j4}]));
        }
    }
    evidence
}

/// `connection_info`: the protocol (number and name), the IP version, the
/// community id, and the direction: outbound, the client (a managed device
/// talking out) being the source.
fn connection_info(eve: &Value) -> Value {
    let proto = eve["proto"].as_str().unwrap_or("").to_ascii_lowercase();
    let mut conn = json!({"protocol_name": proto, "direction_id": 2, "direction": "Outbound", "uid": eve["community_id"]});
    match proto.as_str() {
        "tcp" => conn["protocol_num"] = json!(6),
        "udp" => conn["protocol_num"] = json!(17),
        _ => {}
    }
    match eve["src_ip"].as_str().map(|ip| ip.contains(':')) {
        Some(true) => (conn["protocol_ver_id"], conn["protocol_ver"]) = (json!(6), json!("Internet Protocol version 6 (IPv6)")),
        Some(false) => (conn["protocol_ver_id"], conn["protocol_ver"]) = (json!(4), json!("Internet Protocol version 4 (IPv4)")),
        None => {}
    }
    conn
}

/// The finding's uid and revision: a folded AN1725 alert is one finding over
/// its revisions (its `alert_id`); any other alert is written once, for one
/// session and signature (`<flow_id>-<sid>`, revision 1).
fn finding_uid(eve: &Value, sid: u64) -> (String, u64) {
    let an = eve.get("an1725");
    match (an.and_then(|a| a.get("alert_id")).and_then(Value::as_str), an.and_then(|a| a.get("revision")).and_then(Value::as_u64)) {
        (Some(id), Some(rev)) if !id.is_empty() => (id.to_string(), rev),
        _ => (format!("{}-{}", eve["flow_id"], sid), 1),
    }
}

/// What only some alerts have: the confidence, the sessions folded in so
/// far (`count`) and the mobile device (and app).
fn add_confidence_count_device(f: &mut Value, eve: &Value) {
    let an = eve.get("an1725");
    // The finding's confidence, from which its severity was derived, so
    // the two agree (docs/output.md, Signatures).
    if let Some((id, name)) = eve
        .pointer("/alert/metadata/confidence/0")
        .or_else(|| eve.pointer("/an1725/confidence"))
        .and_then(Value::as_str)
        .and_then(confidence)
    {
        f["confidence_id"] = json!(id);
        f["confidence"] = json!(name);
    }
    // Sessions folded into the finding so far.
    if let Some(n) = an.and_then(|a| a.get("count")).and_then(Value::as_u64) {
        f["count"] = json!(n);
    }
    if let Some(m) = eve.get("mobile") {
        f["device"] = json!({"uid": m["device_id"], "ip": eve["src_ip"], "type_id": 5, "type": "Mobile"});
        if let Some(pkg) = m.pointer("/app/package") {
            f["unmapped"]["pinwatch"]["app"] = m["app"].clone();
            f["finding_info"]["desc"] = json!(format!("app {}", pkg.as_str().unwrap_or("?")));
        }
    }
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

    fn an1725_alert(revision: u64, count: u64) -> Value {
        json!({
            "timestamp": "2026-08-21T09:14:03.512311+0000", "flow_id": 9, "event_type": "alert",
            "src_ip": "10.0.0.1", "src_port": 5000, "dest_ip": "198.51.100.2", "dest_port": 443, "proto": "TCP",
            "community_id": "1:x", "alert": {"gid": 1725, "signature_id": 1725005, "severity": 1, "signature": "s", "category": "c"},
            "tls": {"sni": "api.example.com", "version": "TLS 1.3", "ja4": "t13d1516h2_8daaf6152771_e5627efa2ab1",
                    "ja3": {"hash": "e7d705a3286e19ea42f587b344ee6865", "string": "x"}},
            "an1725": {"confidence": "high", "alert_id": "an1725-100-7", "revision": revision, "count": count},
            "mobile": {"device_id": "dev-1", "app": {"package": "com.example"}}
        })
    }

    /// A folded alert is one finding: its first revision creates it, later
    /// ones update the same uid (OCSF 1.4.0 activity ids and type_uids).
    #[test]
    fn revisions_are_updates_of_one_finding() {
        let first = detection_finding(&an1725_alert(1, 1)).expect("maps");
        assert_eq!(
            (first["activity_id"].as_u64(), first["activity_name"].as_str(), first["type_uid"].as_u64()),
            (Some(1), Some("Create"), Some(200401))
        );
        assert_eq!(first["finding_info"]["uid"], "an1725-100-7");
        let later = detection_finding(&an1725_alert(3, 2)).expect("maps");
        assert_eq!(
            (later["activity_id"].as_u64(), later["activity_name"].as_str(), later["type_uid"].as_u64()),
            (Some(2), Some("Update"), Some(200402))
        );
        assert_eq!(later["type_name"], "Detection Finding: Update");
        assert_eq!(later["finding_info"]["uid"], "an1725-100-7");
        assert_eq!(later["count"], 2);
        assert_eq!(later["metadata"]["version"], "1.4.0");
    }

    /// Fingerprints carry OCSF's ids: JA4 is ja4_fingerprint type_id 1,
    /// a JA3 hash is an MD5 fingerprint (algorithm_id 1).
    #[test]
    fn fingerprint_ids_are_ocsf_s() {
        let f = detection_finding(&an1725_alert(1, 1)).expect("maps");
        assert_eq!(f["evidences"][0]["ja4_fingerprint_list"][0]["type_id"], 1);
        assert_eq!(f["evidences"][0]["ja4_fingerprint_list"][0]["type"], "JA4");
        assert_eq!(f["evidences"][0]["tls"]["ja3_hash"]["algorithm_id"], 1);
        assert_eq!(f["evidences"][0]["tls"]["ja3_hash"]["value"], "e7d705a3286e19ea42f587b344ee6865");
        assert_eq!(f["evidences"][0]["connection_info"]["direction_id"], 2);
        assert_eq!(f["evidences"][0]["connection_info"]["protocol_num"], 6);
    }
}

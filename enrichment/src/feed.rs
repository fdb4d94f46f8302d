//! Versioned JSON-lines device/app feed (schema v1), see `FEED.md`.
//!
//! Sans-IO: the caller reads lines from wherever and pushes them into a
//! [`FeedReader`], which never fails fatally: malformed lines, unknown event
//! types, unsupported versions and bad timestamps are counted in a
//! [`FeedReport`], with the first few problems kept with their line numbers.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The only schema version this reader accepts.
pub const SCHEMA_VERSION: u64 = 1;

/// Default number of problems kept (with line numbers) in a [`FeedReport`].
pub const DEFAULT_MAX_PROBLEMS: usize = 64;

/// One parsed feed event: common envelope plus a typed body.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Line number the event came from (as passed to [`FeedReader::push_line`]).
    pub line_no: u64,
    /// The producer's `event_id`, if it sent one.
    pub event_id: Option<String>,
    /// Device clock time of the event, ns since the Unix epoch.
    pub event_time_ns: i64,
    /// Ingest time, ns since the Unix epoch.
    pub observed_time_ns: i64,
    /// `device.id`: the stable device id (e.g. an AMAPI device name). Only an
    /// `ip_binding` assign/renew is rejected without it; an event without it
    /// belongs to no device.
    pub device_id: Option<String>,
    /// The `source` object (provenance), if present.
    pub source: Option<Source>,
    /// The payload of the event's `event_type`.
    pub body: EventBody,
}

impl Event {
    /// The `event_type` string of the body.
    pub fn event_type(&self) -> &'static str {
        self.body.event_type()
    }

    /// The app package the event is about, if any.
    pub fn package(&self) -> Option<&str> {
        match &self.body {
            EventBody::AppInventory(e) => Some(&e.app.package),
            EventBody::AppTlsTrust(e) => Some(&e.app.package),
            EventBody::NetConnect(e) => Some(&e.app.package),
            EventBody::DnsLookup(e) => Some(&e.app.package),
            EventBody::AppState(e) => Some(&e.app.package),
            EventBody::IpBinding(_) | EventBody::DeviceState(_) => None,
        }
    }
}

/// `source` object of the envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// `source.kind`: `amapi`, `dpm_network_log`, `dhcp`, `radius_accounting`, `agent`, ... (free string).
    pub kind: String,
    /// `source.vendor`: the product that produced the event.
    #[serde(default)]
    pub vendor: Option<String>,
    /// `source.source_event_id`: the event's id in the producing system.
    #[serde(default)]
    pub source_event_id: Option<String>,
}

/// Typed payload, one variant per supported `event_type`.
#[derive(Debug, Clone, PartialEq)]
pub enum EventBody {
    /// `ip_binding`: which device held an IP, over an interval.
    IpBinding(IpBinding),
    /// `app_inventory`: an app snapshot, upserted per package.
    AppInventory(AppInventory),
    /// `app_tls_trust`: a runtime trust decision inside an app.
    AppTlsTrust(AppTlsTrust),
    /// `net_connect`: an app's TCP connect (DPM ConnectEvent).
    NetConnect(NetConnect),
    /// `dns_lookup`: an app's DNS resolution (DPM DnsEvent).
    DnsLookup(DnsLookup),
    /// `app_state`: an app lifecycle change.
    AppState(AppState),
    /// `device_state`: a device snapshot (screen, keyguard, last interaction).
    DeviceState(DeviceState),
}

impl EventBody {
    /// The `event_type` string this body is parsed from (`ip_binding`, `app_inventory`, ...).
    pub fn event_type(&self) -> &'static str {
        match self {
            EventBody::IpBinding(_) => "ip_binding",
            EventBody::AppInventory(_) => "app_inventory",
            EventBody::AppTlsTrust(_) => "app_tls_trust",
            EventBody::NetConnect(_) => "net_connect",
            EventBody::DnsLookup(_) => "dns_lookup",
            EventBody::AppState(_) => "app_state",
            EventBody::DeviceState(_) => "device_state",
        }
    }
}

/// `ip_binding.action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindingAction {
    /// `assign`: a new binding from `valid_from` to `valid_until`.
    Assign,
    /// `renew`: the binding goes on with new times (handled like `assign`).
    Renew,
    /// `release`: the device gave the IP up; the binding ends.
    Release,
    /// `expire`: the binding ran out; it ends.
    Expire,
    /// `conflict`: the producer saw the IP in dispute; leases covering that
    /// time are flagged, not ended.
    Conflict,
}

/// `ip_binding.confidence`; ordered so that a greater value wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    /// `self_reported`: an agent on the device says so (weakest).
    SelfReported,
    /// `dhcp`: from a DHCP server's lease.
    Dhcp,
    /// `authenticated`: from VPN or RADIUS after authentication (strongest).
    Authenticated,
}

impl Confidence {
    /// The feed's name of the value (`self_reported`, `dhcp`, `authenticated`).
    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::SelfReported => "self_reported",
            Confidence::Dhcp => "dhcp",
            Confidence::Authenticated => "authenticated",
        }
    }
}

/// `network` object of an `ip_binding`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// `network.context`: the lookup namespace (e.g. `hq-wifi`, `vpn1`) the IP belongs to.
    pub context: String,
    /// `network.kind` (e.g. `wifi`), informational.
    #[serde(default)]
    pub kind: Option<String>,
}

/// `ip_binding` event (an interval per binding, see FEED.md).
#[derive(Debug, Clone, PartialEq)]
pub struct IpBinding {
    /// What happened to the binding.
    pub action: BindingAction,
    /// The bound address (with [`prefix_len`](Self::prefix_len): the prefix's first address).
    pub ip: IpAddr,
    /// Where the address is bound.
    pub network: Network,
    /// `valid_from`, ns since the Unix epoch; `None` when absent (the lease map
    /// then takes the event time).
    pub valid_from_ns: Option<i64>,
    /// `valid_until`, ns since the Unix epoch; `None` when absent (the lease map
    /// then gives an assign/renew its default lease length, and closes a
    /// release/expire at `valid_from`, else the event time).
    pub valid_until_ns: Option<i64>,
    /// How far the producer vouches for the binding.
    pub confidence: Confidence,
    /// Who the producer bound (`identity.kind`: `mac`, `user`, `cert_cn`…),
    /// as `docs/bindings.md` writes it; optional.
    pub identity: Option<BindingIdentity>,
    /// An IPv6 prefix (Framed-IPv6-Prefix, Delegated-IPv6-Prefix): `ip` is
    /// its first address and every address under it is bound; optional.
    pub prefix_len: Option<u8>,
}

/// `ip_binding.identity`: the RADIUS/DHCP identity behind the binding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingIdentity {
    /// `identity.kind`: `mac`, `user`, `cert_cn`, ... (free string).
    pub kind: String,
    /// `identity.value`: the MAC address, user name, certificate CN, ... as sent.
    pub value: String,
}

/// `app` object: identity is (package, signing cert).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRef {
    /// Package name (e.g. `com.example.bank`).
    pub package: String,
    /// SHA-256 digests of the signing certificates, hex, as sent; empty when not sent.
    #[serde(default)]
    pub signing_cert_sha256: Vec<String>,
}

/// One NSC `<pin-set>` (with its `<domain>` entries).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinSet {
    /// `<domain>` names the pins apply to.
    #[serde(default)]
    pub domains: Vec<String>,
    /// `includeSubdomains` of the domain config: subdomains are pinned too.
    #[serde(default)]
    pub include_subdomains: bool,
    /// `<pin-set expiration>` date as sent (`YYYY-MM-DD`), if any.
    #[serde(default)]
    pub expiration: Option<String>,
    /// Pins as sent (e.g. `sha256/<base64 SPKI digest>`).
    #[serde(default)]
    pub pins: Vec<String>,
}

/// Static trust profile of an app (from app vetting).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustProfile {
    /// NSC pin sets (alias `nsc_pin_sets`).
    #[serde(default, alias = "nsc_pin_sets")]
    pub pin_sets: Vec<PinSet>,
    /// The app trusts user-installed CAs; `None`: unknown.
    #[serde(default)]
    pub trusts_user_cas: Option<bool>,
    /// The app ships its own `X509TrustManager`; `None`: unknown.
    #[serde(default)]
    pub custom_trust_manager: Option<bool>,
    /// The app has a trust manager that accepts any certificate; `None`: unknown.
    #[serde(default)]
    pub trust_all: Option<bool>,
    /// The app replaces the `HostnameVerifier`; `None`: unknown.
    #[serde(default)]
    pub hostname_verifier_override: Option<bool>,
    /// The app uses OkHttp's `CertificatePinner` (alias `okhttp_pinner`); `None`: unknown.
    #[serde(default, alias = "okhttp_pinner")]
    pub okhttp_certificate_pinner: Option<bool>,
}

/// App inventory payload (`app` object of `app_inventory`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryApp {
    /// Package name (e.g. `com.example.bank`).
    pub package: String,
    /// Android `versionCode`, if sent.
    #[serde(default)]
    pub version_code: Option<i64>,
    /// Android `versionName`, if sent.
    #[serde(default)]
    pub version_name: Option<String>,
    /// SHA-256 digests of the signing certificates, hex, as sent.
    #[serde(default)]
    pub signing_cert_sha256: Vec<String>,
    /// `targetSdkVersion`, if sent (24 and later distrust user CAs by default).
    #[serde(default)]
    pub target_sdk: Option<u32>,
    /// What app vetting found about the app's TLS trust.
    #[serde(default)]
    pub trust_profile: TrustProfile,
    /// Hosts the app is expected to reach: names, or `*.domain` for strict subdomains.
    #[serde(default)]
    pub expected_endpoints: Vec<String>,
}

/// `app_inventory` event (snapshot semantics per package).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppInventory {
    /// The app snapshot.
    pub app: InventoryApp,
}

/// Runtime trust event kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrustEventKind {
    /// `custom_trust_manager_invoked`: the app's own trust manager decided.
    CustomTrustManagerInvoked,
    /// `pin_check_failed`: a pin check rejected the server's chain.
    PinCheckFailed,
    /// `pin_check_passed`: a pin check accepted the server's chain.
    PinCheckPassed,
    /// `validation_override` (alias `cert_validation_override`): certificate validation was bypassed.
    #[serde(alias = "cert_validation_override")]
    ValidationOverride,
    /// `hostname_verifier_override`: hostname verification was bypassed.
    HostnameVerifierOverride,
}

/// `app_tls_trust` event (runtime, from an in-app SDK / RASP / MTD).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppTlsTrust {
    /// The app that decided.
    pub app: AppRef,
    /// What was decided.
    pub trust_event: TrustEventKind,
    /// Host name the connection was for, if known.
    #[serde(default)]
    pub host: Option<String>,
    /// Destination IP, if known.
    #[serde(default)]
    pub dst_ip: Option<IpAddr>,
    /// Destination port, if known.
    #[serde(default)]
    pub dst_port: Option<u16>,
}

/// `net_connect` event (DPM ConnectEvent): no source address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetConnect {
    /// The app that connected.
    pub app: AppRef,
    /// Destination IP.
    pub dst_ip: IpAddr,
    /// Destination port.
    pub dst_port: u16,
}

/// `dns_lookup` event (DPM DnsEvent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsLookup {
    /// The app that resolved the name.
    pub app: AppRef,
    /// The name looked up.
    pub hostname: String,
    /// Addresses the lookup returned (empty when not sent).
    #[serde(default)]
    pub resolved_ips: Vec<IpAddr>,
}

/// App lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppStateKind {
    /// `foreground`: the app is in front of the user.
    Foreground,
    /// `background`: the app went to the background.
    Background,
    /// `foreground_service`: a foreground service of the app runs.
    ForegroundService,
    /// `stopped`: the app stopped.
    Stopped,
}

impl AppStateKind {
    /// The feed's name of the state (`foreground_service`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            AppStateKind::Foreground => "foreground",
            AppStateKind::Background => "background",
            AppStateKind::ForegroundService => "foreground_service",
            AppStateKind::Stopped => "stopped",
        }
    }
}

/// `app_state` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppState {
    /// The app whose state changed.
    pub app: AppRef,
    /// Its new state.
    pub state: AppStateKind,
}

/// `device_state` event (snapshot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceState {
    /// `screen_interactive`: the screen is on and interactive; `None`: not sent.
    pub screen_interactive: Option<bool>,
    /// `device_locked`: the keyguard is up; `None`: not sent.
    pub device_locked: Option<bool>,
    /// `last_user_interaction_time`, ns since the Unix epoch; `None`: not sent.
    pub last_user_interaction_ns: Option<i64>,
}

/// What went wrong with a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProblemKind {
    /// Not JSON, not an object, a required field missing or ill-typed, an unknown enum value.
    #[error("malformed line")]
    Malformed,
    /// `schema_version` is a number other than [`SCHEMA_VERSION`].
    #[error("unsupported schema_version")]
    UnsupportedVersion,
    /// `event_type` is none of the v1 types.
    #[error("unknown event_type")]
    UnknownEventType,
    /// A time field is not an RFC 3339 string in range.
    #[error("bad timestamp")]
    BadTimestamp,
}

/// One recorded problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Line number as passed to [`FeedReader::push_line`].
    pub line_no: u64,
    /// Which counter the line went to.
    pub kind: ProblemKind,
    /// Short reason, cut at [`MAX_DETAIL_CHARS`] characters.
    pub detail: String,
}

/// Counters of a feed read. `lines = blank + events + malformed +
/// unsupported_version + unknown_event_type + bad_timestamp`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedReport {
    /// Every line pushed.
    pub lines: u64,
    /// Blank (whitespace-only) lines.
    pub blank: u64,
    /// Lines that gave an event.
    pub events: u64,
    /// Lines counted as [`ProblemKind::Malformed`].
    pub malformed: u64,
    /// Lines counted as [`ProblemKind::UnsupportedVersion`].
    pub unsupported_version: u64,
    /// Lines counted as [`ProblemKind::UnknownEventType`].
    pub unknown_event_type: u64,
    /// Lines counted as [`ProblemKind::BadTimestamp`].
    pub bad_timestamp: u64,
    /// First problems, in push order, capped.
    pub problems: Vec<Problem>,
    /// Problems not kept because the cap was reached.
    pub problems_dropped: u64,
}

/// Sans-IO line reader.
#[derive(Debug, Clone)]
pub struct FeedReader {
    report: FeedReport,
    max_problems: usize,
}

impl Default for FeedReader {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_PROBLEMS)
    }
}

struct LineError {
    kind: ProblemKind,
    detail: String,
}

/// Longest problem detail kept, in characters: a parser's message may
/// quote a value whole (serde quotes a mistyped string), and a line may be
/// 4 MiB, so 64 kept problems could otherwise hold 256 MiB.
pub const MAX_DETAIL_CHARS: usize = 256;

fn err(kind: ProblemKind, detail: impl Into<String>) -> LineError {
    let mut detail = detail.into();
    if let Some((cut, _)) = detail.char_indices().nth(MAX_DETAIL_CHARS) {
        detail.truncate(cut);
        detail.push('…');
        // `truncate` keeps the capacity: a kept problem would still hold
        // the whole quoted value (64 problems of 46 KB lines held 3 MB).
        detail.shrink_to_fit();
    }
    LineError { kind, detail }
}

impl FeedReader {
    /// A reader keeping at most `max_problems` problems with line numbers.
    pub fn new(max_problems: usize) -> Self {
        Self { report: FeedReport::default(), max_problems }
    }

    /// Parse one line. Returns the event, or `None` for a blank or bad line
    /// (which is counted in the report). Never panics, never fatal.
    pub fn push_line(&mut self, line: &str, line_no: u64) -> Option<Event> {
        self.report.lines += 1;
        let trimmed = line.trim();
        if trimmed.is_empty() {
            self.report.blank += 1;
            return None;
        }
        match parse_line(trimmed, line_no) {
            Ok(ev) => {
                self.report.events += 1;
                Some(ev)
            }
            Err(e) => {
                match e.kind {
                    ProblemKind::Malformed => self.report.malformed += 1,
                    ProblemKind::UnsupportedVersion => self.report.unsupported_version += 1,
                    ProblemKind::UnknownEventType => self.report.unknown_event_type += 1,
                    ProblemKind::BadTimestamp => self.report.bad_timestamp += 1,
                }
                if self.report.problems.len() < self.max_problems {
                    self.report.problems.push(Problem { line_no, kind: e.kind, detail: e.detail });
                } else {
                    self.report.problems_dropped += 1;
                }
                None
            }
        }
    }

    /// Counters so far.
    pub fn report(&self) -> &FeedReport {
        &self.report
    }

    /// Consume the reader, returning the report.
    pub fn into_report(self) -> FeedReport {
        self.report
    }
}

fn get_str<'a>(obj: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a str> {
    obj.get(key).and_then(Value::as_str)
}

fn req_time(obj: &serde_json::Map<String, Value>, key: &str) -> Result<i64, LineError> {
    match obj.get(key) {
        None | Some(Value::Null) => Err(err(ProblemKind::Malformed, format!("missing {key}"))),
        Some(Value::String(s)) => parse_rfc3339_ns(s).ok_or_else(|| err(ProblemKind::BadTimestamp, format!("{key}: {}", truncate(s)))),
        Some(_) => Err(err(ProblemKind::BadTimestamp, format!("{key}: not a string"))),
    }
}

fn opt_time(obj: &serde_json::Map<String, Value>, key: &str) -> Result<Option<i64>, LineError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => req_time(obj, key).map(Some),
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

fn payload<T: serde::de::DeserializeOwned>(v: Value, ty: &str) -> Result<T, LineError> {
    serde_json::from_value(v).map_err(|e| err(ProblemKind::Malformed, format!("{ty}: {e}")))
}

#[derive(Deserialize)]
struct RawBinding {
    action: BindingAction,
    ip: IpAddr,
    network: Network,
    confidence: Confidence,
    #[serde(default)]
    identity: Option<BindingIdentity>,
    #[serde(default)]
    prefix_len: Option<u8>,
}

fn parse_line(line: &str, line_no: u64) -> Result<Event, LineError> {
    let v: Value = serde_json::from_str(line).map_err(|e| err(ProblemKind::Malformed, format!("json: {e}")))?;
    let Value::Object(obj) = v else {
        return Err(err(ProblemKind::Malformed, "not a JSON object"));
    };
    match obj.get("schema_version") {
        Some(Value::Number(n)) if n.as_u64() == Some(SCHEMA_VERSION) => {}
        Some(Value::Number(n)) => return Err(err(ProblemKind::UnsupportedVersion, format!("schema_version {n}"))),
        Some(_) => return Err(err(ProblemKind::Malformed, "schema_version not a number")),
        None => return Err(err(ProblemKind::Malformed, "missing schema_version")),
    }
    let event_type = match obj.get("event_type") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err(err(ProblemKind::Malformed, "missing event_type")),
    };
    const KNOWN: [&str; 7] = ["ip_binding", "app_inventory", "app_tls_trust", "net_connect", "dns_lookup", "app_state", "device_state"];
    if !KNOWN.contains(&event_type.as_str()) {
        return Err(err(ProblemKind::UnknownEventType, truncate(&event_type)));
    }
    let event_time_ns = req_time(&obj, "event_time")?;
    let observed_time_ns = req_time(&obj, "observed_time")?;
    let event_id = get_str(&obj, "event_id").map(str::to_owned);
    let device_id = obj.get("device").and_then(|d| d.get("id")).and_then(Value::as_str).map(str::to_owned);
    let source = match obj.get("source") {
        None | Some(Value::Null) => None,
        Some(s) => Some(payload::<Source>(s.clone(), "source")?),
    };
    let body = match event_type.as_str() {
        "ip_binding" => {
            let valid_from_ns = opt_time(&obj, "valid_from")?;
            let valid_until_ns = opt_time(&obj, "valid_until")?;
            let raw: RawBinding = payload(Value::Object(obj), "ip_binding")?;
            if device_id.is_none() && matches!(raw.action, BindingAction::Assign | BindingAction::Renew) {
                return Err(err(ProblemKind::Malformed, "ip_binding assign/renew without device.id"));
            }
            EventBody::IpBinding(IpBinding {
                action: raw.action,
                ip: raw.ip,
                network: raw.network,
                valid_from_ns,
                valid_until_ns,
                confidence: raw.confidence,
                identity: raw.identity,
                prefix_len: raw.prefix_len,
            })
        }
        "app_inventory" => EventBody::AppInventory(payload(Value::Object(obj), "app_inventory")?),
        "app_tls_trust" => EventBody::AppTlsTrust(payload(Value::Object(obj), "app_tls_trust")?),
        "net_connect" => EventBody::NetConnect(payload(Value::Object(obj), "net_connect")?),
        "dns_lookup" => EventBody::DnsLookup(payload(Value::Object(obj), "dns_lookup")?),
        "app_state" => EventBody::AppState(payload(Value::Object(obj), "app_state")?),
        _ => {
            // device_state (the only remaining known type)
            let b = |k: &str| -> Result<Option<bool>, LineError> {
                match obj.get(k) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::Bool(b)) => Ok(Some(*b)),
                    Some(_) => Err(err(ProblemKind::Malformed, format!("{k}: not a bool"))),
                }
            };
            EventBody::DeviceState(DeviceState {
                screen_interactive: b("screen_interactive")?,
                device_locked: b("device_locked")?,
                last_user_interaction_ns: opt_time(&obj, "last_user_interaction_time")?,
            })
        }
    };
    Ok(Event { line_no, event_id, event_time_ns, observed_time_ns, device_id, source, body })
}

fn digits(b: &[u8]) -> Option<i64> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Parse an RFC 3339 date-time (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`) to ns
/// since the Unix epoch. Fractions beyond 9 digits are truncated; a leap second
/// (`:60`) is accepted and rolls into the next second. `None` if invalid or
/// outside the `i64` ns range.
pub fn parse_rfc3339_ns(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = digits(&b[11..13])?;
    let min = digits(&b[14..16])?;
    let sec = digits(&b[17..19])?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac_ns = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let f = &b[start..i];
        let mut scale = 100_000_000i64;
        for d in f.iter().take(9) {
            frac_ns += i64::from(d - b'0') * scale;
            scale /= 10;
        }
    }
    let offset_s = match b.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let oh = digits(&[*h1, *h2])?;
            let om = digits(&[*m1, *m2])?;
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if *sign == b'-' {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_s;
    secs.checked_mul(1_000_000_000)?.checked_add(frac_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_written_are_the_feed_names() {
        for c in [Confidence::SelfReported, Confidence::Dhcp, Confidence::Authenticated] {
            assert_eq!(serde_json::to_value(c).expect("json"), c.as_str());
        }
        for a in [AppStateKind::Foreground, AppStateKind::Background, AppStateKind::ForegroundService, AppStateKind::Stopped] {
            assert_eq!(serde_json::to_value(a).expect("json"), a.as_str());
        }
        assert_eq!(Confidence::SelfReported.as_str(), "self_reported");
        assert_eq!(AppStateKind::ForegroundService.as_str(), "foreground_service");
    }
    use proptest::prelude::*;

    fn line(body: &str) -> String {
        format!(
            r#"{{"schema_version":1,"event_time":"2026-08-21T09:13:58.120Z","observed_time":"2026-08-21T10:40:02Z","device":{{"id":"dev1"}},{body}}}"#
        )
    }

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339_ns("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339_ns("1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
        assert_eq!(parse_rfc3339_ns("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_rfc3339_ns("1969-12-31T23:00:00-01:00"), Some(0));
        assert_eq!(parse_rfc3339_ns("2000-03-01T00:00:00Z"), Some(951_868_800_000_000_000));
        assert_eq!(parse_rfc3339_ns("2026-08-21T09:13:58.123456789123Z"), Some(1_787_303_638_123_456_789));
        assert!(parse_rfc3339_ns("2024-02-29T00:00:00Z").is_some());
        for bad in [
            "2023-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:00:00",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T00:00:00+0100",
            "9999-01-01T00:00:00Z",
            "",
            "２０２６-01-01T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339_ns(bad), None, "{bad}");
        }
    }

    #[test]
    fn parses_every_type() {
        let lines = [
            r#""event_type":"ip_binding","action":"assign","ip":"10.44.3.17","network":{"context":"hq-wifi","kind":"wifi"},"valid_from":"2026-08-21T08:02:11Z","valid_until":"2026-08-21T16:02:11Z","source":{"kind":"dhcp"},"confidence":"dhcp","mac":"ignored""#,
            r#""event_type":"app_inventory","app":{"package":"com.example.bank","version_code":40213,"signing_cert_sha256":["aa"],"target_sdk":34,"trust_profile":{"nsc_pin_sets":[{"domains":["api.example.com"],"include_subdomains":true,"pins":["sha256/x"]}],"trusts_user_cas":false,"custom_trust_manager":true,"trust_all":false,"hostname_verifier_override":false,"okhttp_pinner":true},"expected_endpoints":["*.examplecdn.net"]}"#,
            r#""event_type":"app_tls_trust","app":{"package":"com.example.bank"},"trust_event":"pin_check_failed","host":"api.example.com","dst_ip":"203.0.113.5","dst_port":443"#,
            r#""event_type":"net_connect","app":{"package":"com.example.bank"},"dst_ip":"203.0.113.5","dst_port":443"#,
            r#""event_type":"dns_lookup","app":{"package":"com.example.bank"},"hostname":"api.example.com","resolved_ips":["203.0.113.5"]"#,
            r#""event_type":"app_state","app":{"package":"com.example.bank"},"state":"foreground_service""#,
            r#""event_type":"device_state","screen_interactive":false,"device_locked":true,"last_user_interaction_time":"2026-08-21T09:00:00Z""#,
        ];
        let mut r = FeedReader::default();
        for (i, l) in lines.iter().enumerate() {
            let ev = r.push_line(&line(l), i as u64 + 1).unwrap_or_else(|| panic!("{:?}", r.report()));
            assert_eq!(ev.line_no, i as u64 + 1);
            assert_eq!(ev.device_id.as_deref(), Some("dev1"));
        }
        assert_eq!(r.report().events, 7);
        let ev = r.push_line(&line(lines[1]), 9).expect("inv");
        let EventBody::AppInventory(inv) = ev.body else { panic!("type") };
        assert_eq!(inv.app.trust_profile.pin_sets[0].domains, vec!["api.example.com"]);
        assert_eq!(inv.app.trust_profile.okhttp_certificate_pinner, Some(true));
    }

    /// A kept problem holds its short detail, not the mistyped value it
    /// was cut from (found by the feed fuzz target: 64 kept problems of
    /// 46 KB lines held 3 MB).
    #[test]
    fn kept_problem_details_hold_no_more_than_their_text() {
        let mut r = FeedReader::new(DEFAULT_MAX_PROBLEMS);
        let big = "x".repeat(50_000);
        let bad = format!(
            r#"{{"schema_version":1,"event_type":"app_state","event_time":"2026-08-21T10:40:02Z","observed_time":"2026-08-21T10:40:02Z","source":"{big}","app":{{"package":"p"}},"state":"foreground"}}"#
        );
        for i in 0..100 {
            assert!(r.push_line(&bad, i + 1).is_none());
        }
        let rep = r.into_report();
        assert_eq!(rep.problems.len(), DEFAULT_MAX_PROBLEMS);
        let held: usize = rep.problems.iter().map(|p| p.detail.capacity()).sum();
        assert!(held <= DEFAULT_MAX_PROBLEMS * 4 * (MAX_DETAIL_CHARS + 1), "problem details hold {held} bytes");
    }

    #[test]
    fn problems_counted_with_line_numbers() {
        let mut r = FeedReader::new(3);
        assert!(r.push_line("", 1).is_none());
        assert!(r.push_line("{not json", 2).is_none());
        assert!(r.push_line(&line(r#""event_type":"mtd_threat""#), 3).is_none());
        assert!(r.push_line(&line(r#""event_type":"net_connect","app":{"package":"p"},"dst_ip":"1.2.3.4""#), 4).is_none());
        let bad_ts = r#"{"schema_version":1,"event_type":"app_state","event_time":"yesterday","observed_time":"2026-08-21T10:40:02Z","app":{"package":"p"},"state":"foreground"}"#;
        assert!(r.push_line(bad_ts, 5).is_none());
        assert!(r.push_line(r#"{"schema_version":2,"event_type":"app_state"}"#, 6).is_none());
        assert!(r.push_line("[1,2]", 7).is_none());
        let rep = r.into_report();
        assert_eq!(rep.lines, 7);
        assert_eq!(rep.blank, 1);
        assert_eq!(rep.malformed, 3);
        assert_eq!(rep.unknown_event_type, 1);
        assert_eq!(rep.bad_timestamp, 1);
        assert_eq!(rep.unsupported_version, 1);
        let kept: Vec<_> = rep.problems.iter().map(|p| (p.line_no, p.kind)).collect();
        assert_eq!(kept, vec![(2, ProblemKind::Malformed), (3, ProblemKind::UnknownEventType), (4, ProblemKind::Malformed)]);
        assert_eq!(rep.problems_dropped, 3);
    }

    #[test]
    fn feed_md_examples_parse() {
        let doc = include_str!("../FEED.md");
        let mut r = FeedReader::default();
        let mut types = Vec::new();
        for (i, l) in doc.lines().enumerate().filter(|(_, l)| l.starts_with("{\"schema_version\"")) {
            let ev = r.push_line(l, i as u64 + 1).unwrap_or_else(|| panic!("{:?}", r.report().problems));
            types.push(ev.event_type());
        }
        assert_eq!(types.len(), 7, "{types:?}");
    }

    proptest! {
        #[test]
        fn random_lines_never_panic(s in ".{0,300}") {
            let mut r = FeedReader::new(2);
            let _ = r.push_line(&s, 1);
            prop_assert_eq!(r.report().lines, 1);
        }

        #[test]
        fn mutated_valid_lines_never_panic(pos in 0usize..400, ch in any::<char>(), cut in 0usize..400) {
            let base = line(r#""event_type":"ip_binding","action":"assign","ip":"10.0.0.1","network":{"context":"c"},"valid_from":"2026-08-21T08:02:11Z","confidence":"dhcp""#);
            let mut chars: Vec<char> = base.chars().collect();
            let p = pos.min(chars.len());
            chars.insert(p, ch);
            let c = cut.min(chars.len());
            let s: String = chars[..c].iter().chain(chars[c..].iter().skip(1)).collect();
            let mut r = FeedReader::default();
            let _ = r.push_line(&s, 1);
            let _ = parse_rfc3339_ns(&s);
        }
    }

    #[test]
    fn a_problem_detail_does_not_quote_a_long_value_whole() {
        // Found by the `feed` fuzz target: serde's message quoted a
        // mistyped string whole, so each of the 64 kept problems could hold
        // a whole line.
        let long = "x".repeat(100_000);
        let line = format!(
            r#"{{"schema_version":1,"event_type":"ip_binding","event_time":"2026-01-01T00:00:00Z","observed_time":"2026-01-01T00:00:00Z","device":{{"id":"d"}},"action":"{long}","ip":"10.0.0.1","network":{{"kind":"wifi","context":"c"}}}}"#
        );
        let mut r = FeedReader::default();
        assert!(r.push_line(&line, 1).is_none(), "an unknown action is a bad line");
        let p = &r.report().problems[0];
        assert!(p.detail.chars().count() <= MAX_DETAIL_CHARS + 1, "{} chars", p.detail.chars().count());
        assert!(p.detail.ends_with('…'), "{}", p.detail);
    }
}

//! Target `certificate`: [`parse_certificate`], the X.509 summary written
//! in `tls` records.
//!
//! A case is DER bytes. Mutations parse the DER into its tree of TLVs and
//! change one node — a primitive's content (random bytes, cut, lengthened,
//! times at the ends of the calendar, huge integers, invalid UTF-8 in
//! strings), a tag, a child dropped, duplicated or moved — and write the
//! tree back with every enclosing length right, so the parser gets past
//! the framing to the field it reads; sometimes bytes are then changed
//! anywhere.
//!
//! Checks: no panic; a summary serialises to a JSON object that parses
//! back, its SHA-256 is 64 hex digits, its times are
//! `YYYY-MM-DDTHH:MM:SS`; heap at most 64 times the input plus 256 KiB.

use pinwatch_parsers::cert::parse_certificate;

use super::alloc::measure;
use super::{havoc, Rng, Target};

pub struct Certificate;

/// One TLV: its tag bytes and either its content or its children.
#[derive(Debug, Clone)]
enum Node {
    Prim(Vec<u8>, Vec<u8>),
    Cons(Vec<u8>, Vec<Node>),
}

/// Parse DER into nodes (`None` when the framing is not DER).
fn parse(mut b: &[u8], depth: usize) -> Option<Vec<Node>> {
    let mut v = Vec::new();
    while !b.is_empty() {
        let t0 = *b.first()?;
        let mut i = 1;
        if t0 & 0x1f == 0x1f {
            while *b.get(i)? & 0x80 != 0 {
                i += 1;
            }
            i += 1;
        }
        let tag = b[..i].to_vec();
        let l0 = *b.get(i)?;
        i += 1;
        let len = if l0 < 0x80 {
            usize::from(l0)
        } else {
            let n = usize::from(l0 & 0x7f);
            if n == 0 || n > 4 {
                return None;
            }
            let mut l = 0usize;
            for k in 0..n {
                l = l << 8 | usize::from(*b.get(i + k)?);
            }
            i += n;
            l
        };
        let content = b.get(i..i.checked_add(len)?)?;
        let constructed = t0 & 0x20 != 0;
        v.push(if constructed && depth < 32 {
            match parse(content, depth + 1) {
                Some(ch) => Node::Cons(tag, ch),
                None => Node::Prim(tag, content.to_vec()),
            }
        } else {
            Node::Prim(tag, content.to_vec())
        });
        b = &b[i + len..];
    }
    Some(v)
}

fn write_len(v: &mut Vec<u8>, n: usize) {
    if n < 0x80 {
        v.push(n as u8);
    } else {
        let bytes = (n as u32).to_be_bytes();
        let skip = bytes.iter().take_while(|&&x| x == 0).count();
        v.push(0x80 | (4 - skip) as u8);
        v.extend(&bytes[skip..]);
    }
}

fn write(nodes: &[Node], v: &mut Vec<u8>) {
    for n in nodes {
        match n {
            Node::Prim(t, c) => {
                v.extend(t);
                write_len(v, c.len());
                v.extend(c);
            }
            Node::Cons(t, ch) => {
                let mut inner = Vec::new();
                write(ch, &mut inner);
                v.extend(t);
                write_len(v, inner.len());
                v.extend(inner);
            }
        }
    }
}

/// Count nodes, so one can be picked uniformly.
fn count(nodes: &[Node]) -> usize {
    nodes.iter().map(|n| 1 + if let Node::Cons(_, ch) = n { count(ch) } else { 0 }).sum()
}

/// Apply `f` to the `k`-th node (pre-order) and its siblings' list.
fn with_nth(nodes: &mut Vec<Node>, k: &mut usize, f: &mut dyn FnMut(&mut Vec<Node>, usize)) -> bool {
    for i in 0..nodes.len() {
        if *k == 0 {
            f(nodes, i);
            return true;
        }
        *k -= 1;
        if let Node::Cons(_, ch) = &mut nodes[i] {
            if with_nth(ch, k, f) {
                return true;
            }
        }
    }
    false
}

fn mutate_node(list: &mut Vec<Node>, i: usize, rng: &mut Rng) {
    match rng.below(8) {
        0 if list.len() > 1 => {
            list.remove(i);
        }
        1 => {
            let n = list[i].clone();
            list.insert(i, n);
        }
        2 if list.len() > 1 => {
            let j = rng.below(list.len());
            list.swap(i, j);
        }
        3 => {
            let t =
                [0x01u8, 0x02, 0x03, 0x04, 0x05, 0x06, 0x0c, 0x13, 0x16, 0x17, 0x18, 0x1e, 0x30, 0x31, 0xa0, 0xa3, 0x80, 0x87, 0x82, 0x1f]
                    [rng.below(20)];
            match &mut list[i] {
                Node::Prim(tag, _) | Node::Cons(tag, _) => *tag = vec![t],
            }
            if t & 0x20 == 0 {
                if let Node::Cons(tag, ch) = &list[i] {
                    let mut c = Vec::new();
                    write(ch, &mut c);
                    list[i] = Node::Prim(tag.clone(), c);
                }
            }
        }
        _ => {
            if let Node::Prim(tag, c) = &mut list[i] {
                *c = match rng.below(9) {
                    0 => Vec::new(),
                    1 => b"99991231235959Z".to_vec(),
                    2 => b"000101000000Z".to_vec(),
                    3 => b"20240230256161+9999".to_vec(),
                    4 => vec![0xff; 1 + rng.below(300)],
                    5 => vec![0xc3, 0x28, 0xa0, 0xa1, 0xf0, 0x90, 0x28, 0xbc],
                    6 => {
                        let mut x = c.clone();
                        x.truncate(rng.below(x.len() + 1));
                        x
                    }
                    7 => {
                        // An OID with huge arcs.
                        let mut x = vec![0x2a];
                        x.extend(std::iter::repeat_n(0xff, rng.below(40)));
                        x.push(0x7f);
                        x
                    }
                    _ => {
                        let mut x = c.clone();
                        havoc(&mut x, rng);
                        x
                    }
                };
                let _ = tag;
            } else if let Node::Cons(_, ch) = &mut list[i] {
                ch.clear();
            }
        }
    }
}

impl Target for Certificate {
    fn name(&self) -> &'static str {
        "certificate"
    }
    fn ext(&self) -> &'static str {
        "der"
    }
    fn seeds(&self) -> Vec<Vec<u8>> {
        let mut v = super::seeds::material().certs.clone();
        // The PEM files in pcaps/.
        for p in super::files_in(&crate::corpus::workspace_root().join("pcaps")) {
            if p.extension().is_some_and(|x| x == "pem") {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                let mut b64 = String::new();
                let mut inside = false;
                for line in text.lines() {
                    if line.starts_with("-----BEGIN CERTIFICATE") {
                        inside = true;
                        b64.clear();
                    } else if line.starts_with("-----END CERTIFICATE") {
                        inside = false;
                        if let Ok(d) = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &b64) {
                            v.push(d);
                        }
                    } else if inside {
                        b64.push_str(line.trim());
                    }
                }
            }
        }
        v
    }
    fn mutate(&self, seed: &[u8], _all: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
        let mut out = Vec::new();
        match parse(seed, 0) {
            Some(mut nodes) if !nodes.is_empty() => {
                for _ in 0..1 + rng.below(3) {
                    let n = count(&nodes);
                    let mut k = rng.below(n);
                    with_nth(&mut nodes, &mut k, &mut |list, i| mutate_node(list, i, rng));
                }
                write(&nodes, &mut out);
            }
            _ => out = seed.to_vec(),
        }
        if rng.chance(4) {
            havoc(&mut out, rng);
        }
        out
    }
    fn check(&self, case: &[u8]) -> Result<(), String> {
        let (r, peak) = measure(|| parse_certificate(case));
        let cap = 64 * case.len() as u64 + (256 << 10);
        if peak > cap {
            return Err(format!("heap peak {peak} B > {cap} B for {} B of DER", case.len()));
        }
        let Ok(c) = r else { return Ok(()) };
        if c.sha256.len() != 64 || !c.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("sha256 {:?}", c.sha256));
        }
        for t in [&c.notbefore, &c.notafter] {
            let b = t.as_bytes();
            let shape = b.len() == 19
                && b.iter().enumerate().all(|(i, &x)| match i {
                    4 | 7 => x == b'-',
                    10 => x == b'T',
                    13 | 16 => x == b':',
                    _ => x.is_ascii_digit(),
                });
            if !shape {
                return Err(format!("time {t:?} is not YYYY-MM-DDTHH:MM:SS"));
            }
        }
        let j = serde_json::to_string(&c).map_err(|e| format!("serialise: {e}"))?;
        let v: serde_json::Value = serde_json::from_str(&j).map_err(|e| format!("summary JSON does not parse back: {e}"))?;
        if !v.is_object() {
            return Err("summary is not a JSON object".into());
        }
        Ok(())
    }
}

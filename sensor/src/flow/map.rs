//! The flow table's map from flow key to flow, built to be asked for a
//! flow's cache lines *before* the flow is needed.
//!
//! On an egress tap the packet bytes stream through the caches at memory
//! speed and push the flow table out of them, so a plain lookup costs two or
//! three cache misses per packet (bucket, key, the flow's counters), one
//! after the other. A thread of a chunked replay ([`crate::run::sharded`]) knows
//! the packets it will process next, already hashed: it asks for a
//! packet's slot ([`FlowMap::prefetch_slot`]) a few packets ahead and for
//! its flow's first cache lines ([`FlowMap::prefetch_flow`]) half as far
//! ahead, so the misses of consecutive packets overlap instead of adding
//! up (criterion `flow_table/bulk_packet_100k_flows_prefetched`: 43 ns a
//! packet against 90). std's map (hashbrown) offers no way to touch a
//! bucket before probing it, hence this map.
//!
//! # Contract
//!
//! * Open addressing with linear probing over a power-of-two array of
//!   16-byte slots (the full 64-bit hash and the boxed flow), at most half
//!   full: it doubles when an insert would pass half. Deletion shifts the
//!   following slots back (no tombstones), so a probe stops at the first
//!   empty slot.
//! * The hash is aHash, keyed per process: crafted tuples cannot aim every
//!   flow at one run of slots. The key is always compared in full; the hash
//!   only decides where to look.
//! * Prefetching is a hint: it has no effect on what any call returns.
//! * Nothing iterates the map in an order that reaches the output.

use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;

use crate::flow::key::FlowKey;

/// What the map holds: a value that knows its own key, and whose first
/// `FLOW_LINES` cache lines are the ones a packet touches first.
pub trait Keyed {
    /// The key the value is stored under.
    fn key(&self) -> &FlowKey;
}

/// Cache lines of a flow asked for ahead of its packet: the counters, times,
/// close state and key that every packet reads or writes (see the field
/// order of `crate::flow::Flow`).
const FLOW_LINES: usize = 4;

struct Slot<V> {
    hash: u64,
    flow: Option<Box<V>>,
}

impl<V> Slot<V> {
    const EMPTY: Slot<V> = Slot { hash: 0, flow: None };
}

/// Open-addressing hash map from [`FlowKey`] to boxed flows, probed linearly;
/// callers pass each key's hash in so it is computed once a packet.
pub struct FlowMap<V> {
    slots: Vec<Slot<V>>,
    len: usize,
    hasher: ahash::RandomState,
}

impl<V: Keyed> Default for FlowMap<V> {
    fn default() -> Self {
        Self::with_hasher(ahash::RandomState::new())
    }
}

impl<V> std::fmt::Debug for FlowMap<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowMap").field("len", &self.len).field("slots", &self.slots.len()).finish()
    }
}

/// Ask the CPU to start loading the cache line at `p`. A hint only: no
/// architectural effect, cannot fault, whatever `p` is.
#[inline(always)]
#[allow(unsafe_code)]
pub(crate) fn prefetch_line<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` never dereferences architecturally and cannot
    // fault, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// The hash a map with `hasher` gives a key: the key in three wide words
/// (the derived `Hash` of `FlowKey`, which flow ids are made from, takes a
/// dozen small ones). Threads that share a hasher hash for each other's maps
/// with it.
#[inline]
pub fn key_hash(hasher: &ahash::RandomState, key: &FlowKey) -> u64 {
    let wide = |a: IpAddr| match a {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    };
    let mut h = hasher.build_hasher();
    h.write_u128(wide(key.lo.0));
    h.write_u128(wide(key.hi.0));
    h.write_u64(key.context ^ (u64::from(key.proto) << 32) ^ (u64::from(key.lo.1) << 16) ^ u64::from(key.hi.1));
    h.finish()
}

impl<V: Keyed> FlowMap<V> {
    /// A map whose [`FlowMap::hash`] is `hasher`'s: maps made with clones
    /// of one hasher give a key the same hash, so one thread can hash for
    /// another ([`crate::run::sharded`]).
    pub fn with_hasher(hasher: ahash::RandomState) -> Self {
        FlowMap { slots: Self::empty_slots(16), len: 0, hasher }
    }

    fn empty_slots(n: usize) -> Vec<Slot<V>> {
        let mut v = Vec::with_capacity(n);
        v.resize_with(n, || Slot::EMPTY);
        v
    }

    #[inline(always)]
    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// The hash of a key in this map ([`key_hash`] with its hasher).
    #[inline]
    pub fn hash(&self, key: &FlowKey) -> u64 {
        key_hash(&self.hasher, key)
    }

    /// Start loading the slot where a probe for `hash` begins.
    #[inline(always)]
    pub fn prefetch_slot(&self, hash: u64) {
        let i = hash as usize & self.mask();
        if let Some(s) = self.slots.get(i) {
            prefetch_line(s);
        }
    }

    /// Start loading the first cache lines of the flow a probe for `hash`
    /// would try first (reads the slot, which [`FlowMap::prefetch_slot`]
    /// should have asked for earlier).
    #[inline(always)]
    pub fn prefetch_flow(&self, hash: u64) {
        let mask = self.mask();
        let mut i = hash as usize & mask;
        // The first few slots of the run: a longer probe is rare at half load.
        for _ in 0..4 {
            let Some(s) = self.slots.get(i) else { return };
            match &s.flow {
                None => return,
                Some(f) if s.hash == hash => {
                    let p: *const V = &**f;
                    for line in 0..FLOW_LINES {
                        prefetch_line(p.cast::<u8>().wrapping_add(line * 64));
                    }
                    return;
                }
                Some(_) => i = (i + 1) & mask,
            }
        }
    }

    /// The slot holding `key`, if any.
    #[inline]
    fn find(&self, hash: u64, key: &FlowKey) -> Option<usize> {
        let mask = self.mask();
        let mut i = hash as usize & mask;
        loop {
            let s = self.slots.get(i)?;
            match &s.flow {
                None => return None,
                Some(f) if s.hash == hash && f.key() == key => return Some(i),
                Some(_) => i = (i + 1) & mask,
            }
        }
    }

    /// Number of flows held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no flow is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The flow with this key (`hash` is the key's hash).
    pub fn get(&self, hash: u64, key: &FlowKey) -> Option<&V> {
        let i = self.find(hash, key)?;
        self.slots.get(i)?.flow.as_deref()
    }

    /// The flow with this key, mutable (`hash` is the key's hash).
    pub fn get_mut(&mut self, hash: u64, key: &FlowKey) -> Option<&mut V> {
        let i = self.find(hash, key)?;
        self.slots.get_mut(i)?.flow.as_deref_mut()
    }

    /// True when a flow with this key is held (`hash` is the key's hash).
    pub fn contains(&self, hash: u64, key: &FlowKey) -> bool {
        self.find(hash, key).is_some()
    }

    /// Insert a flow whose key is not in the map (`hash` is its key's hash).
    pub fn insert(&mut self, hash: u64, flow: Box<V>) {
        debug_assert!(self.find(hash, flow.key()).is_none(), "insert of a key already present");
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        self.place(hash, flow);
        self.len += 1;
    }

    /// Put a flow in the first empty slot of its run (the map has room).
    fn place(&mut self, hash: u64, flow: Box<V>) {
        let mask = self.mask();
        let mut i = hash as usize & mask;
        while let Some(s) = self.slots.get_mut(i) {
            if s.flow.is_none() {
                *s = Slot { hash, flow: Some(flow) };
                return;
            }
            i = (i + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let bigger = Self::empty_slots(self.slots.len() * 2);
        let old = std::mem::replace(&mut self.slots, bigger);
        for s in old {
            if let Some(f) = s.flow {
                self.place(s.hash, f);
            }
        }
    }

    /// Remove and return the flow of `key`, shifting the rest of its run
    /// back so that no probe stops early.
    pub fn remove(&mut self, hash: u64, key: &FlowKey) -> Option<Box<V>> {
        let mask = self.mask();
        let mut hole = self.find(hash, key)?;
        let flow = self.slots.get_mut(hole)?.flow.take();
        self.len -= 1;
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let Some(s) = self.slots.get(j) else { break };
            if s.flow.is_none() {
                break;
            }
            // The slot at `j` may move back into the hole unless its home
            // lies cyclically in (hole, j].
            let home = s.hash as usize & mask;
            let stays = if hole <= j { hole < home && home <= j } else { hole < home || home <= j };
            if !stays {
                let moved = std::mem::replace(&mut self.slots[j], Slot::EMPTY);
                self.slots[hole] = moved;
                hole = j;
            }
        }
        flow
    }

    /// Take every flow out (in no particular order).
    pub fn drain(&mut self) -> Vec<Box<V>> {
        self.len = 0;
        let slots = std::mem::replace(&mut self.slots, Self::empty_slots(16));
        slots.into_iter().filter_map(|s| s.flow).collect()
    }

    /// Every flow, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.slots.iter().filter_map(|s| s.flow.as_deref())
    }

    /// Bytes of the slot array (for the memory figures per tracked flow).
    pub fn slot_bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<Slot<V>>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::tests::flow_with_key;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn key(n: u16, ctx: u64) -> FlowKey {
        FlowKey { context: ctx, proto: 6, lo: (IpAddr::from([10, 0, 0, (n % 7) as u8]), n), hi: (IpAddr::from([192, 0, 2, 1]), 443) }
    }

    #[test]
    fn slots_are_sixteen_bytes() {
        assert_eq!(std::mem::size_of::<Slot<crate::flow::Flow>>(), 16);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u16, u64),
        Remove(u16, u64),
        Get(u16, u64),
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        // Few distinct keys, so that inserts, removes and lookups collide.
        let k = (0u16..200, 0u64..2);
        prop::collection::vec(
            prop_oneof![
                k.clone().prop_map(|(n, c)| Op::Insert(n, c)),
                k.clone().prop_map(|(n, c)| Op::Remove(n, c)),
                k.prop_map(|(n, c)| Op::Get(n, c)),
            ],
            0..2000,
        )
    }

    proptest! {
        /// The map against std's HashMap (the obviously correct model).
        #[test]
        fn agrees_with_a_std_hashmap(ops in ops(), bits in 1u32..6, high in any::<bool>()) {
            let mut m: FlowMap<crate::flow::Flow> = FlowMap::default();
            let mut model: HashMap<FlowKey, u64> = HashMap::new();
            // Homes in the first (or, `high`, the last) 2^bits slots, so
            // that runs are long and, at the end, wrap around.
            let few = (1u64 << bits) - 1;
            let h = |m: &FlowMap<crate::flow::Flow>, k: &FlowKey| if high { m.hash(k) | !few } else { m.hash(k) & few };
            for (step, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Insert(n, c) => {
                        let k = key(n, c);
                        let hk = h(&m, &k);
                        if let std::collections::hash_map::Entry::Vacant(v) = model.entry(k) {
                            let mut f = flow_with_key(k);
                            f.flow_id = step as u64;
                            m.insert(hk, f);
                            v.insert(step as u64);
                        }
                    }
                    Op::Remove(n, c) => {
                        let k = key(n, c);
                        let hk = h(&m, &k);
                        let got = m.remove(hk, &k).map(|f| f.flow_id);
                        prop_assert_eq!(got, model.remove(&k));
                    }
                    Op::Get(n, c) => {
                        let k = key(n, c);
                        let hk = h(&m, &k);
                        prop_assert_eq!(m.get(hk, &k).map(|f| f.flow_id), model.get(&k).copied());
                        prop_assert_eq!(m.get_mut(hk, &k).map(|f| f.flow_id), model.get(&k).copied());
                    }
                }
                prop_assert_eq!(m.len(), model.len());
            }
            // Every remaining key is still found, and nothing else is there.
            for (k, id) in &model {
                prop_assert_eq!(m.get(h(&m, k), k).map(|f| f.flow_id), Some(*id));
            }
            let mut ids: Vec<u64> = m.drain().into_iter().map(|f| f.flow_id).collect();
            ids.sort_unstable();
            let mut want: Vec<u64> = model.values().copied().collect();
            want.sort_unstable();
            prop_assert_eq!(ids, want);
            prop_assert!(m.is_empty());
        }
    }

    #[test]
    fn grows_past_half_load_and_finds_everything() {
        let mut m: FlowMap<crate::flow::Flow> = FlowMap::default();
        for n in 0..5000u16 {
            let k = key(n, u64::from(n % 3));
            let h = m.hash(&k);
            m.insert(h, flow_with_key(k));
            assert!(m.len() * 2 <= m.slots.len());
        }
        for n in 0..5000u16 {
            let k = key(n, u64::from(n % 3));
            assert!(m.contains(m.hash(&k), &k), "{n}");
        }
        assert!(!m.contains(m.hash(&key(1, 9)), &key(1, 9)));
        // Prefetching is only a hint: asking for anything is harmless.
        for n in 0..100u16 {
            let h = m.hash(&key(n, 0));
            m.prefetch_slot(h);
            m.prefetch_flow(h);
            m.prefetch_flow(h.wrapping_add(1));
        }
    }
}

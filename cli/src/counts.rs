//! Bounded counting, for summaries over any number of records: how many distinct processes
//! (exact up to [`EXACT`], then estimated), and how often each name was seen (at most
//! [`MAX_NAMES`] names kept, the rest counted together).

use crate::tree::Proc;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashSet};

pub const MAX_NAMES: usize = 64;
pub const EXACT: usize = 4096;

/// `1 event`, `1,204 events`.
pub fn count(n: u64, one: &str, many: &str) -> String {
    let digits = n.to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{grouped} {}", if n == 1 { one } else { many })
}

/// Names and how often each was seen; at most [`MAX_NAMES`] names, the rest counted together.
#[derive(Default)]
pub struct Counter {
    names: BTreeMap<String, u64>,
    others: u64,
    pub total: u64,
}

impl Counter {
    pub fn add(&mut self, name: String) {
        self.add_n(name, 1);
    }

    pub fn add_n(&mut self, name: String, n: u64) {
        self.total += n;
        if let Some(c) = self.names.get_mut(&name) {
            *c += n;
        } else if self.names.len() < MAX_NAMES {
            self.names.insert(name, n);
        } else {
            self.others += n;
        }
    }

    pub fn merge(&mut self, other: Counter) {
        for (name, n) in other.names {
            self.add_n(name, n);
        }
        self.others += other.others;
        self.total += other.others;
    }

    pub fn top(&self) -> Vec<(&String, u64)> {
        let mut v: Vec<(&String, u64)> = self.names.iter().map(|(k, &n)| (k, n)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        v
    }

    /// `a`, or `a 3, b 1` (the `most` most frequent, then how many others).
    pub fn names(&self, most: usize) -> String {
        self.names_with("", most)
    }

    pub fn names_with(&self, suffix: &str, most: usize) -> String {
        let top = self.top();
        let mut parts: Vec<String> = if top.len() == 1 && self.others == 0 {
            vec![format!("{}{suffix}", top[0].0)]
        } else {
            top.iter()
                .take(most)
                .map(|(k, n)| format!("{k}{suffix} {n}"))
                .collect()
        };
        let rest: u64 = top.iter().skip(most).map(|(_, n)| n).sum::<u64>() + self.others;
        if rest > 0 {
            parts.push(format!("others {rest}"));
        }
        parts.join(", ")
    }

    pub fn json(&self) -> Value {
        let mut m: Map<String, Value> = self
            .top()
            .into_iter()
            .map(|(k, n)| (k.clone(), n.into()))
            .collect();
        if self.others > 0 {
            m.insert("(others)".into(), self.others.into());
        }
        Value::Object(m)
    }
}

/// A count of distinct processes: exact up to [`EXACT`], then a HyperLogLog estimate (4,096
/// one-byte registers; standard error 1.04/sqrt(4096), about 1.6 %).
#[derive(Default)]
pub struct Distinct {
    exact: HashSet<Proc>,
    registers: Option<Box<[u8; 4096]>>,
}

impl Distinct {
    /// Adds `p`; true if it was not seen before (always true once estimating).
    pub fn insert(&mut self, p: Proc) -> bool {
        if let Some(r) = &mut self.registers {
            observe(r, p);
            return true;
        }
        let new = self.exact.insert(p);
        if self.exact.len() > EXACT {
            let mut r = Box::new([0u8; 4096]);
            for &q in &self.exact {
                observe(&mut r, q);
            }
            self.exact = HashSet::new();
            self.registers = Some(r);
        }
        new
    }

    pub fn merge(&mut self, other: &Distinct) {
        match &other.registers {
            None => {
                for &p in &other.exact {
                    self.insert(p);
                }
            }
            Some(theirs) => {
                if self.registers.is_none() {
                    let mut r = Box::new([0u8; 4096]);
                    for &q in &self.exact {
                        observe(&mut r, q);
                    }
                    self.exact = HashSet::new();
                    self.registers = Some(r);
                }
                if let Some(mine) = &mut self.registers {
                    for (m, t) in mine.iter_mut().zip(theirs.iter()) {
                        *m = (*m).max(*t);
                    }
                }
            }
        }
    }

    /// The count, and whether it is an estimate.
    pub fn count(&self) -> (u64, bool) {
        let Some(r) = &self.registers else {
            return (self.exact.len() as u64, false);
        };
        let m = r.len() as f64;
        let sum: f64 = r.iter().map(|&x| 2f64.powi(-i32::from(x))).sum();
        let zeros = r.iter().filter(|&&x| x == 0).count();
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let mut e = alpha * m * m / sum;
        if e <= 2.5 * m && zeros > 0 {
            e = m * (m / zeros as f64).ln();
        }
        (e.round() as u64, true)
    }
}

fn observe(r: &mut [u8; 4096], p: Proc) {
    let h = mix(u64::from(p.0).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ p.1 as u64);
    let index = (h >> 52) as usize;
    let rank = ((h << 12) | (1 << 11)).leading_zeros() as u8 + 1;
    if let Some(slot) = r.get_mut(index) {
        *slot = (*slot).max(rank);
    }
}

/// A 64-bit finalizer (splitmix64's): spreads nearby pids over all bits.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_counts_are_exact_then_estimated_within_a_few_percent() {
        let mut d = Distinct::default();
        for pid in 0..EXACT as i64 {
            d.insert((1, pid));
            d.insert((1, pid));
        }
        assert_eq!(d.count(), (EXACT as u64, false));
        for n in [10_000u64, 200_000] {
            let mut d = Distinct::default();
            for pid in 0..n as i64 {
                d.insert((1 + (pid % 3) as u32, pid));
            }
            let (est, about) = d.count();
            assert!(about);
            let err = (est as f64 - n as f64).abs() / n as f64;
            assert!(err < 0.05, "{n}: {est}");
        }
    }

    #[test]
    fn counters_keep_their_first_names_and_count_the_rest() {
        let mut k = Counter::default();
        for i in 0..1000 {
            k.add(format!("p{i}"));
        }
        assert_eq!(k.names.len(), MAX_NAMES);
        assert_eq!(k.total, 1000);
        assert!(k.names(2).ends_with(&format!("others {}", 1000 - 2)));
    }

    #[test]
    fn counts_read_well() {
        assert_eq!(count(1, "event", "events"), "1 event");
        assert_eq!(count(1204, "event", "events"), "1,204 events");
        assert_eq!(count(1_000_000, "x", "xs"), "1,000,000 xs");
    }
}

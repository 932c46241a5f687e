//! A removal and an addition of the same thing are one move: the one
//! mechanism behind move detection in the index (`pipeline::moves`: same
//! bytes) and in the knowledge base (`publish::plan`: same text).

use std::collections::HashMap;
use std::hash::Hash;

/// Removals waiting for the addition each may be, by a key both share (a
/// cheap one, such as the size, when the real test is costly: see [`take`]).
///
/// [`take`]: Pairing::take
pub struct Pairing<K> {
    gone: HashMap<K, Vec<usize>>,
}

impl<K: Hash + Eq> Pairing<K> {
    /// The removals that may pair, as (key, index into the caller's list).
    pub fn new(gone: impl IntoIterator<Item = (K, usize)>) -> Self {
        let mut map: HashMap<K, Vec<usize>> = HashMap::new();
        for (key, i) in gone {
            map.entry(key).or_default().push(i);
        }
        Pairing { gone: map }
    }

    pub fn is_empty(&self) -> bool {
        self.gone.is_empty()
    }

    /// Whether some removal has `key` (so the costly test is worth making).
    pub fn may_pair(&self, key: &K) -> bool {
        self.gone.get(key).is_some_and(|v| !v.is_empty())
    }

    /// The removal an addition with `key` is — the last one with that key
    /// that `same` accepts — taken, so that each pairs once.
    pub fn take(&mut self, key: &K, same: impl Fn(usize) -> bool) -> Option<usize> {
        let slots = self.gone.get_mut(key)?;
        let at = slots.iter().rposition(|&i| same(i))?;
        Some(slots.remove(at))
    }
}

/// Take the items at `indexes` (distinct, any order) out of `items`, returned
/// in the order of `indexes`; the rest keep their order.
pub fn take_at<T>(items: &mut Vec<T>, indexes: &[usize]) -> Vec<T> {
    let mut slots: Vec<Option<T>> = std::mem::take(items).into_iter().map(Some).collect();
    let taken = indexes
        .iter()
        .map(|&i| slots[i].take().expect("each index taken once"))
        .collect();
    *items = slots.into_iter().flatten().collect();
    taken
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_removal_pairs_once_and_only_when_accepted() {
        // Removals: a (size 3), b (size 3), c (size 5).
        let gone = [("a", 3u64), ("b", 3), ("c", 5)];
        let mut p = Pairing::new(gone.iter().enumerate().map(|(i, (_, s))| (*s, i)));
        assert!(p.may_pair(&3) && !p.may_pair(&4));
        // The costly test says only `a` is the same.
        assert_eq!(p.take(&3, |i| gone[i].0 == "a"), Some(0));
        assert_eq!(p.take(&3, |i| gone[i].0 == "a"), None, "a is taken");
        assert_eq!(p.take(&3, |_| true), Some(1));
        assert!(!p.may_pair(&3));
        assert_eq!(p.take(&7, |_| true), None);
    }

    #[test]
    fn taking_keeps_the_order_of_the_rest() {
        let mut v = vec!['a', 'b', 'c', 'd', 'e'];
        assert_eq!(take_at(&mut v, &[3, 1]), vec!['d', 'b']);
        assert_eq!(v, vec!['a', 'c', 'e']);
    }
}

//! A tiny deterministic PRNG (splitmix64) so the generated data set is a pure function of `--seed`.
//!
//! Not for anything secret: the tokens the sandbox mints only need to be unguessable by accident.

/// splitmix64: fast, tiny, and good enough to make varied-looking test data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator whose whole output is determined by `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// A number in `lo..=hi` (`lo` when the range is empty).
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        let span = hi.abs_diff(lo).saturating_add(1);
        lo.wrapping_add_unsigned(self.below(span))
    }

    /// A number in `lo..=hi` (`lo` when the range is empty): [`Rng::range`] for ids and counts, the same draw.
    pub fn range_u64(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.below(hi - lo + 1)
    }

    /// A number in `0..n` (0 when `n <= 0`): [`Rng::below`] for signed spans such as seconds, the same draw.
    pub fn below_i64(&mut self, n: i64) -> i64 {
        let drawn = self.below(n.max(0).unsigned_abs());
        // drawn < n <= i64::MAX, so the conversion never fails.
        i64::try_from(drawn).unwrap_or(i64::MAX)
    }

    /// A float in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// An index into a collection of `len` items (0 when empty; callers only pass non-empty lengths).
    pub fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    /// `n` random bytes as lowercase hex.
    pub fn hex(&mut self, n: usize) -> String {
        let mut out = String::with_capacity(n * 2);
        while out.len() < n * 2 {
            out.push_str(&format!("{:016x}", self.next_u64()));
        }
        out.truncate(n * 2);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_ranges_hold() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
            let r = a.range(-3, 3);
            assert!((-3..=3).contains(&r));
            b.range(-3, 3);
        }
        assert_eq!(a.hex(16).len(), 32);
        assert_eq!(Rng::new(1).range(5, 5), 5);
    }

    #[test]
    fn the_unsigned_and_signed_helpers_draw_what_range_and_below_draw() {
        let (mut a, mut b) = (Rng::new(11), Rng::new(11));
        for _ in 0..1000 {
            assert_eq!(a.range_u64(1, 2500), u64::try_from(b.range(1, 2500)).expect("positive"));
            assert_eq!(a.below_i64(86_400), i64::try_from(b.below(86_400)).expect("small"));
            assert_eq!(a.below_i64(0), 0);
            assert_eq!(a.range_u64(5, 5), 5);
        }
    }
}

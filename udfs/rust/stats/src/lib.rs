//! Aggregates: `weighted_avg(value double, weight bigint) -> double` (retract and merge) and
//! `approx_distinct(value varchar) -> bigint` (HyperLogLog, merge only).

use serde::{Deserialize, Serialize};
use weir_udf::{Aggregate, Error, aggregate};

/// Sum of value × weight over the sum of weights; null when the weights sum to zero.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct WeightedAvg {
    weighted_sum: f64,
    weight: i64,
}

#[aggregate(name = "weighted_avg")]
impl Aggregate for WeightedAvg {
    type Args<'a> = (f64, i64);
    type Output = Option<f64>;

    fn create() -> Self {
        WeightedAvg::default()
    }

    fn accumulate(&mut self, (value, weight): (f64, i64)) -> Result<(), Error> {
        self.weighted_sum += value * weight as f64;
        self.weight += weight;
        Ok(())
    }

    fn retract(&mut self, (value, weight): (f64, i64)) -> Result<(), Error> {
        self.weighted_sum -= value * weight as f64;
        self.weight -= weight;
        Ok(())
    }

    fn merge(&mut self, other: Self) -> Result<(), Error> {
        self.weighted_sum += other.weighted_sum;
        self.weight += other.weight;
        Ok(())
    }

    fn finish(&self) -> Option<f64> {
        (self.weight != 0).then(|| self.weighted_sum / self.weight as f64)
    }
}

/// 2^PRECISION registers: 1024 registers give about 3% standard error.
const PRECISION: u32 = 10;

/// Distinct count estimate with HyperLogLog. Cannot retract (a sketch forgets which value set a
/// register), but merges exactly.
#[derive(Debug, Serialize, Deserialize)]
pub struct ApproxDistinct {
    registers: Vec<u8>,
}

/// FNV-1a then a 64-bit finaliser (splitmix64): stable across builds, unlike std's hasher.
fn hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[aggregate(name = "approx_distinct")]
impl Aggregate for ApproxDistinct {
    type Args<'a> = (&'a str,);
    type Output = i64;

    fn create() -> Self {
        ApproxDistinct {
            registers: vec![0; 1 << PRECISION],
        }
    }

    fn accumulate(&mut self, (value,): (&str,)) -> Result<(), Error> {
        let h = hash(value.as_bytes());
        let index = (h >> (64 - PRECISION)) as usize;
        let rank = ((h << PRECISION) | (1 << (PRECISION - 1))).leading_zeros() as u8 + 1;
        let register = &mut self.registers[index];
        *register = (*register).max(rank);
        Ok(())
    }

    fn merge(&mut self, other: Self) -> Result<(), Error> {
        if other.registers.len() != self.registers.len() {
            return Err(Error::new("approx_distinct states of different precision"));
        }
        for (mine, theirs) in self.registers.iter_mut().zip(other.registers) {
            *mine = (*mine).max(theirs);
        }
        Ok(())
    }

    fn finish(&self) -> i64 {
        let m = self.registers.len() as f64;
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let sum: f64 = self
            .registers
            .iter()
            .map(|&r| 2f64.powi(-i32::from(r)))
            .sum();
        let estimate = alpha * m * m / sum;
        let zeros = self.registers.iter().filter(|&&r| r == 0).count();
        // Small-range correction: linear counting while many registers are still empty.
        let estimate = if estimate <= 2.5 * m && zeros > 0 {
            m * (m / zeros as f64).ln()
        } else {
            estimate
        };
        estimate.round() as i64
    }
}

weir_udf::export!(WeightedAvg, ApproxDistinct);

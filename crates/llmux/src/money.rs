//! Exact money: US dollars held as integer picodollars (10⁻¹² USD).
//!
//! Every catalog price is a whole number of picodollars per token (prices are published with at
//! most 12 decimals per token, i.e. 6 per million tokens), so `tokens × price` is exact and sums
//! never round. An `i64` holds ±9.2 million dollars per value; aggregates are summed in `i128`.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;

/// Picodollars per dollar.
pub const PICO_PER_USD: i64 = 1_000_000_000_000;

/// Picodollars. Serialized as the integer (the metering spool's format), never as a float.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Money(pub i64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("{0:?} is not a decimal number")]
    NotANumber(String),
    #[error("{0} has more precision than 10^-12 USD")]
    TooPrecise(String),
    #[error("{0} is out of range")]
    OutOfRange(String),
}

impl Money {
    pub const ZERO: Money = Money(0);

    pub fn pico(self) -> i64 {
        self.0
    }

    /// From a decimal amount of dollars; it must be exact at 12 decimals.
    pub fn from_usd(d: Decimal) -> Result<Money, MoneyError> {
        let scaled = d
            .checked_mul(Decimal::from(PICO_PER_USD))
            .ok_or_else(|| MoneyError::OutOfRange(d.to_string()))?;
        if scaled.fract() != Decimal::ZERO {
            return Err(MoneyError::TooPrecise(d.to_string()));
        }
        i64::try_from(scaled)
            .map(Money)
            .map_err(|_| MoneyError::OutOfRange(d.to_string()))
    }

    /// Parse a dollar amount such as `"12.50"`.
    pub fn parse_usd(s: &str) -> Result<Money, MoneyError> {
        let d = Decimal::from_str(s.trim())
            .or_else(|_| Decimal::from_scientific(s.trim()))
            .map_err(|_| MoneyError::NotANumber(s.to_string()))?;
        Money::from_usd(d)
    }

    pub fn to_usd(self) -> Decimal {
        Decimal::from_i128_with_scale(self.0 as i128, 12).normalize()
    }

    /// As a JSON-friendly float (for fields clients read as numbers; the exact value is in
    /// the string forms).
    pub fn to_f64(self) -> f64 {
        self.0 as f64 / PICO_PER_USD as f64
    }

    pub fn checked_add(self, o: Money) -> Option<Money> {
        self.0.checked_add(o.0).map(Money)
    }

    pub fn checked_sub(self, o: Money) -> Option<Money> {
        self.0.checked_sub(o.0).map(Money)
    }

    pub fn saturating_add(self, o: Money) -> Money {
        Money(self.0.saturating_add(o.0))
    }

    pub fn saturating_sub(self, o: Money) -> Money {
        Money(self.0.saturating_sub(o.0))
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }
}

impl fmt::Display for Money {
    /// Plain decimal dollars, no exponent, no trailing zeros: `0.00000042`. Written from the
    /// integer (every answer carries its cost; through `Decimal` it took about as many
    /// instructions as authenticating the request).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const DIGITS: usize = 12; // PICO_PER_USD = 10^12
        let pico = PICO_PER_USD.unsigned_abs();
        let v = self.0.unsigned_abs();
        if self.0 < 0 {
            f.write_str("-")?;
        }
        write!(f, "{}", v / pico)?;
        let mut frac = v % pico;
        if frac == 0 {
            return Ok(());
        }
        let mut digits = [b'0'; DIGITS];
        for d in digits.iter_mut().rev() {
            *d = b'0' + (frac % 10) as u8;
            frac /= 10;
        }
        let end = DIGITS - digits.iter().rev().take_while(|&&d| d == b'0').count();
        f.write_str(".")?;
        f.write_str(std::str::from_utf8(&digits[..end]).map_err(|_| fmt::Error)?)
    }
}

/// A price in picodollars per unit (token, request, image).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Price(pub i64);

impl Price {
    pub const ZERO: Price = Price(0);

    /// From dollars per unit as published (`"0.00000028"`). Prices carrying float noise beyond
    /// 12 decimals (a few in the public catalog, e.g. `0.00000008333333333333334`) are rounded
    /// half-up to the picodollar; nothing else is rounded anywhere.
    pub fn per_unit_usd(s: &str) -> Result<Price, MoneyError> {
        let d = Decimal::from_str(s.trim())
            .or_else(|_| Decimal::from_scientific(s.trim()))
            .map_err(|_| MoneyError::NotANumber(s.to_string()))?;
        let scaled = d
            .checked_mul(Decimal::from(PICO_PER_USD))
            .ok_or_else(|| MoneyError::OutOfRange(s.to_string()))?
            .round_dp_with_strategy(0, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
        i64::try_from(scaled)
            .map(Price)
            .map_err(|_| MoneyError::OutOfRange(s.to_string()))
    }

    /// From dollars per million units (the way operators write prices: `"0.28"`); exact up to
    /// 6 decimals.
    pub fn per_million_usd(s: &str) -> Result<Price, MoneyError> {
        let d = Decimal::from_str(s.trim()).map_err(|_| MoneyError::NotANumber(s.to_string()))?;
        let scaled = d
            .checked_mul(Decimal::from(1_000_000))
            .ok_or_else(|| MoneyError::OutOfRange(s.to_string()))?;
        if scaled.fract() != Decimal::ZERO {
            return Err(MoneyError::TooPrecise(format!("{s} per million tokens")));
        }
        i64::try_from(scaled)
            .map(Price)
            .map_err(|_| MoneyError::OutOfRange(s.to_string()))
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// Dollars per unit, as OpenRouter publishes prices (`"0.00000028"`).
    pub fn per_unit_string(self) -> String {
        Decimal::from_i128_with_scale(self.0 as i128, 12)
            .normalize()
            .to_string()
    }

    /// Dollars per million units.
    pub fn per_million(self) -> Decimal {
        Decimal::from_i128_with_scale(self.0 as i128, 6).normalize()
    }

    /// `units × price`, exact; saturates (never wraps) on absurd inputs.
    pub fn times(self, units: u64) -> Money {
        let v = (self.0 as i128).saturating_mul(units as i128);
        Money(v.clamp(i64::MIN as i128, i64::MAX as i128) as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_written_as_their_exact_decimal() {
        let mut values = vec![
            0,
            1,
            -1,
            42,
            420_000,
            PICO_PER_USD,
            -PICO_PER_USD,
            PICO_PER_USD / 2 * 3,
            -(PICO_PER_USD / 2 * 3),
            PICO_PER_USD * 10,
            PICO_PER_USD * 10 + 10,
            i64::MAX,
            i64::MIN,
            i64::MIN + 1,
        ];
        // And a spread of others (a fixed linear congruential sequence).
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..10_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            values.push((x as i64) >> (x % 60));
        }
        for v in values {
            assert_eq!(
                Money(v).to_string(),
                Money(v).to_usd().to_string(),
                "{v} picodollars"
            );
        }
        assert_eq!(Money(4_200_000).to_string(), "0.0000042");
        assert_eq!(Money(-3 * PICO_PER_USD).to_string(), "-3");
    }

    #[test]
    fn prices_and_costs_are_exact() {
        let p = Price::per_million_usd("0.28").unwrap();
        assert_eq!(p, Price(280_000));
        assert_eq!(p, Price::per_unit_usd("0.00000028").unwrap());
        assert_eq!(p.times(1234).to_string(), "0.00034552");
        assert_eq!(Price::per_unit_usd("0.000000003625").unwrap(), Price(3625));
        assert_eq!(
            Price::per_unit_usd("0.00000008333333333333334").unwrap(),
            Price(83333)
        );
        assert_eq!(p.per_unit_string(), "0.00000028");
        assert!(Price::per_million_usd("0.0000001").is_err());
    }

    #[test]
    fn money_parsing() {
        assert_eq!(Money::parse_usd("12.5").unwrap(), Money(12_500_000_000_000));
        assert_eq!(Money::parse_usd("12.5").unwrap().to_string(), "12.5");
        assert!(Money::parse_usd("abc").is_err());
        assert!(Money::parse_usd("0.0000000000001").is_err());
        assert!(Money::parse_usd("1e30").is_err());
        assert_eq!(Money(-5).to_string(), "-0.000000000005");
    }
}

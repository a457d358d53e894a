//! The operator's signature on what `model push` and `model rollback` send: every announcement and command is a
//! signed order (see `protocol::update::Order`) that names its target, a fresh counter and an expiry, so that
//! no one without the key can make a device install, downgrade or roll back anything, and a recorded order
//! cannot be replayed.

use anyhow::{Context, Result};
use clap::Args;
use packaging::SigningKey;
use protocol::update::{Instruction, Order, Target};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Added to an order's lifetime: the devices' clocks may be this far ahead of the workstation's.
pub(crate) const CLOCK_SLACK: Duration = Duration::from_secs(300);

#[derive(Args, Debug)]
pub struct KeyArgs {
    /// The private key (from `edgectl keygen`) whose public key the devices trust: it signs what is sent.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
}

/// Signs orders with strictly increasing counters.
pub struct Signer {
    key: SigningKey,
    last_counter: u64,
}

impl Signer {
    pub fn open(args: &KeyArgs) -> Result<Signer> {
        let key = SigningKey::read(&args.key).with_context(|| format!("reading the key {}", args.key.display()))?;
        Ok(Signer { key, last_counter: 0 })
    }

    /// The envelope (JSON) of an order to `target`, valid for `valid_for` (and [`CLOCK_SLACK`]), and its
    /// counter: the Unix time in microseconds, or one more than the last, whichever is larger.
    pub fn seal(&mut self, target: Target, instruction: Instruction, valid_for: Duration) -> Result<(Vec<u8>, u64)> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).context("the clock is before 1970")?;
        let counter = u64::try_from(now.as_micros()).unwrap_or(u64::MAX).max(self.last_counter + 1);
        self.last_counter = counter;
        let expires = now + valid_for + CLOCK_SLACK;
        let expires_at_ms = u64::try_from(expires.as_millis()).unwrap_or(u64::MAX);
        Ok((self.seal_stamped(target, instruction, counter, expires_at_ms)?, counter))
    }

    /// The envelope (JSON) of an order with a counter and expiry decided before (a rollout's wave): the same
    /// text signed again is the same order.
    pub fn seal_stamped(
        &self,
        target: Target,
        instruction: Instruction,
        counter: u64,
        expires_at_ms: u64,
    ) -> Result<Vec<u8>> {
        let order = Order { target, counter, expires_at_ms, instruction };
        let envelope = packaging::order::seal(&order, &self.key);
        serde_json::to_vec(&envelope).context("encoding the order")
    }

    /// The envelope (JSON) of `text`, signed: what the operator tool itself keeps or sends besides orders.
    pub fn seal_text(&self, text: String) -> Result<Vec<u8>> {
        serde_json::to_vec(&packaging::order::seal_text(text, &self.key)).context("encoding the envelope")
    }

    pub fn public_key(&self) -> packaging::PublicKey {
        self.key.public_key()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_are_signed_with_rising_counters_and_an_expiry() {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = SigningKey::generate().expect("key");
        let path = dir.path().join("ops.key");
        key.write(&path).expect("written");
        let mut signer = Signer::open(&KeyArgs { key: path }).expect("opened");
        let rollback = || Instruction::Rollback { model: None };
        let (first, first_counter) =
            signer.seal(Target::Device("d1".into()), rollback(), Duration::from_secs(30)).expect("sealed");
        let (_, second_counter) = signer.seal(Target::Group("lab".into()), rollback(), Duration::ZERO).expect("sealed");
        assert!(second_counter > first_counter);
        let opened = packaging::order::open(&first, &[key.public_key()]).expect("a trusted order");
        assert_eq!((opened.order.counter, opened.order.target), (first_counter, Target::Device("d1".into())));
        let lifetime_ms = opened.order.expires_at_ms - first_counter / 1000;
        assert!((330_000..331_000).contains(&lifetime_ms), "30 s and the slack: {lifetime_ms} ms");
    }
}

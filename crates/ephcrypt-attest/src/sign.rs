//! The signer: an Ed25519 key from a 32-byte seed.

use std::fmt;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde_json::{Map, Value};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::canonical::signed_message;
use crate::error::{AttestError, Result};
use crate::field;
use crate::hex::to_hex;

/// An Ed25519 seed: 32 secret bytes, wiped on drop, never printed.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Seed([u8; 32]);

impl Seed {
    /// Wrap seed bytes. The caller should wipe its own copy.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl fmt::Debug for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Seed(<redacted>)")
    }
}

/// The attestation signing key. The private key lives inside AWS-LC (which
/// cleanses it when freed); `Debug` shows only the public key.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    public_key: [u8; 32],
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("public_key", &to_hex(&self.public_key))
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Build the key from a 32-byte seed (the caller derives it from the epoch
    /// key under its own label). The seed is wiped here once AWS-LC has its
    /// copy; the caller should wipe its own.
    ///
    /// # Errors
    /// [`AttestError::Crypto`] if AWS-LC rejects the seed.
    pub fn from_seed(seed: [u8; 32]) -> Result<Self> {
        Self::from_secret_seed(&Seed::from_bytes(seed))
    }

    /// As [`SigningKey::from_seed`], from a [`Seed`].
    ///
    /// # Errors
    /// [`AttestError::Crypto`] if AWS-LC rejects the seed.
    pub fn from_secret_seed(seed: &Seed) -> Result<Self> {
        Self::from_seed_ref(&seed.0)
    }

    /// As [`SigningKey::from_seed`], from a borrowed seed (e.g. one that
    /// lives in a protected page and must not be copied).
    ///
    /// # Errors
    /// [`AttestError::Crypto`] if AWS-LC rejects the seed.
    pub fn from_seed_ref(seed: &[u8; 32]) -> Result<Self> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|_| AttestError::Crypto("Ed25519 seed rejected"))?;
        let public_key: [u8; 32] = pair
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| AttestError::Crypto("Ed25519 public key is not 32 bytes"))?;
        Ok(Self { pair, public_key })
    }

    /// Ed25519 signature of `message`, checked before it is returned.
    ///
    /// # Errors
    /// [`AttestError::Crypto`] if the self-check fails.
    pub(crate) fn sign_checked(&self, message: &[u8]) -> Result<[u8; 64]> {
        let signature = self.pair.sign(message);
        UnparsedPublicKey::new(&ED25519, &self.public_key)
            .verify(message, signature.as_ref())
            .map_err(|_| AttestError::Crypto("Ed25519 signature failed self-verification"))?;
        signature
            .as_ref()
            .try_into()
            .map_err(|_| AttestError::Crypto("Ed25519 signature is not 64 bytes"))
    }

    /// The raw 32-byte Ed25519 public key.
    #[must_use]
    pub const fn public_key(&self) -> [u8; 32] {
        self.public_key
    }

    /// Sign `fields`: returns `fields` plus `signature_algorithm` (`"ed25519"`),
    /// `public_key` (lowercase hex) and `signature` (lowercase hex of the
    /// 64-byte Ed25519 signature over [`signed_message`](crate::signed_message)
    /// of everything but `signature`). The signature is verified before it is
    /// returned.
    ///
    /// # Errors
    /// * [`AttestError::ReservedField`] if `fields` already has `signature`,
    ///   `signature_algorithm` or `public_key`;
    /// * [`AttestError::NonCanonicalValue`] if a value contains a float;
    /// * [`AttestError::Crypto`] if the self-check fails.
    pub fn sign_document(&self, mut fields: Map<String, Value>) -> Result<Value> {
        for reserved in [
            field::SIGNATURE,
            field::SIGNATURE_ALGORITHM,
            field::PUBLIC_KEY,
        ] {
            if fields.contains_key(reserved) {
                return Err(AttestError::ReservedField(reserved));
            }
        }
        fields.insert(
            field::SIGNATURE_ALGORITHM.to_owned(),
            Value::from(field::ALGORITHM_ED25519),
        );
        fields.insert(
            field::PUBLIC_KEY.to_owned(),
            Value::from(to_hex(&self.public_key)),
        );
        let message = signed_message(&fields)?;
        let signature = self.pair.sign(&message);
        UnparsedPublicKey::new(&ED25519, &self.public_key)
            .verify(&message, signature.as_ref())
            .map_err(|_| AttestError::Crypto("Ed25519 signature failed self-verification"))?;
        fields.insert(
            field::SIGNATURE.to_owned(),
            Value::from(to_hex(signature.as_ref())),
        );
        Ok(Value::Object(fields))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let seed = [0x5a; 32];
        let key = SigningKey::from_seed(seed).unwrap();
        let dbg = format!("{key:?}");
        assert!(dbg.contains(&to_hex(&key.public_key())), "{dbg}");
        assert!(!dbg.contains(&to_hex(&seed)), "{dbg}");
        assert!(!dbg.contains("5a5a5a"), "{dbg}");
        assert_eq!(format!("{:?}", Seed::from_bytes(seed)), "Seed(<redacted>)");
    }

    #[test]
    fn rfc8032_test_vector_1() {
        // RFC 8032 §7.1 TEST 1: empty message.
        let seed: [u8; 32] = crate::hex::decode_hex(
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        )
        .unwrap()
        .try_into()
        .unwrap();
        let key = SigningKey::from_seed(seed).unwrap();
        assert_eq!(
            to_hex(&key.public_key()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        assert_eq!(
            to_hex(key.pair.sign(b"").as_ref()),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155\
             5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
    }
}

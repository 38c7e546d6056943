//! Static tokens, known to pipgate only by their sha256 (`pipgate hash-token` prints one).
//!
//! A fast hash is the right one here, as for GitHub's and PyPI's API tokens: a token is a
//! long random string (`pipgate hash-token --generate` makes 256-bit ones, and the command
//! refuses anything shorter than 16 characters), so there is no dictionary to guess from, and a
//! lookup costs one sha256 per request instead of a deliberately slow password hash. The hash
//! is looked up in a map, so no comparison runs over secret bytes.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::{Client, Who};
use crate::config::{AccessTokenConfig, UpstreamSet};

/// The shortest token `pipgate hash-token` accepts.
pub const MIN_TOKEN_CHARS: usize = 16;

/// `sha256:<hex>` of a token, the one spelling `[[access.token]] hash` takes.
pub fn hash_token(token: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(token.as_bytes())))
}

/// A new random token: `pgt_` and 43 base64url characters (256 bits).
pub fn generate_token() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system's random source works");
    format!("pgt_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

#[derive(Debug, Default)]
pub struct Tokens {
    by_hash: HashMap<[u8; 32], (String, UpstreamSet)>,
}

impl Tokens {
    pub fn new(tokens: &[AccessTokenConfig]) -> Tokens {
        let mut by_hash = HashMap::new();
        for token in tokens {
            let hex = token.hash.strip_prefix("sha256:").expect("checked when the config loaded");
            let mut hash = [0u8; 32];
            hex::decode_to_slice(hex, &mut hash).expect("checked when the config loaded");
            by_hash.insert(hash, (token.name.clone(), token.read.set()));
        }
        Tokens { by_hash }
    }

    /// The client holding `token`, if it is one of ours.
    pub fn find(&self, token: &str) -> Option<Client> {
        if self.by_hash.is_empty() {
            return None;
        }
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.by_hash
            .get(&hash)
            .map(|(name, reads)| Client { who: Who::Token { name: name.clone() }, reads: *reads })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_long_random_and_find_their_client() {
        let (a, b) = (generate_token(), generate_token());
        assert_ne!(a, b);
        assert!(a.starts_with("pgt_") && a.len() == 47, "{a}");
        let hash = hash_token(&a);
        assert!(hash.starts_with("sha256:") && hash.len() == 71);
        let config: AccessTokenConfig = toml::from_str(&format!("name = \"ci\"\nhash = \"{hash}\"")).unwrap();
        let tokens = Tokens::new(&[config]);
        assert_eq!(tokens.find(&a).unwrap().who, Who::Token { name: "ci".into() });
        assert!(tokens.find(&b).is_none());
    }
}

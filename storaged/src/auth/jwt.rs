//! JWT tokens (`--auth-token jwt,pub-key=...,priv-key=...,sign-method=...,ttl=...`, etcd's
//! option names): signed by the member that checked the password, verified by any member
//! with the public key, so they need no raft entry and survive restarts. The claims are
//! etcd's: `username`, `revision` (the auth revision the password was checked at; a later
//! auth change makes the token old) and `exp`.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// etcd's default lifetime of a JWT token.
const DEFAULT_TTL: Duration = Duration::from_secs(300);

/// The keys and settings of `--auth-token jwt,...`.
pub struct JwtKeys {
    algorithm: Algorithm,
    /// Absent when only `pub-key` is given: this member verifies tokens but makes none.
    signing: Option<EncodingKey>,
    verifying: DecodingKey,
    ttl: Duration,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys")
            .field("algorithm", &self.algorithm)
            .field("signs", &self.signing.is_some())
            .field("ttl", &self.ttl)
            .finish()
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    username: String,
    revision: u64,
    exp: u64,
}

impl JwtKeys {
    /// Parses the options after `jwt,` (`pub-key=FILE,priv-key=FILE,sign-method=RS256,ttl=5m`)
    /// and reads the key files.
    pub fn parse(options: &str) -> Result<Self, String> {
        let (mut public, mut private, mut method, mut ttl) = (None, None, None, DEFAULT_TTL);
        for option in options.split(',').filter(|o| !o.is_empty()) {
            let (name, value) = option
                .split_once('=')
                .ok_or_else(|| format!("{option:?}: expected name=value"))?;
            match name {
                "pub-key" => public = Some(read(value)?),
                "priv-key" => private = Some(read(value)?),
                "sign-method" => method = Some(value.to_string()),
                "ttl" => ttl = parse_ttl(value)?,
                other => return Err(format!("unknown option {other:?}")),
            }
        }
        let method = method.ok_or("sign-method is required")?;
        let algorithm: Algorithm = method
            .parse()
            .map_err(|_| format!("sign-method {method:?}: not a known JWT algorithm"))?;
        Self::from_keys(algorithm, public.as_deref(), private.as_deref(), ttl)
    }

    fn from_keys(
        algorithm: Algorithm,
        public: Option<&[u8]>,
        private: Option<&[u8]>,
        ttl: Duration,
    ) -> Result<Self, String> {
        use Algorithm::*;
        fn bad(what: &'static str) -> impl Fn(jsonwebtoken::errors::Error) -> String {
            move |e| format!("{what}: {e}")
        }
        let (signing, verifying) = match algorithm {
            HS256 | HS384 | HS512 => {
                // HMAC: one shared secret, given as priv-key (or pub-key).
                let secret = private.or(public).ok_or("an HMAC method needs priv-key")?;
                (
                    Some(EncodingKey::from_secret(secret)),
                    DecodingKey::from_secret(secret),
                )
            }
            RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => {
                let public = public.ok_or("pub-key is required")?;
                let signing = private
                    .map(EncodingKey::from_rsa_pem)
                    .transpose()
                    .map_err(bad("priv-key"))?;
                (
                    signing,
                    DecodingKey::from_rsa_pem(public).map_err(bad("pub-key"))?,
                )
            }
            ES256 | ES384 => {
                let public = public.ok_or("pub-key is required")?;
                let signing = private
                    .map(EncodingKey::from_ec_pem)
                    .transpose()
                    .map_err(bad("priv-key"))?;
                (
                    signing,
                    DecodingKey::from_ec_pem(public).map_err(bad("pub-key"))?,
                )
            }
            EdDSA => {
                let public = public.ok_or("pub-key is required")?;
                let signing = private
                    .map(EncodingKey::from_ed_pem)
                    .transpose()
                    .map_err(bad("priv-key"))?;
                (
                    signing,
                    DecodingKey::from_ed_pem(public).map_err(bad("pub-key"))?,
                )
            }
            other => return Err(format!("sign-method {other:?} is not supported")),
        };
        let keys = Self {
            algorithm,
            signing,
            verifying,
            ttl,
        };
        // A key pair that does not belong together would make tokens nobody accepts.
        if keys.signing.is_some() {
            let token = keys.sign("check", 1).map_err(|e| format!("signing: {e}"))?;
            if keys.verify(&token).is_none() {
                return Err("priv-key and pub-key are not one key pair".into());
            }
        }
        Ok(keys)
    }

    /// A token naming `user`, checked at auth `revision`, valid for the ttl from now.
    pub fn sign(&self, user: &str, revision: u64) -> Result<String, String> {
        let key = self
            .signing
            .as_ref()
            .ok_or("this member has no priv-key to sign tokens with")?;
        let exp = (SystemTime::now() + self.ttl)
            .duration_since(UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs();
        let claims = Claims {
            username: user.to_string(),
            revision,
            exp,
        };
        jsonwebtoken::encode(&Header::new(self.algorithm), &claims, key).map_err(|e| e.to_string())
    }

    /// The user and auth revision of a valid, unexpired token.
    pub fn verify(&self, token: &str) -> Option<(String, u64)> {
        let mut validation = Validation::new(self.algorithm);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.verifying, &validation).ok()?;
        Some((data.claims.username, data.claims.revision))
    }
}

fn read(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{path}: {e}"))
}

/// etcd's ttl option: a Go duration such as `5m`, `300s`, `1h30m`.
fn parse_ttl(value: &str) -> Result<Duration, String> {
    let mut total = 0u64;
    let mut number = String::new();
    for c in value.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = number
            .parse()
            .map_err(|_| format!("ttl {value:?}: bad duration"))?;
        number.clear();
        total += n * match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(format!("ttl {value:?}: units are h, m and s")),
        };
    }
    if !number.is_empty() || total == 0 {
        return Err(format!("ttl {value:?}: expected a duration like 5m"));
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA_PRIVATE: &[u8] = include_bytes!("testdata/jwt_rs256.key");
    const RSA_PUBLIC: &[u8] = include_bytes!("testdata/jwt_rs256.pub");
    const EC_PRIVATE: &[u8] = include_bytes!("testdata/jwt_es256.key");
    const EC_PUBLIC: &[u8] = include_bytes!("testdata/jwt_es256.pub");

    fn keys(alg: Algorithm, public: &[u8], private: Option<&[u8]>, ttl: u64) -> JwtKeys {
        JwtKeys::from_keys(alg, Some(public), private, Duration::from_secs(ttl)).expect("works")
    }

    #[test]
    fn tokens_round_trip_with_each_kind_of_key() {
        for k in [
            keys(Algorithm::RS256, RSA_PUBLIC, Some(RSA_PRIVATE), 60),
            keys(Algorithm::PS384, RSA_PUBLIC, Some(RSA_PRIVATE), 60),
            keys(Algorithm::ES256, EC_PUBLIC, Some(EC_PRIVATE), 60),
            keys(Algorithm::HS256, b"secret", Some(b"secret"), 60),
        ] {
            let token = k.sign("alice", 7).expect("works");
            assert_eq!(k.verify(&token), Some(("alice".into(), 7)), "{k:?}");
            assert_eq!(k.verify(&format!("{token}x")), None, "tampered");
            assert_eq!(k.verify("a.b.c"), None);
        }
    }

    #[test]
    fn a_verifying_member_accepts_tokens_another_signed_and_refuses_foreign_ones() {
        let signer = keys(Algorithm::RS256, RSA_PUBLIC, Some(RSA_PRIVATE), 60);
        let verifier = keys(Algorithm::RS256, RSA_PUBLIC, None, 60);
        let token = signer.sign("bob", 3).expect("works");
        assert_eq!(verifier.verify(&token), Some(("bob".into(), 3)));
        assert!(verifier.sign("bob", 3).is_err(), "no private key");
        let other = keys(Algorithm::HS256, b"s1", Some(b"s1"), 60);
        let foreign = keys(Algorithm::HS256, b"s2", Some(b"s2"), 60)
            .sign("bob", 3)
            .expect("works");
        assert_eq!(other.verify(&foreign), None);
        // A token signed with another algorithm than the member's is refused.
        assert_eq!(verifier.verify(&other.sign("bob", 3).expect("works")), None);
    }

    #[test]
    fn tokens_expire() {
        let k = keys(Algorithm::HS256, b"secret", Some(b"secret"), 1);
        let token = k.sign("alice", 1).expect("works");
        assert!(k.verify(&token).is_some());
        std::thread::sleep(Duration::from_millis(2100));
        assert_eq!(k.verify(&token), None);
    }

    #[test]
    fn options_as_etcd_names_them() {
        assert_eq!(parse_ttl("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_ttl("1h30m10s"), Ok(Duration::from_secs(5410)));
        assert!(parse_ttl("5").is_err());
        assert!(parse_ttl("5d").is_err());
        assert!(JwtKeys::parse("sign-method=RS256,pub-key=/nonexistent").is_err());
        assert!(
            JwtKeys::parse("ttl=5m")
                .expect_err("refused")
                .contains("sign-method")
        );
        assert!(
            JwtKeys::parse("sign-method=XX1")
                .expect_err("refused")
                .contains("XX1")
        );
        assert!(
            JwtKeys::parse("sign-method=RS256,colour=red")
                .expect_err("refused")
                .contains("colour")
        );
        let mismatched = JwtKeys::from_keys(
            Algorithm::ES256,
            Some(EC_PUBLIC),
            Some(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
            DEFAULT_TTL,
        );
        assert!(mismatched.is_err());
    }
}

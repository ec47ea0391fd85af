//! Micro benchmark of the token hot path on one core: the raw RS256 signature with a key pair
//! parsed once (the ceiling for any token endpoint), a whole access token minted the way the
//! server does it, and verification. Run: `cargo bench --bench signing` (pin it with taskset).
//!
//! Prints `name_per_sec: N` lines that scripts/bench.sh reads.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis::keys::{KeyRing, KeySet, PublicJwk, SigningKey, sign_with};
use portcullis::oauth::tokens::AccessClaims;

const RUN: Duration = Duration::from_secs(3);

fn rate(name: &str, mut f: impl FnMut()) -> f64 {
    for _ in 0..50 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < RUN {
        for _ in 0..50 {
            f();
        }
        n += 50;
    }
    let per_sec = n as f64 / start.elapsed().as_secs_f64();
    println!("{name}_per_sec: {per_sec:.0}");
    per_sec
}

fn main() {
    // `cargo bench` passes --bench; nothing to parse.
    let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let der = AsDer::<Pkcs8V1Der>::as_der(&pair)
        .unwrap()
        .as_ref()
        .to_vec();
    let key = SigningKey {
        kid: "bench".into(),
        pair: RsaKeyPair::from_pkcs8(&der).unwrap(),
    };
    let claims = AccessClaims {
        iss: "http://127.0.0.1:8080".into(),
        sub: "3f1c2a9e-5b7d-4c1e-9a2f-0d6e8b4c7a11".into(),
        aud: "http://127.0.0.1:8080".into(),
        exp: 1_800_000_900,
        iat: 1_800_000_000,
        nbf: 1_800_000_000,
        jti: "b6c1d2e3-f405-4a6b-8c7d-9e0f1a2b3c4d".into(),
        client_id: "bench".into(),
        scope: "articles:read".into(),
        roles: vec![],
        sid: None,
        auth_time: None,
        amr: vec![],
        mfa_enrolment_required: false,
    };
    let token = sign_with(&key, "at+jwt", &claims).unwrap();
    let (message, _) = token.rsplit_once('.').unwrap();
    let rng = SystemRandom::new();
    let mut sig = vec![0u8; key.pair.public_modulus_len()];

    rate("rs256_sign", || {
        key.pair
            .sign(
                &RSA_PKCS1_SHA256,
                &rng,
                black_box(message.as_bytes()),
                &mut sig,
            )
            .unwrap();
    });
    rate("mint_access_token", || {
        black_box(sign_with(&key, "at+jwt", black_box(&claims)).unwrap());
    });

    let public = key.pair.public_key();
    let n = URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero());
    let e = URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero());
    let decoding = jsonwebtoken::DecodingKey::from_rsa_components(&n, &e).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&["http://127.0.0.1:8080"]);
    validation.validate_exp = false;
    rate("rs256_verify", || {
        black_box(
            jsonwebtoken::decode::<AccessClaims>(black_box(&token), &decoding, &validation)
                .unwrap(),
        );
    });
    // The server's path: the published key parsed once, header and claims decoded once each.
    let ring = KeyRing::default();
    ring.replace(KeySet::new(
        None,
        vec![PublicJwk {
            kty: "RSA".into(),
            use_: "sig".into(),
            alg: "RS256".into(),
            kid: "bench".into(),
            n,
            e,
        }],
    ));
    rate("rs256_verify_preparsed", || {
        black_box(ring.verify::<AccessClaims>(black_box(&token)).unwrap());
    });
}

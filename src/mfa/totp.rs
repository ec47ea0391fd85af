//! RFC 6238 codes through `totp-rs` (HMAC-SHA-1, 6 digits, 30-second steps, one step of skew
//! either way), the `otpauth://` URI authenticator apps read, and its QR code as SVG.

use totp_rs::{Algorithm, Builder, Totp};

/// Seconds per step.
pub const STEP_SECS: u64 = 30;
/// Digits per code.
pub const DIGITS: u8 = 6;
/// Steps accepted either side of the current one.
pub const SKEW_STEPS: u16 = 1;
/// Bytes of a new secret (160 bits, RFC 4226 §4's recommendation).
pub const SECRET_LEN: usize = 20;

/// The secret could not be turned into a generator (too short, or a bad label).
#[derive(Debug, thiserror::Error)]
#[error("TOTP: {0}")]
pub struct TotpError(String);

fn generator(secret: &[u8], issuer: &str, account: &str) -> Result<Totp, TotpError> {
    // `:` separates issuer and account in the URI's label: neither may contain one.
    let clean = |s: &str| s.replace(':', " ");
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(DIGITS)
        .with_skew(SKEW_STEPS)
        .with_step_duration(STEP_SECS)
        .with_secret(secret.to_vec())
        .with_account_name(clean(account))
        .with_issuer(Some(clean(issuer)))
        .build()
        .map_err(|e| TotpError(e.to_string()))
}

/// Whether `code` is six ASCII digits (after removing spaces): anything else is refused before
/// any work.
pub fn normalise(code: &str) -> Option<String> {
    let digits: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    (digits.len() == usize::from(DIGITS) && digits.bytes().all(|b| b.is_ascii_digit()))
        .then_some(digits)
}

/// The step whose code `code` is, among the current step at `now` (Unix seconds) and one step
/// either side; `None` when it is none of them. Compared in constant time by `totp-rs`.
pub fn matching_step(secret: &[u8], code: &str, now: i64) -> Result<Option<u64>, TotpError> {
    let Some(code) = normalise(code) else {
        return Ok(None);
    };
    let totp = generator(secret, "Portcullis", "user")?;
    Ok(totp.check(&code, u64::try_from(now).unwrap_or(0)))
}

/// The base32 secret (as apps accept it typed in), the `otpauth://` URI, and the URI as an SVG
/// QR code.
pub fn provisioning(
    secret: &[u8],
    issuer: &str,
    account: &str,
) -> Result<(String, String, String), TotpError> {
    let totp = generator(secret, issuer, account)?;
    let uri = totp.to_url().map_err(|e| TotpError(e.to_string()))?;
    let qr = qrcode::QrCode::new(uri.as_bytes()).map_err(|e| TotpError(e.to_string()))?;
    let svg = qr
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .build();
    Ok((totp.secret().to_base32(), uri, svg))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, SHA-1 (the last six digits of its eight).
    #[test]
    fn codes_are_those_of_rfc_6238() {
        let secret = b"12345678901234567890";
        for (time, code) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
        ] {
            let step = u64::try_from(time).unwrap() / STEP_SECS;
            assert_eq!(matching_step(secret, code, time).unwrap(), Some(step));
        }
    }

    #[test]
    fn the_window_is_one_step_either_way() {
        let secret = b"12345678901234567890";
        // 287082 is the code of step 1 (t = 30..59).
        assert_eq!(matching_step(secret, "287082", 89).unwrap(), Some(1));
        assert_eq!(matching_step(secret, "287082", 0).unwrap(), Some(1));
        assert_eq!(matching_step(secret, "287082", 90).unwrap(), None);
        assert_eq!(matching_step(secret, "287 082", 59).unwrap(), Some(1));
        for bad in ["", "28708", "2870822", "28708a", "٢٨٧٠٨٢"] {
            assert_eq!(matching_step(secret, bad, 59).unwrap(), None, "{bad}");
        }
    }

    #[test]
    fn the_uri_names_issuer_account_and_parameters() {
        let (secret, uri, svg) = provisioning(&[7u8; 20], "Portcullis", "alice").unwrap();
        assert!(uri.starts_with("otpauth://totp/Portcullis:alice?"), "{uri}");
        assert!(uri.contains(&format!("secret={secret}")), "{uri}");
        assert!(uri.contains("issuer=Portcullis"), "{uri}");
        assert!(svg.contains("<svg"), "{svg}");
    }
}

#!/usr/bin/env python3
"""Interoperability check: standard OAuth 2.0 / OIDC client libraries against Portcullis.

Every OAuth interaction goes through authlib's requests OAuth2Session, and every token is
verified with PyJWT's JWKS client: if these pass, the server speaks the standards the way
widely used clients expect, not just the way our own tests do.

Configuration (environment):
  INTEROP_BASE_URL          server base URL == issuer (e.g. http://127.0.0.1:8080)
  INTEROP_USERNAME          user for the password grant (default alice)
  INTEROP_PASSWORD          that user's password
  INTEROP_PUBLIC_CLIENT_ID  seeded public client (default portcullis-spa)
  INTEROP_CLIENT_ID         confidential client with client_credentials (default rs-demo)
  INTEROP_CLIENT_SECRET     its secret
  INTEROP_ACCESS_TOKEN_AUD  expected `aud` of access tokens (default: the issuer URL)

Prints one line per check and a final `N passed, M failed`; exits 1 when anything failed.
"""

import os
import sys
import traceback

import jwt
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session

TIMEOUT = 15
LEEWAY = 5  # seconds of clock leeway for iat/nbf/exp (same machine, but second rounding)


def env(name, default=None):
    value = os.environ.get(name, default)
    if value is None or value == "":
        print(f"missing environment variable {name}", file=sys.stderr)
        sys.exit(2)
    return value


BASE = env("INTEROP_BASE_URL").rstrip("/")
USERNAME = env("INTEROP_USERNAME", "alice")
PASSWORD = env("INTEROP_PASSWORD")
PUBLIC_CLIENT_ID = env("INTEROP_PUBLIC_CLIENT_ID", "portcullis-spa")
CLIENT_ID = env("INTEROP_CLIENT_ID", "rs-demo")
CLIENT_SECRET = env("INTEROP_CLIENT_SECRET")
ACCESS_AUD = env("INTEROP_ACCESS_TOKEN_AUD", BASE)
USER_SCOPE = "openid articles:read"


class Failed(Exception):
    pass


def expect(condition, message):
    if not condition:
        raise Failed(message)


class Runner:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name, fn, *args):
        """Run one check; return its result, or None when it failed."""
        try:
            result = fn(*args)
        except Failed as exc:
            self._fail(name, str(exc))
            return None
        except OAuthError as exc:
            self._fail(name, f"OAuthError {exc.error}: {exc.description}")
            return None
        except Exception as exc:  # noqa: BLE001 - report anything as a failed check
            self._fail(name, f"{type(exc).__name__}: {exc}")
            if os.environ.get("INTEROP_DEBUG"):
                traceback.print_exc()
            return None
        self.passed += 1
        print(f"PASS  {name}", flush=True)
        return result if result is not None else True

    def _fail(self, name, reason):
        self.failed += 1
        print(f"FAIL  {name}: {reason}", flush=True)


def expect_oauth_error(fn, error, what):
    """Call fn and require that authlib raises OAuthError with the given error code."""
    try:
        fn()
    except OAuthError as exc:
        expect(exc.error == error, f"{what}: expected error {error!r}, got {exc.error!r} ({exc.description})")
        return
    raise Failed(f"{what}: succeeded but should have failed with {error!r}")


def main():
    r = Runner()
    state = {}

    spa = OAuth2Session(
        client_id=PUBLIC_CLIENT_ID,
        scope=USER_SCOPE,
        token_endpoint_auth_method="none",
    )
    spa.default_timeout = TIMEOUT
    rs = OAuth2Session(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        token_endpoint_auth_method="client_secret_basic",
    )
    rs.default_timeout = TIMEOUT

    # ---- discovery --------------------------------------------------------------------
    def discovery():
        resp = spa.get(f"{BASE}/.well-known/openid-configuration", withhold_token=True)
        expect(resp.status_code == 200, f"status {resp.status_code}")
        doc = resp.json()
        expect(doc.get("issuer") == BASE, f"issuer {doc.get('issuer')!r} != {BASE!r}")
        for key in ("token_endpoint", "jwks_uri", "revocation_endpoint", "introspection_endpoint"):
            expect(isinstance(doc.get(key), str) and doc[key], f"{key} missing")
        state["meta"] = doc
        return doc

    meta = r.check("discovery: /.well-known/openid-configuration has issuer and endpoints", discovery)
    if not meta:
        return finish(r)
    token_url = meta["token_endpoint"]

    def rfc8414():
        resp = spa.get(f"{BASE}/.well-known/oauth-authorization-server", withhold_token=True)
        expect(resp.status_code == 200, f"status {resp.status_code}")
        doc = resp.json()
        expect(doc.get("issuer") == BASE, f"issuer {doc.get('issuer')!r}")
        expect(doc.get("token_endpoint") == token_url, "token_endpoint differs from OIDC discovery")

    r.check("discovery: /.well-known/oauth-authorization-server agrees (RFC 8414)", rfc8414)

    jwks_client = jwt.PyJWKClient(meta["jwks_uri"], cache_keys=True, timeout=TIMEOUT)

    def verify(token, audience, what):
        header = jwt.get_unverified_header(token)
        expect(header.get("alg") == "RS256", f"{what}: alg {header.get('alg')!r}")
        expect(header.get("kid"), f"{what}: no kid in header")
        key = jwks_client.get_signing_key_from_jwt(token)
        claims = jwt.decode(
            token,
            key.key,
            algorithms=["RS256"],
            audience=audience,
            issuer=BASE,
            leeway=LEEWAY,
            options={"require": ["exp", "iat", "iss", "sub", "aud"]},
        )
        return header, claims

    # ---- password grant (public client) -------------------------------------------------
    def password_grant():
        token = spa.fetch_token(token_url, username=USERNAME, password=PASSWORD, scope=USER_SCOPE)
        for key in ("access_token", "refresh_token", "expires_in"):
            expect(token.get(key), f"{key} missing from token response")
        expect(str(token.get("token_type", "")).lower() == "bearer", f"token_type {token.get('token_type')!r}")
        expect(int(token["expires_in"]) > 0, f"expires_in {token['expires_in']!r}")
        return dict(token)

    t1 = r.check("password grant (public client, authlib fetch_token)", password_grant)

    def access_token_jwt(token):
        header, claims = verify(token["access_token"], ACCESS_AUD, "access token")
        expect(header.get("typ", "").lower() == "at+jwt", f"typ {header.get('typ')!r} != 'at+jwt'")
        for claim in ("sub", "client_id", "scope", "jti", "roles"):
            expect(claim in claims, f"claim {claim} missing")
        expect(claims["client_id"] == PUBLIC_CLIENT_ID, f"client_id {claims['client_id']!r}")
        expect("articles:read" in claims["scope"].split(), f"scope {claims['scope']!r}")
        expect(isinstance(claims["roles"], list), f"roles {claims['roles']!r} is not a list")
        state["sub"] = claims["sub"]

    def id_token_jwt(token):
        expect(token.get("id_token"), "no id_token although scope openid was requested")
        _, claims = verify(token["id_token"], PUBLIC_CLIENT_ID, "id token")
        expect(claims["sub"] == state.get("sub"), f"id token sub {claims['sub']!r} != access token sub")

    if t1:
        r.check("access token verifies via JWKS (PyJWT, RS256, typ at+jwt, claims)", access_token_jwt, t1)
        r.check("id token verifies via JWKS (aud = client_id)", id_token_jwt, t1)

    # ---- refresh rotation and reuse detection -----------------------------------------
    def refresh(token):
        new = spa.refresh_token(token_url, refresh_token=token["refresh_token"])
        expect(new.get("access_token"), "no access_token")
        expect(new.get("refresh_token"), "no refresh_token")
        expect(new["refresh_token"] != token["refresh_token"], "refresh token was not rotated")
        return dict(new)

    t2 = r.check("refresh grant rotates the refresh token", refresh, t1) if t1 else None

    def reuse_rotated(old):
        expect_oauth_error(
            lambda: spa.refresh_token(token_url, refresh_token=old["refresh_token"]),
            "invalid_grant",
            "reusing a rotated refresh token",
        )

    def family_revoked(current):
        expect_oauth_error(
            lambda: spa.refresh_token(token_url, refresh_token=current["refresh_token"]),
            "invalid_grant",
            "current token of a family whose old token was replayed",
        )

    if t2:
        r.check("reusing the rotated refresh token fails with invalid_grant", reuse_rotated, t1)
        r.check("replay revoked the whole family (RFC 9700): current token fails too", family_revoked, t2)

    # ---- confidential client: client_credentials + introspection -----------------------
    def client_credentials():
        token = rs.fetch_token(token_url, grant_type="client_credentials", scope="articles:read")
        expect(token.get("access_token"), "no access_token")
        expect(str(token.get("token_type", "")).lower() == "bearer", f"token_type {token.get('token_type')!r}")
        expect("refresh_token" not in token, "client_credentials must not issue a refresh token")
        return dict(token)

    r.check("client_credentials grant (client_secret_basic)", client_credentials)

    # A new sign-in (new family) for the revocation checks: the first family is revoked.
    t3 = r.check("password grant again (new sign-in for revocation checks)", password_grant)

    def introspect(token, want_active):
        resp = rs.introspect_token(meta["introspection_endpoint"], token=token, token_type_hint="access_token")
        expect(resp.status_code == 200, f"status {resp.status_code}: {resp.text[:200]}")
        body = resp.json()
        expect(body.get("active") is want_active, f"active {body.get('active')!r}, expected {want_active}")
        if want_active:
            expect(body.get("sub") == state.get("sub"), f"sub {body.get('sub')!r}")
            if "client_id" in body:  # optional in RFC 7662, but must be right when given
                expect(body["client_id"] == PUBLIC_CLIENT_ID, f"client_id {body['client_id']!r}")

    def revoke(token, hint):
        resp = spa.revoke_token(meta["revocation_endpoint"], token=token, token_type_hint=hint)
        expect(resp.status_code == 200, f"status {resp.status_code}: {resp.text[:200]}")

    def refresh_revoked(token):
        expect_oauth_error(
            lambda: spa.refresh_token(token_url, refresh_token=token["refresh_token"]),
            "invalid_grant",
            "refreshing with a revoked refresh token",
        )

    if t3:
        r.check("introspection of the user's access token: active true", introspect, t3["access_token"], True)
        if r.check("revocation of the refresh token (RFC 7009) -> 200", revoke, t3["refresh_token"], "refresh_token"):
            r.check("refresh with the revoked refresh token fails with invalid_grant", refresh_revoked, t3)
        if r.check("revocation of the access token -> 200", revoke, t3["access_token"], "access_token"):
            r.check("introspection of the revoked access token: active false", introspect, t3["access_token"], False)

    # ---- userinfo with a fresh token ----------------------------------------------------
    def userinfo():
        spa.fetch_token(token_url, username=USERNAME, password=PASSWORD, scope=USER_SCOPE)
        endpoint = meta.get("userinfo_endpoint") or f"{BASE}/oauth/userinfo"
        resp = spa.get(endpoint)
        expect(resp.status_code == 200, f"status {resp.status_code}: {resp.text[:200]}")
        info = resp.json()
        expect(info.get("sub") == state.get("sub"), f"sub {info.get('sub')!r} != {state.get('sub')!r}")

    r.check("userinfo with a fresh access token: sub matches", userinfo)

    return finish(r)


def finish(r):
    print(f"{r.passed} passed, {r.failed} failed", flush=True)
    return 1 if r.failed else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Interoperability check: standard OAuth 2.0 / OIDC client libraries against Portcullis.

Every OAuth interaction goes through authlib's requests OAuth2Session, and every token is
verified with PyJWT's JWKS client: if these pass, the server speaks the standards the way
widely used clients expect, not just the way our own tests do.

The authorization code flow with PKCE is driven the same way: authlib builds the
authorization URL and redeems the code, a small user agent (`Browser`: requests with its
cookie jar, redirects not followed) walks the hosted login and consent pages in between,
and the ID token is verified with authlib's CodeIDToken claims over joserfc, the JOSE
library authlib itself uses for OpenID Connect.

Configuration (environment):
  INTEROP_BASE_URL          server base URL == issuer (e.g. http://127.0.0.1:8080)
  INTEROP_USERNAME          user for the password grant (default alice)
  INTEROP_PASSWORD          that user's password
  INTEROP_PUBLIC_CLIENT_ID  seeded public client (default portcullis-spa)
  INTEROP_CLIENT_ID         confidential client with client_credentials (default rs-demo)
  INTEROP_CLIENT_SECRET     its secret
  INTEROP_ACCESS_TOKEN_AUD  expected `aud` of access tokens (default: the issuer URL)
  INTEROP_CODE_CLIENT_ID    third-party confidential code-flow client (default code-confidential)
  INTEROP_CODE_CLIENT_SECRET  its secret
  INTEROP_CODE_PUBLIC_CLIENT_ID  first-party public code-flow client (default code-public)
  INTEROP_REDIRECT_URI      redirect URI registered for both (default http://127.0.0.1:9/cb);
                            never fetched: the user agent stops at the redirect to it

Prints one line per check and a final `N passed, M failed`; exits 1 when anything failed.
"""

import os
import re
import sys
import traceback
from html.parser import HTMLParser
from urllib.parse import parse_qs, urljoin, urlsplit

import jwt
import requests
from authlib.common.security import generate_token
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from authlib.oidc.core import CodeIDToken
from joserfc import jwt as jose_jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

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
CODE_CLIENT_ID = env("INTEROP_CODE_CLIENT_ID", "code-confidential")
CODE_CLIENT_SECRET = env("INTEROP_CODE_CLIENT_SECRET")
CODE_PUBLIC_CLIENT_ID = env("INTEROP_CODE_PUBLIC_CLIENT_ID", "code-public")
REDIRECT_URI = env("INTEROP_REDIRECT_URI", "http://127.0.0.1:9/cb")
CODE_SCOPE = "openid profile email"


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


# ---- a minimal user agent for the hosted pages ------------------------------------------


class FormParser(HTMLParser):
    """Collects a page's forms: action, method, named inputs and named submit buttons."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.forms = []
        self._form = None

    def handle_starttag(self, tag, attrs):
        a = {k: (v or "") for k, v in attrs}
        if tag == "form":
            self._form = {"action": a.get("action", ""), "method": a.get("method", "get").lower(),
                          "fields": {}, "buttons": []}
            self.forms.append(self._form)
        elif self._form is None or not a.get("name"):
            return
        elif tag == "button" or (tag == "input" and a.get("type", "text").lower() == "submit"):
            self._form["buttons"].append((a["name"], a.get("value", "")))
        elif tag == "input":
            self._form["fields"][a["name"]] = a.get("value", "")

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None


def find_form(html, action):
    """The POST form of the page whose action is the path `action`, or None."""
    parser = FormParser()
    parser.feed(html)
    parser.close()
    for form in parser.forms:
        if form["method"] == "post" and urlsplit(form["action"]).path == action:
            return form
    return None


def same_endpoint(url, base):
    a, b = urlsplit(url), urlsplit(base)
    return (a.scheme, a.netloc, a.path) == (b.scheme, b.netloc, b.path)


def callback_params(location):
    """Single-valued query parameters of the redirect to the client."""
    params = {k: v[0] for k, v in parse_qs(urlsplit(location).query, keep_blank_values=True).items()}
    expect("error" not in params, f"redirect carries error {params.get('error')!r}: {params.get('error_description')!r}")
    return params


class Browser:
    """Real HTTP with requests' cookie jar, one redirect at a time so every hop is seen.

    authorize() GETs an authorization URL and walks the hosted login and consent forms
    until the server redirects to the client; that Location is returned, never fetched.
    `pages` tells which forms the last walk went through ("login", "consent").
    """

    MAX_HOPS = 12

    def __init__(self):
        self.http = requests.Session()
        self.pages = []

    def get(self, url):
        return self.http.get(url, allow_redirects=False, timeout=TIMEOUT)

    def submit(self, page, form, values):
        data = dict(form["fields"])
        data.update(values)
        return self.http.post(urljoin(page.url, form["action"]), data=data, allow_redirects=False, timeout=TIMEOUT)

    def login_page(self, url):
        """GET the authorization URL of a signed-out browser: 303 to the login page, and its form."""
        resp = self.get(url)
        expect(resp.status_code == 303, f"authorize (signed out): status {resp.status_code}, expected 303")
        location = urljoin(resp.url, resp.headers.get("Location", ""))
        expect(urlsplit(location).path == "/ui/login", f"authorize (signed out) redirected to {location!r}")
        expect("return_to" in parse_qs(urlsplit(location).query), f"no return_to in {location!r}")
        page = self.get(location)
        expect(page.status_code == 200, f"login page: status {page.status_code}")
        form = find_form(page.text, "/ui/login")
        expect(form is not None, "login page has no <form method=post action=/ui/login>")
        for field in ("csrf_token", "return_to"):
            expect(form["fields"].get(field), f"login form: hidden {field} missing or empty")
        return page, form

    def authorize(self, url, username, password, decision="allow", redirect_uri=REDIRECT_URI):
        self.pages = []
        resp = self.get(url)
        for _ in range(self.MAX_HOPS):
            what = f"{resp.request.method} {urlsplit(resp.url).path}"
            if resp.is_redirect:
                expect(resp.status_code == 303, f"{what}: redirect status {resp.status_code}, expected 303")
                location = urljoin(resp.url, resp.headers["Location"])
                if same_endpoint(location, redirect_uri):
                    return location
                expect(same_endpoint(location, BASE + urlsplit(location).path),
                       f"{what}: redirected off the server to {location!r}")
                resp = self.get(location)
                continue
            expect(resp.status_code == 200, f"{what}: status {resp.status_code}: {resp.text[:200]!r}")
            login = find_form(resp.text, "/ui/login")
            consent = None if login else find_form(resp.text, "/ui/consent")
            if login:
                self.pages.append("login")
                for field in ("csrf_token", "return_to"):
                    expect(login["fields"].get(field), f"login form: hidden {field} missing or empty")
                resp = self.submit(resp, login, {"username": username, "password": password})
            elif consent:
                self.pages.append("consent")
                for field in ("csrf_token", "return_to"):
                    expect(consent["fields"].get(field), f"consent form: hidden {field} missing or empty")
                expect(("decision", decision) in consent["buttons"],
                       f"consent form: no decision={decision} button in {consent['buttons']!r}")
                resp = self.submit(resp, consent, {"decision": decision})
            else:
                raise Failed(f"{what}: neither a login nor a consent form: {resp.text[:200]!r}")
        raise Failed(f"no redirect to {redirect_uri} after {self.MAX_HOPS} hops (pages: {self.pages})")


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

    code_flow_checks(r, meta, state)
    mfa_checks(r, token_url)

    return finish(r)


# ---- MFA: the password grant, then the mfa-otp grant through authlib's generic grants -------

MFA_GRANT = "urn:portcullis:params:oauth:grant-type:mfa-otp"


def totp(secret_b32, at=None):
    """RFC 6238 (SHA-1, 6 digits, 30 s), as authenticator apps compute it."""
    import base64
    import hashlib
    import hmac
    import struct
    import time

    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8), casefold=True)
    step = int((time.time() if at is None else at) // 30)
    digest = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    code = (struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF) % 1_000_000
    return f"{code:06d}"


def mfa_checks(r, token_url):
    import time

    name = "mfa-" + generate_token(8).lower()
    password = "interop " + generate_token(24)
    state = {}

    def enrol():
        reg = requests.post(
            f"{BASE}/api/v1/users",
            json={"username": name, "email": f"{name}@example.com", "password": password},
            timeout=10,
        )
        expect(reg.status_code == 201, f"register: {reg.status_code} {reg.text[:200]}")
        spa = OAuth2Session(client_id=PUBLIC_CLIENT_ID, timeout=10)
        spa.fetch_token(token_url, username=name, password=password, scope="profile profile:write")
        started = spa.post(f"{BASE}/api/v1/users/me/mfa/totp", json={"password": password})
        expect(started.status_code == 200, f"enrol: {started.status_code} {started.text[:200]}")
        secret = started.json()["secret"]
        confirmed = spa.post(f"{BASE}/api/v1/users/me/mfa/totp/confirm", json={"code": totp(secret)})
        expect(confirmed.status_code == 200, f"confirm: {confirmed.status_code} {confirmed.text[:200]}")
        state["secret"] = secret
        state["step"] = int(time.time() // 30)

    r.check("MFA: enrol TOTP through the API (code computed here, RFC 6238)", enrol)

    def sign_in_with_mfa():
        spa = OAuth2Session(client_id=PUBLIC_CLIENT_ID, timeout=10)
        # The password alone: authlib sees the RFC 6749-shaped refusal.
        expect_oauth_error(
            lambda: spa.fetch_token(token_url, username=name, password=password, scope="openid profile"),
            "mfa_required",
            "password grant with MFA on",
        )
        first = requests.post(
            token_url,
            data={"grant_type": "password", "username": name, "password": password,
                  "client_id": PUBLIC_CLIENT_ID, "scope": "openid profile"},
            timeout=10,
        )
        body = first.json()
        expect(first.status_code == 400 and body.get("error") == "mfa_required", f"{first.status_code} {body}")
        mfa_token = body.get("mfa_token")
        expect(mfa_token and len(mfa_token) >= 43, f"mfa_token {mfa_token!r}")
        # The enrolment used the current step: wait for the next one (a code works once).
        while int(time.time() // 30) <= state["step"]:
            time.sleep(0.5)
        # authlib's generic grant: any grant_type with its own parameters.
        token = spa.fetch_token(token_url, grant_type=MFA_GRANT, mfa_token=mfa_token, otp=totp(state["secret"]))
        expect(token.get("access_token"), "no access token")
        claims = jwt.decode(token["access_token"], options={"verify_signature": False})
        expect(claims.get("amr") == ["pwd", "otp"], f"amr {claims.get('amr')!r}")
        # The same mfa_token again: refused.
        expect_oauth_error(
            lambda: spa.fetch_token(token_url, grant_type=MFA_GRANT, mfa_token=mfa_token, otp=totp(state["secret"])),
            "invalid_grant",
            "a used mfa_token",
        )

    r.check("MFA: password grant -> mfa_required -> authlib fetch_token(mfa-otp grant), amr pwd+otp", sign_in_with_mfa)


# ---- authorization code flow with PKCE (authlib + the hosted pages) --------------------


class Authorization:
    """One authorization request built by authlib and walked through the hosted pages."""

    def __init__(self, session, endpoint, browser):
        self.verifier = generate_token(48)
        self.nonce = generate_token(20)
        self.url, self.state = session.create_authorization_url(endpoint, code_verifier=self.verifier, nonce=self.nonce)
        self.location = browser.authorize(self.url, USERNAME, PASSWORD)
        self.pages = list(browser.pages)
        self.params = callback_params(self.location)

    def expect_redirect(self, pages):
        expect(self.pages == pages, f"went through {self.pages}, expected {pages}")
        expect(self.params.get("code"), f"no code in {self.location!r}")
        expect(self.params.get("state") == self.state, f"state {self.params.get('state')!r} != {self.state!r}")
        expect(self.params.get("iss") == BASE, f"iss {self.params.get('iss')!r} != {BASE!r} (RFC 9207)")

    def redeem(self, session, token_url, **overrides):
        kwargs = {"authorization_response": self.location, "state": self.state, "code_verifier": self.verifier}
        kwargs.update(overrides)
        return session.fetch_token(token_url, **kwargs)


def code_flow_checks(r, meta, state):
    def discovery_code_flow():
        for key in ("authorization_endpoint", "end_session_endpoint"):
            expect(isinstance(meta.get(key), str) and meta[key], f"{key} missing")
        expect(meta.get("response_types_supported") == ["code"],
               f"response_types_supported {meta.get('response_types_supported')!r}")
        expect(meta.get("code_challenge_methods_supported") == ["S256"],
               f"code_challenge_methods_supported {meta.get('code_challenge_methods_supported')!r}")
        expect(meta.get("authorization_response_iss_parameter_supported") is True,
               "authorization_response_iss_parameter_supported is not true")
        expect("authorization_code" in (meta.get("grant_types_supported") or []),
               f"grant_types_supported {meta.get('grant_types_supported')!r}")

    if not r.check("discovery advertises the code flow (S256 only, iss response parameter)", discovery_code_flow):
        return
    authorize_url = meta["authorization_endpoint"]
    token_url = meta["token_endpoint"]

    resp = requests.get(meta["jwks_uri"], timeout=TIMEOUT)
    resp.raise_for_status()
    keys = KeySet.import_key_set(resp.json())

    def verify_id_token(token, client_id, nonce):
        expect(token.get("id_token"), "no id_token in the token response")
        decoded = jose_jwt.decode(token["id_token"], keys, algorithms=["RS256"])

        def claims(access_token):
            options = {"iss": {"essential": True, "value": BASE}, "aud": {"essential": True, "value": client_id}}
            for claim in ("nonce", "at_hash", "auth_time", "sid", "amr"):
                options[claim] = {"essential": True}
            params = {"nonce": nonce, "client_id": client_id, "access_token": access_token}
            return CodeIDToken(decoded.claims, decoded.header, options, params)

        claims(token["access_token"]).validate(leeway=LEEWAY)
        amr = decoded.claims["amr"]
        expect(isinstance(amr, list) and amr and all(isinstance(m, str) for m in amr), f"amr {amr!r}")
        expect(isinstance(decoded.claims["auth_time"], int), f"auth_time {decoded.claims['auth_time']!r}")
        if state.get("sub"):
            expect(decoded.claims["sub"] == state["sub"], f"sub {decoded.claims['sub']!r} is not alice's {state['sub']!r}")
        # at_hash is really compared: the same ID token must not validate for another access token.
        try:
            claims(token["access_token"] + "x").validate(leeway=LEEWAY)
        except JoseError:
            pass
        else:
            raise Failed("CodeIDToken accepted a mismatching at_hash")

    def token_response(token):
        for key in ("access_token", "id_token", "refresh_token", "expires_in"):
            expect(token.get(key), f"{key} missing from the token response")
        expect(str(token.get("token_type", "")).lower() == "bearer", f"token_type {token.get('token_type')!r}")
        return dict(token)

    def refresh(session, token):
        new = session.refresh_token(token_url, refresh_token=token["refresh_token"])
        expect(new.get("access_token"), "no access_token")
        expect(new.get("refresh_token") and new["refresh_token"] != token["refresh_token"], "refresh token not rotated")

    # -- third-party confidential client: login, consent, client_secret_basic ----------
    conf = OAuth2Session(
        client_id=CODE_CLIENT_ID,
        client_secret=CODE_CLIENT_SECRET,
        scope=CODE_SCOPE,
        redirect_uri=REDIRECT_URI,
        code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_basic",
    )
    conf.default_timeout = TIMEOUT
    browser = Browser()

    def first_authorization():
        a = Authorization(conf, authorize_url, browser)
        a.expect_redirect(["login", "consent"])
        return a

    a1 = r.check("code flow, third-party client: login page, consent page, 303 with code, state, iss (RFC 9207)",
                 first_authorization)
    if a1:
        t1 = r.check("authlib fetch_token: code + PKCE S256, client_secret_basic",
                     lambda: token_response(a1.redeem(conf, token_url)))
        if t1:
            r.check("ID token (authlib CodeIDToken, JWKS): signature, iss, aud, nonce, at_hash, auth_time, sid, amr",
                    verify_id_token, t1, CODE_CLIENT_ID, a1.nonce)
            r.check("refresh grant with the code flow's refresh token (client_secret_basic)", refresh, conf, t1)

    def remembered():
        a = Authorization(conf, authorize_url, browser)
        a.expect_redirect([])
        return a

    a2 = r.check("consent remembered: a second authorization redirects with a code, no page shown", remembered)

    def code_replay():
        token_response(a2.redeem(conf, token_url))
        expect_oauth_error(lambda: a2.redeem(conf, token_url), "invalid_grant", "redeeming a code twice")

    if a2:
        r.check("the code cannot be redeemed twice: second redemption -> invalid_grant", code_replay)

    def wrong_verifier():
        a = remembered()
        expect_oauth_error(lambda: a.redeem(conf, token_url, code_verifier=generate_token(48)),
                           "invalid_grant", "redeeming with a wrong code_verifier")

    r.check("wrong code_verifier -> invalid_grant", wrong_verifier)

    def wrong_redirect_uri():
        a = remembered()
        expect_oauth_error(lambda: a.redeem(conf, token_url, redirect_uri=REDIRECT_URI + "-other"),
                           "invalid_grant", "redeeming with another redirect_uri")

    r.check("redirect_uri differing from the authorization request -> invalid_grant", wrong_redirect_uri)

    # -- first-party public client: login only, no secret --------------------------------
    pub = OAuth2Session(
        client_id=CODE_PUBLIC_CLIENT_ID,
        scope=CODE_SCOPE,
        redirect_uri=REDIRECT_URI,
        code_challenge_method="S256",
        token_endpoint_auth_method="none",
    )
    pub.default_timeout = TIMEOUT
    browser2 = Browser()

    def wrong_password():
        url, _ = pub.create_authorization_url(authorize_url, code_verifier=generate_token(48), nonce=generate_token(20))
        page, form = browser2.login_page(url)
        resp = browser2.submit(page, form, {"username": USERNAME, "password": PASSWORD + "-wrong"})
        expect(resp.status_code == 400, f"status {resp.status_code}, expected 400")
        expect(re.search(r"role\s*=\s*[\"']?alert", resp.text), 'no role="alert" on the page')

    r.check('login page: a wrong password -> 400 with role="alert"', wrong_password)

    def first_party():
        a = Authorization(pub, authorize_url, browser2)
        a.expect_redirect(["login"])
        return a

    a3 = r.check("code flow, first-party public client: login page, no consent, 303 with code, state, iss", first_party)
    if a3:
        t3 = r.check("authlib fetch_token: code + PKCE S256, public client (no secret)",
                     lambda: token_response(a3.redeem(pub, token_url)))
        if t3:
            r.check("ID token of the public client (authlib CodeIDToken): all claims verified",
                    verify_id_token, t3, CODE_PUBLIC_CLIENT_ID, a3.nonce)
            r.check("refresh grant with the code flow's refresh token (public client)", refresh, pub, t3)


def finish(r):
    print(f"{r.passed} passed, {r.failed} failed", flush=True)
    return 1 if r.failed else 0


if __name__ == "__main__":
    sys.exit(main())

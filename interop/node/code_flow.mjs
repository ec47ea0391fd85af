// Interoperability check: panva's openid-client (v6) against Portcullis.
//
// openid-client builds the authorization request (PKCE S256, nonce, state), redeems the
// code and validates what it can itself: the ID token's signature and claims, nonce,
// state, and the RFC 9207 `iss` response parameter (discovery advertises
// authorization_response_iss_parameter_supported). It does not compare at_hash for the
// code flow (optional there in OIDC Core 3.1.3.8), so this script does. Between the two, a tiny user agent
// (fetch with redirect: 'manual' and a cookie map) walks the hosted login and consent
// pages; the redirect to the client is read from Location, never fetched.
//
// Configuration (environment):
//   INTEROP_BASE_URL                 server base URL == issuer
//   INTEROP_USERNAME                 user who signs in (default bob)
//   INTEROP_PASSWORD                 that user's password
//   INTEROP_CODE_PUBLIC_CLIENT_ID    first-party public client (default code-public)
//   INTEROP_CODE_CLIENT_ID           third-party confidential client (default code-confidential)
//   INTEROP_CODE_CLIENT_SECRET       its secret
//   INTEROP_REDIRECT_URI             registered redirect URI (default http://127.0.0.1:9/cb)
//   INTEROP_POST_LOGOUT_REDIRECT_URI registered for code-public (default http://127.0.0.1:9/bye)
//
// Prints one line per check and a final `N passed, M failed`; exits 1 when anything failed.

import { createHash } from 'node:crypto';

import * as client from 'openid-client';

function env(name, fallback) {
  const value = process.env[name] ?? fallback;
  if (value === undefined || value === '') {
    console.error(`missing environment variable ${name}`);
    process.exit(2);
  }
  return value;
}

const BASE = env('INTEROP_BASE_URL').replace(/\/+$/, '');
const USERNAME = env('INTEROP_USERNAME', 'bob');
const PASSWORD = env('INTEROP_PASSWORD');
const PUBLIC_CLIENT_ID = env('INTEROP_CODE_PUBLIC_CLIENT_ID', 'code-public');
const CLIENT_ID = env('INTEROP_CODE_CLIENT_ID', 'code-confidential');
const CLIENT_SECRET = env('INTEROP_CODE_CLIENT_SECRET');
const REDIRECT_URI = env('INTEROP_REDIRECT_URI', 'http://127.0.0.1:9/cb');
const POST_LOGOUT_REDIRECT_URI = env('INTEROP_POST_LOGOUT_REDIRECT_URI', 'http://127.0.0.1:9/bye');
const SCOPE = 'openid profile email';
const TIMEOUT_MS = 15_000;
const MAX_HOPS = 12;

class Failed extends Error {}

function expect(condition, message) {
  if (!condition) throw new Failed(message);
}

let passed = 0;
let failed = 0;

/** Run one check; return its result (true when it returns nothing), or undefined when it failed. */
async function check(name, fn) {
  try {
    const result = await fn();
    passed += 1;
    console.log(`PASS  ${name}`);
    return result === undefined ? true : result;
  } catch (err) {
    failed += 1;
    console.log(`FAIL  ${name}: ${describe(err)}`);
    if (process.env.INTEROP_DEBUG) console.error(err);
    return undefined;
  }
}

function describe(err) {
  if (err instanceof Failed) return err.message;
  const parts = [err?.name ?? 'Error'];
  if (err?.code) parts.push(err.code);
  if (err?.error) parts.push(`error=${err.error}`);
  parts.push(err?.message ?? String(err));
  if (err?.cause?.message) parts.push(`(cause: ${err.cause.message})`);
  return parts.join(' ');
}

/** Require that fn rejects; `test(err)` says whether the rejection is the expected one. */
async function expectRejection(fn, test, what) {
  let result;
  try {
    result = await fn();
  } catch (err) {
    expect(test(err), `${what}: rejected, but not as expected: ${describe(err)}`);
    return err;
  }
  throw new Failed(`${what}: succeeded (${JSON.stringify(result)?.slice(0, 120)}) but should have been rejected`);
}

const isOAuthError = (code) => (err) => err instanceof client.ResponseBodyError && err.error === code;

// ---- a minimal user agent for the hosted pages ------------------------------------------

const ENTITIES = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

function decodeEntities(text) {
  return text.replace(/&(#x[0-9a-f]+|#[0-9]+|[a-z]+);/gi, (whole, ref) => {
    if (ref[0] === '#') {
      const code = ref[1] === 'x' || ref[1] === 'X' ? parseInt(ref.slice(2), 16) : parseInt(ref.slice(1), 10);
      return String.fromCodePoint(code);
    }
    return ENTITIES[ref.toLowerCase()] ?? whole;
  });
}

function attributes(tag) {
  const attrs = {};
  const re = /([^\s"'<>\/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?/g;
  const body = tag.replace(/^<\s*[a-z0-9]+/i, '').replace(/\/?>$/, '');
  for (const m of body.matchAll(re)) {
    attrs[m[1].toLowerCase()] = decodeEntities(m[2] ?? m[3] ?? m[4] ?? '');
  }
  return attrs;
}

/** The POST form of an HTML page whose action path is `action`: its fields and buttons. */
function findForm(html, action) {
  for (const m of html.matchAll(/(<form\b[^>]*>)([\s\S]*?)<\/form>/gi)) {
    const form = attributes(m[1]);
    if ((form.method ?? 'get').toLowerCase() !== 'post') continue;
    if (new URL(form.action ?? '', BASE).pathname !== action) continue;
    const fields = {};
    const buttons = [];
    for (const t of m[2].matchAll(/<(input|button)\b[^>]*>/gi)) {
      const a = attributes(t[0]);
      if (!a.name) continue;
      const isButton = t[1].toLowerCase() === 'button' || (a.type ?? 'text').toLowerCase() === 'submit';
      if (isButton) buttons.push([a.name, a.value ?? '']);
      else fields[a.name] = a.value ?? '';
    }
    return { action: form.action, fields, buttons };
  }
  return undefined;
}

function sameEndpoint(url, base) {
  const a = new URL(url);
  const b = new URL(base);
  return a.origin === b.origin && a.pathname === b.pathname;
}

class Browser {
  constructor() {
    this.cookies = new Map();
    this.pages = [];
  }

  store(response) {
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';');
      const eq = pair.indexOf('=');
      if (eq < 1) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const expired = attrs.some((a) => {
        const [k, v = ''] = a.split('=').map((s) => s.trim());
        if (k.toLowerCase() === 'max-age') return Number(v) <= 0;
        if (k.toLowerCase() === 'expires') return Date.parse(v) <= Date.now();
        return false;
      });
      if (expired) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }

  async request(url, init = {}) {
    const headers = new Headers(init.headers);
    if (this.cookies.size) {
      headers.set('cookie', [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '));
    }
    const response = await fetch(url, {
      ...init,
      headers,
      redirect: 'manual',
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
    this.store(response);
    const text = await response.text();
    const location = response.headers.get('location');
    return {
      url: String(url),
      method: init.method ?? 'GET',
      status: response.status,
      location: location === null ? undefined : new URL(location, url).href,
      text,
    };
  }

  get(url) {
    return this.request(url);
  }

  submit(page, form, values) {
    const body = new URLSearchParams({ ...form.fields, ...values });
    return this.request(new URL(form.action, page.url).href, { method: 'POST', body });
  }

  /** GET the authorization URL, walk login/consent, return the Location of the redirect to the client. */
  async authorize(url, { username = USERNAME, password = PASSWORD, decision = 'allow' } = {}) {
    this.pages = [];
    let resp = await this.get(url);
    for (let hop = 0; hop < MAX_HOPS; hop += 1) {
      const what = `${resp.method} ${new URL(resp.url).pathname}`;
      if (resp.status >= 300 && resp.status < 400) {
        expect(resp.status === 303, `${what}: redirect status ${resp.status}, expected 303`);
        expect(resp.location, `${what}: ${resp.status} without Location`);
        if (sameEndpoint(resp.location, REDIRECT_URI)) return resp.location;
        expect(new URL(resp.location).origin === new URL(BASE).origin, `${what}: redirected off the server to ${resp.location}`);
        resp = await this.get(resp.location);
        continue;
      }
      expect(resp.status === 200, `${what}: status ${resp.status}: ${resp.text.slice(0, 200)}`);
      const login = findForm(resp.text, '/ui/login');
      const consent = login ? undefined : findForm(resp.text, '/ui/consent');
      const form = login ?? consent;
      expect(form, `${what}: neither a login nor a consent form: ${resp.text.slice(0, 200)}`);
      const kind = login ? 'login' : 'consent';
      this.pages.push(kind);
      for (const field of ['csrf_token', 'return_to']) {
        expect(form.fields[field], `${kind} form: hidden ${field} missing or empty`);
      }
      if (login) {
        resp = await this.submit(resp, login, { username, password });
      } else {
        expect(
          consent.buttons.some(([n, v]) => n === 'decision' && v === decision),
          `consent form: no decision=${decision} button in ${JSON.stringify(consent.buttons)}`,
        );
        resp = await this.submit(resp, consent, { decision });
      }
    }
    throw new Failed(`no redirect to ${REDIRECT_URI} after ${MAX_HOPS} hops (pages: ${this.pages})`);
  }
}

// ---- the checks --------------------------------------------------------------------------

function sameList(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** One authorization request built by openid-client, walked through the pages by `browser`. */
async function authorize(config, browser, options = {}) {
  const pkceCodeVerifier = client.randomPKCECodeVerifier();
  const expectedNonce = client.randomNonce();
  const expectedState = client.randomState();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT_URI,
    scope: SCOPE,
    code_challenge: await client.calculatePKCECodeChallenge(pkceCodeVerifier),
    code_challenge_method: 'S256',
    nonce: expectedNonce,
    state: expectedState,
  });
  const location = await browser.authorize(url.href, options);
  return {
    location,
    pages: [...browser.pages],
    checks: { pkceCodeVerifier, expectedNonce, expectedState, idTokenExpected: true },
  };
}

/** OIDC Core 3.1.3.6: left half of the hash of the access token, base64url; hash per the ID token's alg. */
function atHash(idToken, accessToken) {
  const { alg } = JSON.parse(Buffer.from(idToken.split('.')[0], 'base64url').toString());
  const hash = { RS256: 'sha256', PS256: 'sha256', ES256: 'sha256', RS384: 'sha384', PS384: 'sha384', ES384: 'sha384' }[alg] ?? 'sha512';
  const digest = createHash(hash).update(accessToken, 'ascii').digest();
  return digest.subarray(0, digest.length / 2).toString('base64url');
}

function checkTokens(tokens, clientId) {
  expect(tokens.access_token, 'no access_token');
  expect(tokens.refresh_token, 'no refresh_token');
  expect(tokens.id_token, 'no id_token');
  expect(String(tokens.token_type).toLowerCase() === 'bearer', `token_type ${tokens.token_type}`);
  const claims = tokens.claims();
  expect(claims.iss === BASE, `iss ${claims.iss}`);
  expect(claims.aud === clientId || (Array.isArray(claims.aud) && claims.aud.includes(clientId)), `aud ${claims.aud}`);
  expect(typeof claims.auth_time === 'number', `auth_time ${claims.auth_time}`);
  expect(typeof claims.sid === 'string' && claims.sid, `sid ${claims.sid}`);
  expect(Array.isArray(claims.amr) && claims.amr.length > 0, `amr ${JSON.stringify(claims.amr)}`);
  expect(typeof claims.at_hash === 'string' && claims.at_hash, 'at_hash missing');
  expect(claims.at_hash === atHash(tokens.id_token, tokens.access_token), `at_hash ${claims.at_hash} does not match the access token`);
  return claims;
}

async function main() {
  const issuer = new URL(BASE);
  // The issuer is plain http on loopback: openid-client refuses that unless told.
  const insecure = { execute: [client.allowInsecureRequests] };

  const config = await check("discovery (code-public, client.None()): code flow and the 'iss' parameter advertised", async () => {
    const c = await client.discovery(issuer, PUBLIC_CLIENT_ID, undefined, client.None(), insecure);
    const meta = c.serverMetadata();
    expect(meta.issuer === BASE, `issuer ${meta.issuer}`);
    expect(meta.authorization_endpoint, 'authorization_endpoint missing');
    expect(meta.end_session_endpoint, 'end_session_endpoint missing');
    expect(meta.authorization_response_iss_parameter_supported === true, 'authorization_response_iss_parameter_supported is not true');
    expect(sameList(meta.code_challenge_methods_supported, ['S256']), `code_challenge_methods_supported ${meta.code_challenge_methods_supported}`);
    expect(meta.supportsPKCE('S256'), 'supportsPKCE("S256") is false');
    return c;
  });
  if (!config) return;

  const browser = new Browser();
  let tokens;
  let current; // the newest refresh-capable token set of code-public

  const first = await check('code flow, first-party public client: login page, no consent, 303 to the redirect URI', async () => {
    const a = await authorize(config, browser);
    expect(sameList(a.pages, ['login']), `went through ${JSON.stringify(a.pages)}, expected ["login"]`);
    return a;
  });

  if (first) {
    tokens = await check('authorizationCodeGrant: PKCE, state, nonce, iss (RFC 9207), ID token validated; at_hash matches; sid, amr, auth_time present', async () => {
      const t = await client.authorizationCodeGrant(config, new URL(first.location), first.checks);
      checkTokens(t, PUBLIC_CLIENT_ID);
      return t;
    });
  }

  if (tokens) {
    current = tokens;
    const sub = tokens.claims().sub;
    await check('fetchUserInfo with the expected subject', async () => {
      const info = await client.fetchUserInfo(config, tokens.access_token, sub);
      expect(info.sub === sub, `sub ${info.sub} != ${sub}`);
    });
    const refreshed = await check('refreshTokenGrant: new access token, rotated refresh token', async () => {
      const t = await client.refreshTokenGrant(config, tokens.refresh_token);
      expect(t.access_token && t.access_token !== tokens.access_token, 'no new access_token');
      expect(t.refresh_token && t.refresh_token !== tokens.refresh_token, 'refresh token not rotated');
      if (t.id_token) expect(t.claims().sub === sub, 'refreshed ID token has another sub');
      return t;
    });
    if (refreshed) current = refreshed;
  }

  // Mix-up defence: the same callback with another `iss` must be refused by the client.
  const mixup = await check('mix-up (RFC 9207): a callback whose iss was changed is rejected', async () => {
    const a = await authorize(config, browser);
    expect(a.pages.length === 0, `signed-in browser went through ${JSON.stringify(a.pages)}`);
    const tampered = new URL(a.location);
    expect(tampered.searchParams.get('iss') === BASE, `iss ${tampered.searchParams.get('iss')}`);
    tampered.searchParams.set('iss', 'http://127.0.0.1:9/evil-issuer');
    await expectRejection(
      () => client.authorizationCodeGrant(config, tampered, a.checks),
      (err) => /iss/.test(`${err.message} ${err.cause?.message ?? ''}`),
      'tampered iss',
    );
    return a;
  });
  if (mixup) {
    await check('...and the untampered callback of that same authorization is accepted', async () => {
      const t = await client.authorizationCodeGrant(config, new URL(mixup.location), mixup.checks);
      checkTokens(t, PUBLIC_CLIENT_ID);
    });
  }

  // Third-party confidential client with client_secret_post: consent is asked.
  const confConfig = await check('discovery (code-confidential, client_secret_post)', () =>
    client.discovery(issuer, CLIENT_ID, undefined, client.ClientSecretPost(CLIENT_SECRET), insecure),
  );
  if (confConfig) {
    await check('consent denied -> AuthorizationResponseError access_denied (state and iss still checked)', async () => {
      const a = await authorize(confConfig, browser, { decision: 'deny' });
      expect(sameList(a.pages, ['consent']), `went through ${JSON.stringify(a.pages)}, expected ["consent"]`);
      await expectRejection(
        () => client.authorizationCodeGrant(confConfig, new URL(a.location), a.checks),
        (err) => err instanceof client.AuthorizationResponseError && err.error === 'access_denied',
        'denied consent',
      );
    });
    await check('code flow, third-party client: consent page, allow, code redeemed with client_secret_post', async () => {
      const a = await authorize(confConfig, browser);
      expect(sameList(a.pages, ['consent']), `went through ${JSON.stringify(a.pages)}, expected ["consent"]`);
      const t = await client.authorizationCodeGrant(confConfig, new URL(a.location), a.checks);
      checkTokens(t, CLIENT_ID);
    });
  }

  // RP-initiated logout with the session cookie.
  if (tokens) {
    const loggedOut = await check('buildEndSessionUrl + GET with the session cookie -> 303 to post_logout_redirect_uri with state', async () => {
      const state = client.randomState();
      const url = client.buildEndSessionUrl(config, {
        id_token_hint: tokens.id_token,
        post_logout_redirect_uri: POST_LOGOUT_REDIRECT_URI,
        state,
      });
      const resp = await browser.get(url.href);
      expect(resp.status === 303, `status ${resp.status}: ${resp.text.slice(0, 200)}`);
      const want = new URL(POST_LOGOUT_REDIRECT_URI);
      want.searchParams.set('state', state);
      expect(resp.location === want.href, `Location ${resp.location}, expected ${want.href}`);
    });
    if (loggedOut) {
      await check('after logout the refresh token is refused (invalid_grant)', async () => {
        await expectRejection(
          () => client.refreshTokenGrant(config, current.refresh_token),
          isOAuthError('invalid_grant'),
          'refresh after logout',
        );
      });
      await check('after logout the browser is signed out: authorize -> 303 to the login page', async () => {
        const url = client.buildAuthorizationUrl(config, {
          redirect_uri: REDIRECT_URI,
          scope: SCOPE,
          code_challenge: await client.calculatePKCECodeChallenge(client.randomPKCECodeVerifier()),
          code_challenge_method: 'S256',
          state: client.randomState(),
        });
        const resp = await browser.get(url.href);
        expect(resp.status === 303, `status ${resp.status}`);
        expect(new URL(resp.location).pathname === '/ui/login', `Location ${resp.location}`);
      });
    }
  }
}

try {
  await main();
} catch (err) {
  failed += 1;
  console.log(`FAIL  unexpected error: ${describe(err)}`);
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);

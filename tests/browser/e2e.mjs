// End-to-end browser test of Portcullis's browser sign-in: headless Chromium (through
// playwright-core) drives the example SPA in examples/spa, Swagger UI at /docs, and the hosted
// login and consent pages. Started by run.sh, which sets up the server (with the seeded
// Swagger UI client portcullis-spa), the users, the SPA's client and the SPA.
//
// Environment:
//   E2E_ISSUER          the server's issuer URL, e.g. http://127.0.0.1:8080
//   E2E_SPA_URL         the SPA's origin, e.g. http://127.0.0.1:5173
//   E2E_CLIENT_ID       the SPA's public client id
//   E2E_ALICE_PASSWORD  alice's password (alice signs in)
//   E2E_BOB_PASSWORD    bob's password (bob gets locked out)
//   E2E_CAROL_PASSWORD  carol's password (carol authorizes Swagger UI)
//   E2E_UPSTREAM_ISSUER a second Portcullis, the server's provider `google` (user gwen)
//   E2E_GWEN_PASSWORD   gwen's password at that upstream
//   E2E_CHROMIUM        the Chromium binary (default /usr/bin/chromium)
//   E2E_TIMEOUT_MS      per-step timeout (default 20000)
//
// Prints one line per scenario ("ok N - ..." or "FAIL N - ..."), then "browser: N passed,
// N failed"; exits non-zero when any scenario failed.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { chromium } from 'playwright-core';

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`e2e: ${name} is not set`);
    process.exit(2);
  }
  return value;
}

const ISSUER = required('E2E_ISSUER').replace(/\/+$/, '');
const SPA = required('E2E_SPA_URL').replace(/\/+$/, '');
const CLIENT_ID = required('E2E_CLIENT_ID');
const ALICE = { username: 'alice', password: required('E2E_ALICE_PASSWORD') };
const BOB = { username: 'bob', password: required('E2E_BOB_PASSWORD') };
const CAROL = { username: 'carol', password: required('E2E_CAROL_PASSWORD') };
const UPSTREAM = required('E2E_UPSTREAM_ISSUER').replace(/\/+$/, '');
const GWEN = { username: 'gwen', password: required('E2E_GWEN_PASSWORD') };
const CHROMIUM = process.env.E2E_CHROMIUM || '/usr/bin/chromium';
const TIMEOUT = Number.parseInt(process.env.E2E_TIMEOUT_MS || '20000', 10);

const ISSUER_ORIGIN = new URL(ISSUER).origin;
const REDIRECT_URI = `${SPA}/callback.html`;
const POST_LOGOUT_URI = `${SPA}/`;
const INCORRECT = 'The username or password is incorrect.';
// Swagger UI at /docs: the client it is set up with (seeded by the server) and its receiver.
const SWAGGER_CLIENT_ID = 'portcullis-spa';
const SWAGGER_RECEIVER = `${ISSUER}/docs/oauth-receiver.html`;
// Statuses that app.js shows while it is still working.
const BUSY = new Set(['loading', 'completing sign-in', 'redirecting to sign in', 'refreshing', 'signing out']);

// ---- helpers ------------------------------------------------------------------------------

const b64url = (buf) => Buffer.from(buf).toString('base64url');

function pkce() {
  const verifier = b64url(randomBytes(32));
  const challenge = b64url(createHash('sha256').update(verifier).digest());
  return { verifier, challenge };
}

let discovery;

function authorizeUrl({ challenge, state, nonce, prompt }) {
  const url = new URL(discovery.authorization_endpoint);
  const params = {
    response_type: 'code',
    client_id: CLIENT_ID,
    redirect_uri: REDIRECT_URI,
    scope: 'openid profile email',
    state,
    nonce,
    code_challenge: challenge,
    code_challenge_method: 'S256',
  };
  if (prompt) params.prompt = prompt;
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  return url.toString();
}

/** A fresh authorization request: its URL and the secrets needed to check its answer. */
function newRequest(prompt) {
  const { verifier, challenge } = pkce();
  const state = b64url(randomBytes(16));
  const nonce = b64url(randomBytes(16));
  return { url: authorizeUrl({ challenge, state, nonce, prompt }), verifier, state, nonce };
}

async function tokenRequest(form) {
  const response = await fetch(discovery.token_endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(form),
  });
  const text = await response.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.status, json, text };
}

async function getMe(accessToken, path = '/api/v1/users/me') {
  const response = await fetch(`${ISSUER}${path}`, {
    headers: { authorization: `Bearer ${accessToken}` },
  });
  const text = await response.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.status, json, text };
}

function decodeJwtPayload(jwt) {
  const parts = String(jwt).split('.');
  assert.equal(parts.length, 3, 'a JWT has three parts');
  return JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
}

const isLoginPage = (url) => url.origin === ISSUER_ORIGIN && url.pathname === '/ui/login';
const isCallback = (url) => url.href.startsWith(`${REDIRECT_URI}?`);

/** The query of the URL a navigation ended on, which must be the SPA's redirect URI. */
function callbackParams(href) {
  const url = new URL(href);
  assert.ok(isCallback(url), `expected a redirect to ${REDIRECT_URI}, ended on ${href}`);
  return url.searchParams;
}

/** Waits until the SPA's #status is no longer a busy one and returns it. */
async function settledStatus(page) {
  await page.waitForFunction(
    (busy) => {
      const el = document.getElementById('status');
      return el && !busy.includes(el.textContent);
    },
    [...BUSY],
    { timeout: TIMEOUT },
  );
  return (await page.textContent('#status')).trim();
}

async function expectStatus(page, want) {
  const got = await settledStatus(page);
  assert.equal(got, want, `the SPA's #status is "${got}", expected "${want}"`);
}

/** The user oidc-client-ts keeps in sessionStorage (access, refresh and ID tokens). */
async function storedUser(page) {
  return page.evaluate(() => {
    for (let i = 0; i < sessionStorage.length; i += 1) {
      const key = sessionStorage.key(i);
      if (key.startsWith('oidc.user:')) return JSON.parse(sessionStorage.getItem(key));
    }
    return null;
  });
}

/** Fills and submits the login form; returns the answer to the POST. */
async function submitLogin(page, { username, password }) {
  assert.ok(isLoginPage(new URL(page.url())), `expected the login page, on ${page.url()}`);
  await page.fill('#username', username);
  await page.fill('#password', password);
  // The next document's load event: the 400 page itself, or the end of the redirects.
  const [response] = await Promise.all([
    page.waitForResponse(
      (r) => r.request().method() === 'POST' && new URL(r.url()).pathname === '/ui/login',
      { timeout: TIMEOUT },
    ),
    page.waitForEvent('load', { timeout: TIMEOUT }),
    page.click('form[action="/ui/login"] button[type="submit"]'),
  ]);
  return response;
}

/** Opens a hand-built authorization request in a new page and expects the login page. */
async function openLoginPage(context) {
  const page = await context.newPage();
  const request = newRequest();
  const response = await page.goto(request.url);
  assert.ok(response, 'no response to the authorization request');
  assert.ok(isLoginPage(new URL(page.url())), `the authorization request did not lead to /ui/login but to ${page.url()}`);
  assert.equal(response.status(), 200, `GET /ui/login answered ${response.status()}`);
  return { page, request, response };
}

async function expectIncorrect(page, response, what) {
  assert.equal(response.status(), 400, `${what}: POST /ui/login answered ${response.status()}, expected 400`);
  assert.ok(isLoginPage(new URL(page.url())), `${what}: left the login page for ${page.url()}`);
  const alert = page.locator('#login-error');
  assert.equal(await alert.count(), 1, `${what}: no #login-error on the page`);
  assert.equal(await alert.getAttribute('role'), 'alert', `${what}: #login-error is not role=alert`);
  // The message, after an optional "Error:" prefix (marked up for those who cannot see colour).
  const text = (await alert.innerText()).replace(/\s+/g, ' ').trim();
  assert.ok(text === INCORRECT || text === `Error: ${INCORRECT}`, `${what}: the alert says "${text}"`);
}

/** Navigates to a prompt=none authorization request and returns where it ended. */
async function promptNone(page) {
  const request = newRequest('none');
  const response = await page.goto(request.url);
  assert.ok(response, 'no response to the prompt=none request');
  return { request, params: callbackParams(response.url()) };
}

function expectLoginRequired({ request, params }) {
  assert.equal(params.get('error'), 'login_required', `prompt=none without a session: got ${params}`);
  assert.equal(params.get('state'), request.state, 'prompt=none: state not echoed');
  assert.equal(params.get('iss'), ISSUER, 'prompt=none: iss is not the issuer');
  assert.equal(params.get('code'), null, 'prompt=none without a session: a code was issued');
}

// ---- scenarios ----------------------------------------------------------------------------

let browser;
const shared = {}; // the signed-in SPA page of scenario 1, used by scenarios 2-4
const logs = []; // the browser's console messages, printed when a scenario fails

async function newContext() {
  const context = await browser.newContext();
  context.setDefaultTimeout(TIMEOUT);
  context.setDefaultNavigationTimeout(TIMEOUT);
  context.on('page', (page) => {
    page.on('console', (m) => logs.push(`[console.${m.type()}] ${page.url()}: ${m.text()}`));
    page.on('pageerror', (e) => logs.push(`[pageerror] ${page.url()}: ${e.message}`));
  });
  return context;
}

function needSpaPage() {
  assert.ok(shared.page, 'scenario 1 did not leave a signed-in SPA');
  return shared.page;
}

const scenarios = [
  ['SPA sign-in: login page, consent, back in the SPA with the username from the API', async () => {
    const context = await newContext();
    const page = await context.newPage();
    const authorizeRequests = [];
    const tokenBodies = [];
    page.on('request', (r) => {
      const url = new URL(r.url());
      if (url.href.startsWith(discovery.authorization_endpoint)) authorizeRequests.push(url);
      if (r.method() === 'POST' && url.href === discovery.token_endpoint) tokenBodies.push(new URLSearchParams(r.postData() ?? ''));
    });

    await page.goto(`${SPA}/`);
    await expectStatus(page, 'signed out');
    await page.click('#signin');
    // Either the login page, or the SPA's own error (e.g. discovery refused by CORS).
    await Promise.race([
      page.waitForURL((u) => isLoginPage(u)),
      page.waitForFunction(() => document.getElementById('status')?.textContent.startsWith('error')),
    ]);
    if (!isLoginPage(new URL(page.url()))) {
      assert.fail(`the SPA did not reach /ui/login: #status "${await page.textContent('#status')}"`);
    }
    assert.equal(authorizeRequests.length, 1, 'the SPA did not go through the authorization endpoint');
    const authz = authorizeRequests[0].searchParams;
    assert.equal(authz.get('response_type'), 'code');
    assert.equal(authz.get('code_challenge_method'), 'S256', 'the SPA did not use PKCE S256');
    assert.match(authz.get('code_challenge') ?? '', /^[A-Za-z0-9_-]{43}$/, 'no S256 code_challenge');
    assert.equal(
      await page.locator('form[action="/ui/login"] input[type="hidden"][name="csrf_token"]').count(), 1,
      'the login form has no hidden csrf_token',
    );

    const login = await submitLogin(page, ALICE);
    assert.ok([302, 303].includes(login.status()), `POST /ui/login answered ${login.status()}, expected a redirect`);
    const consent = page.locator('form[action="/ui/consent"]');
    await consent.waitFor({ state: 'visible' });
    assert.equal(new URL(page.url()).origin, ISSUER_ORIGIN, 'the consent page is not on the server');
    const consentText = await page.locator('body').innerText();
    assert.match(consentText, /profile/i, 'the consent page does not list the profile scope');
    assert.match(consentText, /e-?mail/i, 'the consent page does not list the email scope');
    assert.equal(await consent.locator('input[type="hidden"][name="csrf_token"]').count(), 1, 'consent form has no csrf_token');

    await page.click('button[name="decision"][value="allow"]');
    await page.waitForURL(`${SPA}/`);
    await expectStatus(page, 'signed in');
    assert.equal((await page.textContent('#username')).trim(), 'alice');
    assert.equal(tokenBodies.length, 1, 'expected one token request from the SPA');
    assert.equal(tokenBodies[0].get('grant_type'), 'authorization_code');
    assert.match(tokenBodies[0].get('code_verifier') ?? '', /^[A-Za-z0-9._~-]{43,128}$/, 'no code_verifier sent');
    const user = await storedUser(page);
    assert.ok(user?.access_token && user?.refresh_token && user?.id_token, 'the SPA holds no access, refresh and ID token');
    assert.equal((await page.textContent('#access-token-tail')).trim(), user.access_token.slice(-8));
    shared.page = page;
    shared.tokenBodies = tokenBodies;
  }],

  ['Refresh: the refresh_token grant gives the SPA a new access token', async () => {
    const page = needSpaPage();
    const before = (await page.textContent('#access-token-tail')).trim();
    const userBefore = await storedUser(page);
    const sent = shared.tokenBodies.length;
    assert.match(before, /^.{8}$/, `no access-token tail before refreshing: "${before}"`);
    await page.click('#refresh');
    await expectStatus(page, 'refreshed');
    const after = (await page.textContent('#access-token-tail')).trim();
    assert.notEqual(after, before, 'the access token did not change');
    const userAfter = await storedUser(page);
    assert.equal(after, userAfter.access_token.slice(-8));
    assert.notEqual(userAfter.access_token, userBefore.access_token);
    const grants = shared.tokenBodies.slice(sent).map((b) => b.get('grant_type'));
    assert.deepEqual(grants, ['refresh_token'], 'the SPA did not refresh with the refresh_token grant');
    assert.equal((await page.textContent('#username')).trim(), 'alice', 'the refreshed token no longer reads the profile');
  }],

  ['Sessions: /api/v1/users/me/sessions lists the current browser session', async () => {
    const page = needSpaPage();
    const user = await storedUser(page);
    assert.ok(user?.access_token, 'no access token in the SPA storage');
    const { status, json, text } = await getMe(user.access_token, '/api/v1/users/me/sessions');
    assert.equal(status, 200, `GET /api/v1/users/me/sessions answered ${status}: ${text}`);
    assert.ok(Array.isArray(json?.items) && json.items.length >= 1, `no sessions listed: ${text}`);
    const current = json.items.filter((s) => s.current === true);
    assert.equal(current.length, 1, `expected exactly one current session: ${text}`);
    assert.match(String(current[0].method), /pwd|password|browser/i, `current session method: ${current[0].method}`);
    assert.match(String(current[0].user_agent), /Chrom/i, `current session user agent: ${current[0].user_agent}`);
    for (const field of ['id', 'created_at', 'last_seen_at']) {
      assert.ok(current[0][field], `the current session has no ${field}`);
    }
  }],

  ['Logout: end_session returns to the SPA at once and ends the session and its tokens', async () => {
    const page = needSpaPage();
    const user = await storedUser(page);
    assert.ok(user?.refresh_token && user?.access_token, 'no tokens in the SPA storage');
    const before = await getMe(user.access_token);
    assert.equal(before.status, 200, `the access token did not work before sign-out: ${before.status}`);

    // Every document the tab shows from the click until it is back on the SPA.
    const committed = [];
    const onNav = (frame) => {
      if (frame === page.mainFrame()) committed.push(frame.url());
    };
    page.on('framenavigated', onNav);
    const back = page.waitForEvent('framenavigated', {
      predicate: (f) => f === page.mainFrame() && new URL(f.url()).origin === new URL(SPA).origin,
    });
    await page.click('#signout');
    await back.catch(() => {
      throw new Error(`not back on the SPA after sign-out; the tab showed: ${committed.join(', ') || page.url()}`);
    });
    await page.waitForLoadState('load');
    await expectStatus(page, 'signed out');
    page.off('framenavigated', onNav);
    const onServer = committed.filter((u) => new URL(u).origin === ISSUER_ORIGIN);
    assert.deepEqual(onServer, [], `a page of the server was shown during sign-out: ${onServer.join(', ')}`);
    const landed = new URL(committed[0]);
    assert.equal(`${landed.origin}${landed.pathname}`, POST_LOGOUT_URI, `sign-out landed on ${landed.href}`);
    assert.ok(landed.searchParams.get('state'), `the post-logout redirect carried no state: ${landed.href}`);
    assert.equal(await storedUser(page), null, 'the SPA still holds a user');

    const refresh = await tokenRequest({ grant_type: 'refresh_token', refresh_token: user.refresh_token, client_id: CLIENT_ID });
    assert.equal(refresh.status, 400, `the old refresh token: ${refresh.status} ${refresh.text}`);
    assert.equal(refresh.json?.error, 'invalid_grant', `the old refresh token: ${refresh.text}`);
    const me = await getMe(user.access_token);
    assert.equal(me.status, 401, `the old access token at /api/v1/users/me: ${me.status} ${me.text}`);
    expectLoginRequired(await promptNone(page));
  }],

  ['prompt=none: a code (with iss) with a session, login_required without one', async () => {
    const context = await newContext();
    const { page, request } = await openLoginPage(context);
    const login = await submitLogin(page, ALICE);
    assert.ok([302, 303].includes(login.status()), `POST /ui/login answered ${login.status()}, expected a redirect`);
    if (!isCallback(new URL(page.url()))) {
      // Consent is remembered from scenario 1; accept it here if it was not, so that the
      // prompt=none checks below still run.
      await page.locator('form[action="/ui/consent"]').waitFor({ state: 'visible' });
      await page.click('button[name="decision"][value="allow"]');
      await page.waitForURL((u) => isCallback(u));
    }
    const first = callbackParams(page.url());
    assert.equal(first.get('state'), request.state);
    assert.ok(first.get('code'), `no code after signing in: ${first}`);
    // PKCE is enforced: the code with a wrong verifier is refused.
    const wrong = await tokenRequest({
      grant_type: 'authorization_code', code: first.get('code'), redirect_uri: REDIRECT_URI,
      client_id: CLIENT_ID, code_verifier: pkce().verifier,
    });
    assert.equal(wrong.status, 400, `a code with the wrong code_verifier: ${wrong.status} ${wrong.text}`);
    assert.equal(wrong.json?.error, 'invalid_grant', `a code with the wrong code_verifier: ${wrong.text}`);

    const silent = await promptNone(page);
    const params = silent.params;
    assert.equal(params.get('error'), null, `prompt=none with a session: ${params}`);
    assert.ok(params.get('code'), `prompt=none with a session gave no code: ${params}`);
    assert.equal(params.get('state'), silent.request.state, 'state not echoed');
    assert.equal(params.get('iss'), ISSUER, 'iss is not the issuer');
    const tokens = await tokenRequest({
      grant_type: 'authorization_code', code: params.get('code'), redirect_uri: REDIRECT_URI,
      client_id: CLIENT_ID, code_verifier: silent.request.verifier,
    });
    assert.equal(tokens.status, 200, `redeeming the prompt=none code: ${tokens.status} ${tokens.text}`);
    const claims = decodeJwtPayload(tokens.json.id_token);
    assert.equal(claims.nonce, silent.request.nonce, 'the ID token does not carry the nonce');
    assert.equal(claims.iss, ISSUER);
    assert.equal(claims.aud === CLIENT_ID || (Array.isArray(claims.aud) && claims.aud.includes(CLIENT_ID)), true, 'aud');
    const me = await getMe(tokens.json.access_token);
    assert.equal(me.json?.username, 'alice', `the prompt=none token: ${me.status} ${me.text}`);

    const fresh = await newContext();
    expectLoginRequired(await promptNone(await fresh.newPage()));
    await fresh.close();
    await context.close();
  }],

  ['Wrong password: 400, the "incorrect" alert, still on /ui/login', async () => {
    const context = await newContext();
    const { page } = await openLoginPage(context);
    const response = await submitLogin(page, { username: ALICE.username, password: `${ALICE.password}x` });
    await expectIncorrect(page, response, 'wrong password');
    const unknown = await submitLogin(page, { username: 'nobody-here', password: ALICE.password });
    await expectIncorrect(page, unknown, 'unknown user');
    await context.close();
  }],

  ['Locked account: after 3 wrong passwords the right one gets the same "incorrect" alert', async () => {
    const context = await newContext();
    const { page } = await openLoginPage(context);
    for (let i = 1; i <= 3; i += 1) {
      const response = await submitLogin(page, { username: BOB.username, password: `wrong-${i}-${BOB.password}` });
      await expectIncorrect(page, response, `wrong password ${i}`);
    }
    const wrongBody = await page.locator('form[action="/ui/login"]').innerText();
    const response = await submitLogin(page, BOB);
    await expectIncorrect(page, response, 'right password on a locked account');
    assert.equal(await page.locator('form[action="/ui/login"]').innerText(), wrongBody, 'the locked answer differs from a wrong password');
    assert.doesNotMatch(await page.locator('body').innerText(), /lock|too many|try again later/i, 'the page hints at the lock');
    const silent = await promptNone(page);
    expectLoginRequired(silent);
    await context.close();
  }],

  ['CSRF: POST /ui/login without a token or with another browser\'s token is 403', async () => {
    const mine = await newContext();
    const other = await newContext();
    const { page } = await openLoginPage(mine);
    const { page: otherPage } = await openLoginPage(other);
    const field = (p, name) => p.locator(`form[action="/ui/login"] input[name="${name}"]`).inputValue();
    const ownToken = await field(page, 'csrf_token');
    const otherToken = await field(otherPage, 'csrf_token');
    const returnTo = await field(page, 'return_to');
    assert.ok(ownToken && otherToken, 'no csrf_token on the login pages');
    assert.notEqual(ownToken, otherToken, 'two browsers got the same csrf_token');

    // The page's request context sends this browser's cookies; Origin is set as a browser would.
    const post = (form) => page.request.post(`${ISSUER}/ui/login`, {
      form, maxRedirects: 0, headers: { origin: ISSUER_ORIGIN },
    });
    const credentials = { username: ALICE.username, password: ALICE.password, return_to: returnTo };
    const missing = await post(credentials);
    assert.equal(missing.status(), 403, `without csrf_token: ${missing.status()}`);
    assert.match(missing.headers()['content-type'] ?? '', /text\/html/, 'the 403 is not an HTML page');
    const foreign = await post({ ...credentials, csrf_token: otherToken });
    assert.equal(foreign.status(), 403, `with another browser's csrf_token: ${foreign.status()}`);
    expectLoginRequired(await promptNone(page));
    // Control: the same request with this browser's own token signs in, so the 403s above
    // came from the token and not from anything else in the request.
    const own = await post({ ...credentials, csrf_token: ownToken });
    assert.ok([302, 303].includes(own.status()), `with this browser's own csrf_token: ${own.status()}`);
    await mine.close();
    await other.close();
  }],

  ['Clickjacking: /ui/login sends frame-ancestors \'none\', X-Frame-Options DENY, no-referrer', async () => {
    const context = await newContext();
    const { page, response } = await openLoginPage(context);
    const headers = await response.allHeaders();
    const csp = headers['content-security-policy'] ?? '';
    assert.match(csp, /(^|;)\s*frame-ancestors\s+'none'\s*(;|$)/, `content-security-policy: "${csp}"`);
    assert.equal((headers['x-frame-options'] ?? '').toUpperCase(), 'DENY', `x-frame-options: "${headers['x-frame-options']}"`);
    assert.equal((headers['referrer-policy'] ?? '').toLowerCase(), 'no-referrer', `referrer-policy: "${headers['referrer-policy']}"`);
    // And Chromium does refuse to show it in a frame of another origin.
    const loginUrl = page.url();
    await page.goto(`${SPA}/`);
    await page.evaluate((src) => new Promise((resolve) => {
      const frame = document.createElement('iframe');
      frame.addEventListener('load', resolve);
      frame.src = src;
      document.body.append(frame);
      setTimeout(resolve, 5000);
    }), loginUrl);
    const child = page.mainFrame().childFrames()[0];
    assert.ok(child, 'no iframe');
    assert.equal(await child.locator('#password').count(), 0, 'the login page rendered inside a frame');
    await context.close();
  }],

  ['Swagger UI: Authorize (authorization code + PKCE) in a popup, then Try it out on /users/me', async () => {
    const context = await newContext();
    const page = await context.newPage();
    const authorizeRequests = [];
    context.on('request', (r) => {
      if (r.url().startsWith(`${discovery.authorization_endpoint}?`)) authorizeRequests.push(new URL(r.url()));
    });
    const docs = await page.goto(`${ISSUER}/docs`);
    assert.equal(docs?.status(), 200, `GET /docs answered ${docs?.status()}`);
    const authorizeButton = page.locator('.scheme-container .btn.authorize');
    await authorizeButton.click();
    // One dialog section per flow of the oauth2 scheme; this one is the authorization code's.
    const section = page.locator('.modal-ux .auth-container')
      .filter({ has: page.locator('h4', { hasText: 'authorizationCode' }) });
    await section.waitFor({ state: 'visible' });
    assert.match(await section.locator('h4').innerText(), /with PKCE/, 'Swagger UI does not use PKCE');
    assert.equal(
      await section.locator('#client_id_authorizationCode').inputValue(), SWAGGER_CLIENT_ID,
      'the dialog is not prefilled with the seeded client',
    );
    for (const scope of ['openid', 'profile']) {
      // The checkbox itself is hidden; its label is what a user clicks.
      await section.locator(`label[for="${scope}-authorizationCode-checkbox-oauth2"]`).click();
      assert.ok(await section.locator(`input[data-value="${scope}"]`).isChecked(), `the ${scope} scope is not ticked`);
    }

    const [popup] = await Promise.all([
      context.waitForEvent('page'),
      section.locator('.auth-btn-wrapper button.authorize').click(),
    ]);
    // Every document the popup shows, and its closing by the receiver.
    const shown = [];
    popup.on('framenavigated', (f) => {
      if (f === popup.mainFrame()) shown.push(f.url());
    });
    const closed = new Promise((resolve) => {
      popup.once('close', resolve);
    });
    await popup.waitForURL((u) => isLoginPage(u)).catch(() => {
      throw new Error(`the popup did not show the login page but ${popup.isClosed() ? '(closed)' : popup.url()}`);
    });
    assert.equal(authorizeRequests.length, 1, 'the popup did not start at the authorization endpoint');
    const authz = authorizeRequests[0].searchParams;
    assert.equal(authz.get('response_type'), 'code');
    assert.equal(authz.get('client_id'), SWAGGER_CLIENT_ID);
    assert.equal(authz.get('redirect_uri'), SWAGGER_RECEIVER, 'Swagger UI sent another redirect_uri');
    assert.equal(authz.get('code_challenge_method'), 'S256', 'Swagger UI did not use PKCE S256');
    assert.match(authz.get('code_challenge') ?? '', /^[A-Za-z0-9_-]{43}$/, 'no S256 code_challenge');
    assert.deepEqual((authz.get('scope') ?? '').split(' ').sort(), ['openid', 'profile'], `scope: ${authz.get('scope')}`);

    // Sign in: the popup goes back to the authorization endpoint, then (first-party client,
    // no consent) to the receiver, which hands the code to Swagger UI, which redeems it.
    const tokenResponse = page.waitForResponse(
      (r) => r.request().method() === 'POST' && r.url() === discovery.token_endpoint,
      { timeout: TIMEOUT },
    );
    tokenResponse.catch(() => {}); // awaited below, unless the scenario fails before
    await popup.fill('#username', CAROL.username);
    await popup.fill('#password', CAROL.password);
    const [login] = await Promise.all([
      popup.waitForResponse(
        (r) => r.request().method() === 'POST' && new URL(r.url()).pathname === '/ui/login',
        { timeout: TIMEOUT },
      ),
      popup.click('form[action="/ui/login"] button[type="submit"]'),
    ]);
    assert.ok([302, 303].includes(login.status()), `POST /ui/login answered ${login.status()}, expected a redirect`);
    const token = await tokenResponse.catch(() => {
      throw new Error(`Swagger UI made no token request; the popup showed: ${shown.join(', ')}`);
    });
    await withTimeout(closed, TIMEOUT, 'the receiver closing the popup').catch(() => {
      throw new Error(`the popup did not close; it showed: ${shown.join(', ')}`);
    });
    const receiver = shown.map((u) => new URL(u)).find((u) => `${u.origin}${u.pathname}` === SWAGGER_RECEIVER);
    assert.ok(receiver, `the popup never reached ${SWAGGER_RECEIVER}; it showed: ${shown.join(', ')}`);
    assert.equal(receiver.searchParams.get('state'), authz.get('state'), 'the receiver got another state');
    assert.equal(receiver.searchParams.get('iss'), ISSUER, 'the receiver got no iss');
    const code = receiver.searchParams.get('code');
    assert.ok(code, `no code at the receiver: ${receiver.search}`);

    const sent = new URLSearchParams(token.request().postData() ?? '');
    assert.equal(sent.get('grant_type'), 'authorization_code');
    assert.equal(sent.get('code'), code, 'Swagger UI redeemed another code');
    assert.equal(sent.get('client_id'), SWAGGER_CLIENT_ID);
    assert.equal(sent.get('redirect_uri'), SWAGGER_RECEIVER);
    const verifier = sent.get('code_verifier') ?? '';
    assert.match(verifier, /^[A-Za-z0-9._~-]{43,128}$/, 'Swagger UI sent no code_verifier');
    assert.equal(b64url(createHash('sha256').update(verifier).digest()), authz.get('code_challenge'), 'the verifier does not match the challenge');
    const tokenText = await token.text();
    assert.equal(token.status(), 200, `POST /oauth/token answered ${token.status()}: ${tokenText}`);
    const tokens = JSON.parse(tokenText);
    assert.ok(tokens.access_token, `no access token: ${tokenText}`);
    assert.match(tokens.scope ?? '', /(^| )profile( |$)/, `the token's scope: ${tokens.scope}`);

    // The dialog shows the flow authorized, and Swagger UI holds the token it was given.
    const logout = section.locator('.auth-btn-wrapper button', { hasText: 'Logout' });
    await logout.waitFor({ state: 'visible' });
    assert.match(await section.innerText(), /Authorized/, 'the section does not say "Authorized"');
    const held = await page.evaluate(() => window.ui.authSelectors.authorized().toJS());
    assert.equal(held?.oauth2?.schema?.flow, 'authorizationCode', `Swagger UI's authorization: ${JSON.stringify(held?.oauth2?.schema)}`);
    assert.equal(held.oauth2.token?.access_token, tokens.access_token, 'Swagger UI holds another access token');
    await section.locator('.auth-btn-wrapper button.btn-done').click();
    await page.locator('.modal-ux').waitFor({ state: 'hidden' });
    assert.match(await authorizeButton.getAttribute('class'), /\blocked\b/, 'the Authorize button is not shown locked');

    // Try it out: GET /api/v1/users/me with the token.
    const op = page.locator('.opblock.opblock-get')
      .filter({ has: page.locator('.opblock-summary-path[data-path="/api/v1/users/me"]') });
    assert.equal(await op.count(), 1, 'no GET /api/v1/users/me operation on the page');
    await op.locator('.opblock-summary-control').click();
    await op.locator('.try-out__btn').click();
    const [api] = await Promise.all([
      page.waitForResponse((r) => new URL(r.url()).pathname === '/api/v1/users/me', { timeout: TIMEOUT }),
      op.locator('.execute').click(),
    ]);
    assert.equal(await api.request().headerValue('authorization'), `Bearer ${tokens.access_token}`, 'the call did not carry the token');
    assert.equal(api.status(), 200, `GET /api/v1/users/me answered ${api.status()}: ${await api.text()}`);
    const row = op.locator('.responses-wrapper .live-responses-table .response');
    await row.first().waitFor({ state: 'visible' });
    const status = (await row.first().locator('.response-col_status').innerText()).trim();
    assert.equal(status, '200', `Swagger UI shows the code ${status}`);
    const body = await row.first().locator('.response-col_description .highlight-code code').innerText();
    let me;
    try {
      me = JSON.parse(body);
    } catch {
      assert.fail(`Swagger UI shows a body that is not JSON: ${body}`);
    }
    assert.equal(me.username, CAROL.username, `Swagger UI shows: ${JSON.stringify(me)}`);
    await context.close();
  }],
  ['Sign in with Google: the SPA, our sign-in page, the upstream Portcullis\'s, consent, back signed in', async () => {
    const context = await newContext();
    const page = await context.newPage();
    await page.goto(`${SPA}/`);
    await expectStatus(page, 'signed out');
    await page.click('#signin');
    await page.waitForURL((u) => isLoginPage(u));
    const button = page.locator('form[action="/ui/upstream/google/start"] button');
    assert.equal((await button.innerText()).trim(), 'Continue with Google', 'no Google button on the sign-in page');
    await Promise.all([
      page.waitForURL((u) => u.origin === new URL(UPSTREAM).origin && u.pathname === '/ui/login'),
      button.click(),
    ]);
    await page.fill('#username', GWEN.username);
    await page.fill('#password', GWEN.password);
    await page.click('form[action="/ui/login"] button[type="submit"]');
    // Back on our server: the consent page of the (third-party) SPA, for the new account.
    const consent = page.locator('form[action="/ui/consent"]');
    await consent.waitFor({ state: 'visible' });
    assert.equal(new URL(page.url()).origin, ISSUER_ORIGIN, 'the consent page is not on the server');
    await page.click('button[name="decision"][value="allow"]');
    await page.waitForURL(`${SPA}/`);
    await expectStatus(page, 'signed in');
    assert.equal((await page.textContent('#username')).trim(), 'gwen');
    const user = await storedUser(page);
    const claims = decodeJwtPayload(user.id_token);
    assert.deepEqual(claims.amr, ['fed'], `amr of a sign-in through an upstream: ${JSON.stringify(claims.amr)}`);
    assert.equal(claims.email, 'gwen@example.com');
    const identities = await getMe(user.access_token, '/api/v1/users/me/identities');
    assert.equal(identities.status, 200, `GET /api/v1/users/me/identities: ${identities.text}`);
    assert.equal(identities.json[0]?.provider_id, 'google', `identities: ${identities.text}`);
    await context.close();
  }],

  ['Sign in with GitHub: our sign-in page, GitHub\'s authorize page, consent, back signed in as octocat', async () => {
    const context = await newContext();
    const page = await context.newPage();
    await page.goto(`${SPA}/`);
    await expectStatus(page, 'signed out');
    await page.click('#signin');
    await page.waitForURL((u) => isLoginPage(u));
    await Promise.all([
      page.waitForURL((u) => u.pathname === '/login/oauth/authorize'),
      page.click('form[action="/ui/upstream/github/start"] button'),
    ]);
    const authorize = new URL(page.url()).searchParams;
    assert.equal(authorize.get('code_challenge_method'), 'S256', 'PKCE towards GitHub');
    assert.ok(authorize.get('state'), 'a state towards GitHub');
    await page.click('#authorize');
    const consent = page.locator('form[action="/ui/consent"]');
    await consent.waitFor({ state: 'visible' });
    await page.click('button[name="decision"][value="allow"]');
    await page.waitForURL(`${SPA}/`);
    await expectStatus(page, 'signed in');
    assert.equal((await page.textContent('#username')).trim(), 'octocat');
    await context.close();
  }],

];

// ---- runner -------------------------------------------------------------------------------

async function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function main() {
  const response = await fetch(`${ISSUER}/.well-known/openid-configuration`);
  assert.equal(response.status, 200, 'discovery');
  discovery = await response.json();
  for (const key of ['authorization_endpoint', 'token_endpoint', 'end_session_endpoint']) {
    assert.ok(discovery[key], `discovery has no ${key}`);
  }
  assert.deepEqual(discovery.code_challenge_methods_supported, ['S256'], 'code_challenge_methods_supported');

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  let passed = 0;
  let failed = 0;
  try {
    for (const [i, [name, run]] of scenarios.entries()) {
      logs.length = 0;
      const started = Date.now();
      try {
        await withTimeout(run(), 8 * TIMEOUT, `scenario ${i + 1}`);
        passed += 1;
        console.log(`ok ${i + 1} - ${name} (${Date.now() - started} ms)`);
      } catch (err) {
        failed += 1;
        console.log(`FAIL ${i + 1} - ${name}: ${err.message}`);
        if (err.stack) console.error(err.stack.split('\n').slice(1, 4).join('\n'));
        for (const line of logs.slice(-20)) console.error(`    ${line}`);
      }
    }
  } finally {
    await browser.close();
  }
  console.log(`browser: ${passed} passed, ${failed} failed`);
  return failed === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`e2e: ${err.stack ?? err}`);
    process.exit(1);
  },
);

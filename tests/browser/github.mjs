// A stand-in for GitHub's OAuth endpoints and REST API, answering with the shapes GitHub
// documents (docs.github.com: "Authorizing OAuth apps", "Get the authenticated user",
// "List email addresses for the authenticated user"). Its authorize page has one button, so
// the browser test clicks through it as a user would.
//
// Environment: GH_PORT (listen on 127.0.0.1), GH_CLIENT_ID, GH_CLIENT_SECRET.
import { createServer } from 'node:http';

const PORT = Number.parseInt(process.env.GH_PORT, 10);
const CLIENT_ID = process.env.GH_CLIENT_ID;
const CLIENT_SECRET = process.env.GH_CLIENT_SECRET;
const TOKEN = 'gho_16C7e42F292c6912E7710c838347Ae178B4a';
const codes = new Map(); // code -> code_challenge

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function body(req) {
  return new Promise((resolve) => {
    let data = '';
    req.on('data', (c) => { data += c; });
    req.on('end', () => resolve(data));
  });
}

function json(res, status, value) {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' });
  res.end(JSON.stringify(value));
}

createServer(async (req, res) => {
  const url = new URL(req.url, `http://127.0.0.1:${PORT}`);
  if (req.method === 'GET' && url.pathname === '/login/oauth/authorize') {
    const q = url.searchParams;
    if (q.get('client_id') !== CLIENT_ID) return json(res, 404, { message: 'Not Found' });
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    return res.end(`<!doctype html><title>Authorize application</title>
<h1>Authorize Portcullis</h1>
<form method="post" action="/login/oauth/authorize/accept">
<input type="hidden" name="redirect_uri" value="${escape(q.get('redirect_uri'))}">
<input type="hidden" name="state" value="${escape(q.get('state'))}">
<input type="hidden" name="code_challenge" value="${escape(q.get('code_challenge') ?? '')}">
<button type="submit" id="authorize">Authorize</button>
</form>`);
  }
  if (req.method === 'POST' && url.pathname === '/login/oauth/authorize/accept') {
    const form = new URLSearchParams(await body(req));
    const code = `gh-${Math.random().toString(36).slice(2)}`;
    codes.set(code, form.get('code_challenge'));
    const to = new URL(form.get('redirect_uri'));
    to.searchParams.set('code', code);
    to.searchParams.set('state', form.get('state'));
    res.writeHead(302, { location: to.toString() });
    return res.end();
  }
  if (req.method === 'POST' && url.pathname === '/login/oauth/access_token') {
    const form = new URLSearchParams(await body(req));
    const basic = (req.headers.authorization ?? '').replace(/^Basic /, '');
    const [id, secret] = Buffer.from(basic, 'base64').toString().split(':').map(decodeURIComponent);
    const clientOk = (id === CLIENT_ID && secret === CLIENT_SECRET)
      || (form.get('client_id') === CLIENT_ID && form.get('client_secret') === CLIENT_SECRET);
    const code = form.get('code');
    if (!clientOk || !codes.has(code) || !form.get('code_verifier')) {
      return json(res, 200, {
        error: 'bad_verification_code',
        error_description: 'The code passed is incorrect or expired.',
      });
    }
    codes.delete(code);
    return json(res, 200, { access_token: TOKEN, scope: 'read:user,user:email', token_type: 'bearer' });
  }
  const authorized = (req.headers.authorization ?? '').endsWith(TOKEN);
  if (req.method === 'GET' && url.pathname === '/user') {
    if (!authorized) return json(res, 401, { message: 'Requires authentication' });
    return json(res, 200, {
      login: 'octocat', id: 583231, node_id: 'MDQ6VXNlcjU4MzIzMQ==', type: 'User',
      site_admin: false, name: 'The Octocat', email: null, created_at: '2011-01-25T18:44:36Z',
    });
  }
  if (req.method === 'GET' && url.pathname === '/user/emails') {
    if (!authorized) return json(res, 401, { message: 'Requires authentication' });
    return json(res, 200, [
      { email: 'octocat@github.com', verified: true, primary: true, visibility: 'public' },
      { email: 'octo-second@example.com', verified: false, primary: false, visibility: null },
    ]);
  }
  return json(res, 404, { message: 'Not Found' });
}).listen(PORT, '127.0.0.1');

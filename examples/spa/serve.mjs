// A tiny static server for the Portcullis SPA example (no dependency).
//
// Serves index.html, callback.html, app.js, the oidc-client-ts browser bundle, and a config.js
// generated from the environment:
//   SPA_PORT                      port to listen on (default 5173; 0 picks a free one)
//   SPA_AUTHORITY                 the Portcullis issuer URL (default http://127.0.0.1:8080)
//   SPA_CLIENT_ID                 the public client registered for this app (default spa-demo)
//   SPA_REDIRECT_URI              default http://127.0.0.1:$SPA_PORT/callback.html
//   SPA_POST_LOGOUT_REDIRECT_URI  default http://127.0.0.1:$SPA_PORT/
//   SPA_SCOPE                     default "openid profile email"
// It listens on 127.0.0.1 only and prints "listening on http://127.0.0.1:PORT" once ready.
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const env = process.env;
const requestedPort = Number.parseInt(env.SPA_PORT ?? '5173', 10);
if (!Number.isInteger(requestedPort) || requestedPort < 0 || requestedPort > 65535) {
  console.error(`SPA_PORT is not a port: ${env.SPA_PORT}`);
  process.exit(2);
}

// URL path -> [file, content type]. Nothing else is served.
const files = new Map([
  ['/', ['index.html', 'text/html; charset=utf-8']],
  ['/index.html', ['index.html', 'text/html; charset=utf-8']],
  ['/callback.html', ['callback.html', 'text/html; charset=utf-8']],
  ['/app.js', ['app.js', 'text/javascript; charset=utf-8']],
  ['/oidc-client-ts.min.js', [
    'node_modules/oidc-client-ts/dist/browser/oidc-client-ts.min.js',
    'text/javascript; charset=utf-8',
  ]],
]);

function configFor(port) {
  const origin = `http://127.0.0.1:${port}`;
  return {
    authority: env.SPA_AUTHORITY ?? 'http://127.0.0.1:8080',
    client_id: env.SPA_CLIENT_ID ?? 'spa-demo',
    redirect_uri: env.SPA_REDIRECT_URI ?? `${origin}/callback.html`,
    post_logout_redirect_uri: env.SPA_POST_LOGOUT_REDIRECT_URI ?? `${origin}/`,
    scope: env.SPA_SCOPE ?? 'openid profile email',
  };
}

const server = createServer(async (req, res) => {
  const headers = {
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    // The authorization code never leaks to the issuer (or anyone) through Referer.
    'referrer-policy': 'no-referrer',
  };
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { ...headers, allow: 'GET, HEAD' }).end();
    return;
  }
  const path = new URL(req.url ?? '/', 'http://localhost').pathname;
  let body;
  let type;
  if (path === '/favicon.ico') {
    // No icon: answered without a 404, which would only add noise to the browser's console.
    res.writeHead(204, headers).end();
    return;
  }
  if (path === '/config.js') {
    const config = configFor(server.address().port);
    body = `export const config = ${JSON.stringify(config, null, 2)};\n`;
    type = 'text/javascript; charset=utf-8';
  } else if (files.has(path)) {
    const [file, contentType] = files.get(path);
    try {
      body = await readFile(join(here, file));
    } catch (err) {
      console.error(`cannot read ${file}: ${err.message}`);
      res.writeHead(500, { ...headers, 'content-type': 'text/plain' }).end('cannot read file\n');
      return;
    }
    type = contentType;
  } else {
    res.writeHead(404, { ...headers, 'content-type': 'text/plain' }).end('not found\n');
    return;
  }
  res.writeHead(200, { ...headers, 'content-type': type, 'content-length': Buffer.byteLength(body) });
  res.end(req.method === 'HEAD' ? undefined : body);
});

server.listen(requestedPort, '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => process.exit(0));
}

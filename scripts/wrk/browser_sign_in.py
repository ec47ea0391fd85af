"""Signs a user in on Portcullis's pages as a browser would, for scripts/wrk/code.lua.

Usage: browser_sign_in.py BASE CLIENT_ID REDIRECT_URI SCOPE USERNAME PASSWORD CHALLENGE
Prints two lines: the Cookie header of the signed-in browser, and the authorization request's
path (with the PKCE S256 CHALLENGE), checked to answer with a code.
"""

import html
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

base, client_id, redirect_uri, scope, username, password, challenge = sys.argv[1:8]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


opener = urllib.request.build_opener(NoRedirect)
cookies = {}


def call(method, path, form=None):
    headers = {"Accept": "text/html"}
    if cookies:
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    data = None
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        headers["Origin"] = base
    request = urllib.request.Request(base + path, data=data, headers=headers, method=method)
    try:
        response = opener.open(request)
    except urllib.error.HTTPError as e:
        response = e
    for value in response.headers.get_all("Set-Cookie") or []:
        name, _, rest = value.split(";", 1)[0].partition("=")
        if rest and "Max-Age=0" not in value:
            cookies[name] = rest
        else:
            cookies.pop(name, None)
    return response.status, response.headers.get("Location"), response.read().decode()


def field(page, name):
    match = re.search(r'name="%s" value="([^"]*)"' % re.escape(name), page)
    if not match:
        sys.exit(f"no {name} on the sign-in page")
    return html.unescape(match.group(1))


authorize = "/oauth/authorize?" + urllib.parse.urlencode(
    {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": "bench",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
)
status, location, _ = call("GET", authorize)
if status != 303 or not location or not location.startswith("/ui/login"):
    sys.exit(f"authorization request answered {status} {location}")
status, _, page = call("GET", location)
if status != 200:
    sys.exit(f"sign-in page answered {status}")
status, location, _ = call(
    "POST",
    "/ui/login",
    {
        "csrf_token": field(page, "csrf_token"),
        "return_to": field(page, "return_to"),
        "username": username,
        "password": password,
    },
)
if status != 303:
    sys.exit(f"sign-in answered {status}")
status, location, _ = call("GET", authorize)
if status != 303 or "code=" not in (location or ""):
    sys.exit(f"signed in, the authorization request answered {status} {location}")
print("; ".join(f"{k}={v}" for k, v in cookies.items()))
print(authorize)

//! A small browser for the tests of the authorization-code flow: a cookie jar over the test
//! app's HTTP client (which never follows redirects), the hosted forms filled in the way a
//! user would, and PKCE pairs.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use std::collections::BTreeMap;

use super::helpers::{PASSWORD, TestApp};

/// A browser: its cookies, kept across requests.
pub struct Browser<'a> {
    pub app: &'a TestApp,
    pub cookies: BTreeMap<String, String>,
}

/// A page or redirect as the browser saw it.
pub struct Page {
    pub status: StatusCode,
    pub location: Option<String>,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    /// The value of the hidden or text input `name` of the page's form.
    pub fn input(&self, name: &str) -> Option<String> {
        let marker = format!("name=\"{name}\"");
        let at = self.body.find(&marker)?;
        let tag_start = self.body[..at].rfind('<')?;
        let tag_end = at + self.body[at..].find('>')?;
        let tag = &self.body[tag_start..tag_end];
        let v = tag.find("value=\"")? + 7;
        let end = tag[v..].find('"')?;
        Some(html_unescape(&tag[v..v + end]))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A query parameter of the redirect.
    pub fn redirect_param(&self, name: &str) -> Option<String> {
        let location = self.location.as_ref()?;
        let url = url::Url::parse(location).ok()?;
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

/// Undoes the page's HTML escaping (numeric character references, as askama writes them,
/// and the named ones).
fn html_unescape(s: &str) -> String {
    s.replace("&#34;", "\"")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#60;", "<")
        .replace("&lt;", "<")
        .replace("&#62;", ">")
        .replace("&gt;", ">")
        .replace("&#38;", "&")
        .replace("&amp;", "&")
}

/// A PKCE verifier and its S256 challenge.
pub fn pkce() -> (String, String) {
    let verifier = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
    (verifier, URL_SAFE_NO_PAD.encode(digest.as_ref()))
}

impl<'a> Browser<'a> {
    pub fn new(app: &'a TestApp) -> Self {
        Self {
            app,
            cookies: BTreeMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn take(&mut self, resp: reqwest::Response) -> Page {
        for set in resp.headers().get_all("set-cookie") {
            let set = set.to_str().unwrap();
            let pair = set.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || set.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), value.to_string());
            }
        }
        Page {
            status: resp.status(),
            location: resp
                .headers()
                .get("location")
                .map(|v| v.to_str().unwrap().to_string()),
            headers: resp.headers().clone(),
            body: resp.text().await.unwrap(),
        }
    }

    /// GET a path or absolute URL.
    pub async fn get(&mut self, target: &str) -> Page {
        let url = if target.starts_with("http") {
            target.to_string()
        } else {
            self.app.url(target)
        };
        let resp = self
            .app
            .http
            .get(url)
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.take(resp).await
    }

    /// POST a form as the pages do (same origin).
    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        self.post_from(path, form, Some(&self.app.base.clone()))
            .await
    }

    /// POST a form with the given `Origin` header (`None`: without one).
    pub async fn post_from(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
        origin: Option<&str>,
    ) -> Page {
        let mut req = self
            .app
            .http
            .post(self.app.url(path))
            .header("cookie", self.cookie_header())
            .form(form);
        if let Some(origin) = origin {
            req = req.header("origin", origin);
        }
        let resp = req.send().await.unwrap();
        self.take(resp).await
    }

    /// Follows the sign-in page for a request that needs one: fills in `username` and the
    /// test password; returns the answer to the form (a redirect back to the request).
    pub async fn sign_in_at(&mut self, login: &Page, username: &str) -> Page {
        assert_eq!(login.status, StatusCode::SEE_OTHER, "{}", login.body);
        let location = login.location.clone().unwrap();
        assert!(location.starts_with("/ui/login?"), "{location}");
        let page = self.get(&location).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let csrf = page.input("csrf_token").unwrap();
        let return_to = page.input("return_to").unwrap();
        self.post(
            "/ui/login",
            &[
                ("csrf_token", &csrf),
                ("return_to", &return_to),
                ("username", username),
                ("password", PASSWORD),
            ],
        )
        .await
    }

    /// Answers a consent page.
    pub async fn consent(&mut self, page: &Page, decision: &str) -> Page {
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(
            page.body.contains("action=\"/ui/consent\""),
            "{}",
            page.body
        );
        let csrf = page.input("csrf_token").unwrap();
        let return_to = page.input("return_to").unwrap();
        self.post(
            "/ui/consent",
            &[
                ("csrf_token", &csrf),
                ("return_to", &return_to),
                ("decision", decision),
            ],
        )
        .await
    }
}

/// An authorization request's query.
pub fn authorize_url(params: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        s.append_pair(k, v);
    }
    format!("/oauth/authorize?{}", s.finish())
}

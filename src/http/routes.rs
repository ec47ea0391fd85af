//! The documented operations, looked up by request path, for what the middleware enforces
//! before a handler runs: the methods a path answers (the `Allow` header of a 405, RFC 9110
//! §15.5.6) and the JSON types of an operation's request body.
//!
//! Also the route template a request is counted under in the metrics (see [`Routes::label`]).
//!
//! Built once from the OpenAPI document, so it cannot drift from the routes. The body check
//! exists because poem-openapi reads a JSON number or boolean into a `String` field as text
//! and `null` into an optional field as "absent"; the document promises strings and
//! non-nullable fields, so such bodies are refused with 400 `malformed_request` naming the
//! field, as the parser itself refuses the types it does not coerce.
//! Only wire types are checked here (string, integer, number, boolean, array, object, null);
//! the rules of each value (lengths, formats) stay with the domain types. Like the body-size
//! limit, the check runs before authentication: the document is public, so a 400 for a
//! mistyped body tells an anonymous caller nothing it does not already say.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use ::metrics::SharedString;
use poem::http::Method;
use serde_json::{Map, Value};

/// A documented path: its segments (`None` for a `{param}`), its `Allow` value, and the JSON
/// body schema of each method that takes one.
#[derive(Debug)]
struct DocumentedPath {
    /// The path as documented, e.g. `/api/v1/admin/users/{id}`.
    template: Arc<str>,
    segments: Vec<Option<String>>,
    allow: String,
    json_bodies: Vec<(Method, Value)>,
}

/// Why a JSON body does not have the documented types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrongType {
    /// Where in the body, e.g. `title` or `roles[1]`; empty for the body itself.
    pub field: String,
    pub reason: String,
}

/// Deepest body nesting followed (serde_json refuses deeper documents anyway).
const MAX_DEPTH: usize = 64;

#[derive(Debug, Default)]
pub struct Routes {
    paths: Vec<DocumentedPath>,
    /// `components.schemas` of the document, for `$ref`s.
    schemas: Map<String, Value>,
    /// Metric labels of the paths without parameters (documented or added with
    /// [`Routes::with_paths`]), looked up before the templates are tried.
    literal: HashMap<String, Arc<str>>,
    /// Prefixes served by nested endpoints (e.g. `/docs`), labelled by the prefix.
    prefixes: Vec<Arc<str>>,
}

impl Routes {
    /// From an OpenAPI 3.0 document. A path with `GET` also answers `HEAD` (poem serves HEAD
    /// through the GET endpoint).
    pub fn from_document(doc: &Value) -> Self {
        let mut paths = Vec::new();
        for (template, operations) in doc
            .get("paths")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let mut methods = BTreeSet::new();
            let mut json_bodies = Vec::new();
            for (name, operation) in operations.as_object().into_iter().flatten() {
                let Ok(method) = Method::from_bytes(name.to_ascii_uppercase().as_bytes()) else {
                    continue;
                };
                if method == Method::GET {
                    methods.insert(Method::HEAD.to_string());
                }
                methods.insert(method.to_string());
                let json_schema = operation
                    .pointer("/requestBody/content")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                    .find(|(media, _)| is_json(media))
                    .and_then(|(_, content)| content.get("schema").cloned());
                if let Some(schema) = json_schema {
                    json_bodies.push((method, schema));
                }
            }
            paths.push(DocumentedPath {
                template: Arc::from(template.as_str()),
                segments: template
                    .split('/')
                    .map(|s| (!(s.starts_with('{') && s.ends_with('}'))).then(|| s.to_string()))
                    .collect(),
                allow: methods.into_iter().collect::<Vec<_>>().join(", "),
                json_bodies,
            });
        }
        let literal = paths
            .iter()
            .filter(|p| p.segments.iter().all(Option::is_some))
            .map(|p| (p.template.to_string(), p.template.clone()))
            .collect();
        Self {
            paths,
            schemas: doc
                .pointer("/components/schemas")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            literal,
            prefixes: Vec::new(),
        }
    }

    /// Adds routes served outside the document, for their metric labels only: exact paths,
    /// and prefixes whose whole subtree is one label (`/docs` for `/docs/...`).
    pub fn with_paths(mut self, exact: &[&str], prefixes: &[&str]) -> Self {
        for path in exact {
            self.literal.insert((*path).to_string(), Arc::from(*path));
        }
        self.prefixes.extend(prefixes.iter().map(|p| Arc::from(*p)));
        self
    }

    /// The metric label of a request path: its route template (`/api/v1/admin/users/{id}`),
    /// never the raw path, or [`crate::metrics::OTHER_ROUTE`] for a path no route serves, so
    /// the labels stay few whatever is requested.
    pub fn label(&self, path: &str) -> SharedString {
        if let Some(label) = self.literal.get(path) {
            return SharedString::from(label.clone());
        }
        if let Some(prefix) = self.prefixes.iter().find(|p| {
            path.strip_prefix(p.as_ref())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        }) {
            return SharedString::from(prefix.clone());
        }
        match self.find(path) {
            Some(p) => SharedString::from(p.template.clone()),
            None => SharedString::const_str(crate::metrics::OTHER_ROUTE),
        }
    }

    fn find(&self, path: &str) -> Option<&DocumentedPath> {
        let segments: Vec<&str> = path.split('/').collect();
        self.paths.iter().find(|p| {
            p.segments.len() == segments.len()
                && p.segments.iter().zip(&segments).all(|(t, s)| match t {
                    Some(literal) => literal == s,
                    None => !s.is_empty(),
                })
        })
    }

    /// The `Allow` value for a request path, when it is a documented path.
    pub fn allow(&self, path: &str) -> Option<&str> {
        self.find(path).map(|p| p.allow.as_str())
    }

    /// Whether the operation at `method` `path` takes a JSON body.
    pub fn takes_json(&self, method: &Method, path: &str) -> bool {
        self.body_schema(method, path).is_some()
    }

    fn body_schema(&self, method: &Method, path: &str) -> Option<&Value> {
        self.find(path)?
            .json_bodies
            .iter()
            .find(|(m, _)| m == method)
            .map(|(_, schema)| schema)
    }

    /// Checks the JSON types of `body` against the documented request body of `method` `path`.
    /// Bodies that are not JSON at all, and operations without a JSON body, pass: the
    /// operation's own parser answers those.
    pub fn check_json_body(
        &self,
        method: &Method,
        path: &str,
        body: &[u8],
    ) -> Result<(), WrongType> {
        let Some(schema) = self.body_schema(method, path) else {
            return Ok(());
        };
        let Ok(value) = serde_json::from_slice::<Value>(body) else {
            return Ok(());
        };
        self.check(&value, schema, String::new(), 0)
    }

    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        let mut schema = schema;
        for _ in 0..8 {
            match schema
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/components/schemas/"))
                .and_then(|name| self.schemas.get(name))
            {
                Some(target) => schema = target,
                None => break,
            }
        }
        schema
    }

    fn check(
        &self,
        value: &Value,
        schema: &Value,
        at: String,
        depth: usize,
    ) -> Result<(), WrongType> {
        if depth > MAX_DEPTH {
            return Ok(());
        }
        let schema = self.resolve(schema);
        for part in schema
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.check(value, part, at.clone(), depth + 1)?;
        }
        let Some(ty) = schema.get("type").and_then(Value::as_str) else {
            // No declared type (or a oneOf / anyOf): nothing to check here.
            return Ok(());
        };
        let wrong = |reason: &str| {
            Err(WrongType {
                field: at.clone(),
                reason: reason.to_string(),
            })
        };
        if value.is_null() {
            return if schema.get("nullable") == Some(&Value::Bool(true)) {
                Ok(())
            } else {
                wrong(&format!("must be {}, not null", article(ty)))
            };
        }
        match (ty, value) {
            ("string", Value::String(_))
            | ("boolean", Value::Bool(_))
            | ("number", Value::Number(_)) => Ok(()),
            ("integer", Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(()),
            ("array", Value::Array(items)) => {
                let Some(item_schema) = schema.get("items") else {
                    return Ok(());
                };
                for (i, item) in items.iter().enumerate() {
                    self.check(item, item_schema, format!("{at}[{i}]"), depth + 1)?;
                }
                Ok(())
            }
            ("object", Value::Object(fields)) => {
                let properties = schema.get("properties").and_then(Value::as_object);
                for (name, field) in fields {
                    let declared = properties
                        .and_then(|p| p.get(name))
                        .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()));
                    if let Some(declared) = declared {
                        let path = if at.is_empty() {
                            name.clone()
                        } else {
                            format!("{at}.{name}")
                        };
                        self.check(field, declared, path, depth + 1)?;
                    }
                }
                Ok(())
            }
            ("string" | "boolean" | "number" | "integer" | "array" | "object", _) => {
                wrong(&format!("must be {}", article(ty)))
            }
            _ => Ok(()),
        }
    }
}

fn article(ty: &str) -> &'static str {
    match ty {
        "string" => "a string",
        "boolean" => "a boolean",
        "number" => "a number",
        "integer" => "an integer",
        "array" => "an array",
        "object" => "an object",
        _ => "of the documented type",
    }
}

/// `application/json`, with or without parameters, or a `+json` media type.
pub fn is_json(media_type: &str) -> bool {
    let essence = media_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn routes() -> Routes {
        Routes::from_document(&json!({
            "paths": {
                "/things": {
                    "get": {},
                    "post": {"requestBody": {"content": {"application/json; charset=utf-8": {
                        "schema": {"$ref": "#/components/schemas/Thing"}}}}}
                },
                "/things/{id}": {"delete": {}},
                "/form": {"post": {"requestBody": {"content": {
                    "application/x-www-form-urlencoded": {"schema": {"type": "object"}}}}}}
            },
            "components": {"schemas": {"Thing": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "note": {"type": "string", "nullable": true},
                    "count": {"type": "integer"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "inner": {"$ref": "#/components/schemas/Inner"}
                }
            }, "Inner": {"type": "object", "properties": {"on": {"type": "boolean"}}}}}
        }))
    }

    #[test]
    fn allow_lists_the_documented_methods() {
        let r = routes();
        assert_eq!(r.allow("/things"), Some("GET, HEAD, POST"));
        assert_eq!(r.allow("/things/42"), Some("DELETE"));
        assert_eq!(r.allow("/things/"), None);
        assert_eq!(r.allow("/nope"), None);
        assert_eq!(r.paths.len(), 3);
    }

    #[test]
    fn json_body_types() {
        let r = routes();
        let check =
            |body: Value| r.check_json_body(&Method::POST, "/things", body.to_string().as_bytes());
        assert_eq!(
            check(
                json!({"name": "a", "note": null, "count": 3, "tags": ["x"], "inner": {"on": true}})
            ),
            Ok(())
        );
        assert_eq!(check(json!({"unknown": 1})), Ok(()));
        for (body, field) in [
            (json!({"name": 1}), "name"),
            (json!({"name": null}), "name"),
            (json!({"count": 1.5}), "count"),
            (json!({"count": "1"}), "count"),
            (json!({"tags": ["x", false]}), "tags[1]"),
            (json!({"tags": "x"}), "tags"),
            (json!({"inner": {"on": "yes"}}), "inner.on"),
            (json!([]), ""),
        ] {
            assert_eq!(
                check(body.clone()).map_err(|e| e.field),
                Err(field.to_string()),
                "{body}"
            );
        }
        // Not JSON, or an operation without a JSON body: left to the operation's own parser.
        assert_eq!(r.check_json_body(&Method::POST, "/things", b"{"), Ok(()));
        assert_eq!(
            r.check_json_body(&Method::POST, "/form", b"{\"a\": 1}"),
            Ok(())
        );
        assert!(r.takes_json(&Method::POST, "/things"));
        assert!(!r.takes_json(&Method::GET, "/things"));
    }

    #[test]
    fn metric_labels_are_route_templates() {
        let r = routes().with_paths(&["/ui/login"], &["/docs"]);
        for (path, label) in [
            ("/things", "/things"),
            ("/things/42", "/things/{id}"),
            ("/things/a%20b", "/things/{id}"),
            ("/things/", "other"),
            ("/things/42/more", "other"),
            ("/ui/login", "/ui/login"),
            ("/docs", "/docs"),
            ("/docs/oauth-receiver.html", "/docs"),
            ("/docsx", "other"),
            ("/", "other"),
            ("/users/alice", "other"),
        ] {
            assert_eq!(&*r.label(path), label, "{path}");
        }
    }

    #[test]
    fn json_media_types() {
        for yes in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/problem+json",
        ] {
            assert!(is_json(yes), "{yes}");
        }
        for no in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "",
            "application/jsonx",
        ] {
            assert!(!is_json(no), "{no}");
        }
    }
}

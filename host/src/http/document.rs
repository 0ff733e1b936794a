//! `GET /openapi.json`: the OpenAPI 3.1 document of the API, generated from
//! the handlers' `#[utoipa::path]` annotations (the same ones the router is
//! built from), completed here with what every route shares — the errors
//! any request can meet, the bearer token where the server asks for one —
//! so each operation lists every status it can answer with.

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};

use super::HttpOptions;

/// The document as served: JSON, made once when the router is built.
#[derive(Clone)]
pub struct Text(pub axum::body::Bytes);

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of this server's API", body = Object))
)]
pub async fn serve(axum::Extension(Text(text)): axum::Extension<Text>) -> axum::response::Response {
    ([(header::CONTENT_TYPE, "application/json")], text).into_response()
}

const BEARER: &str = "bearer";

/// The document as JSON. utoipa 5 writes a link's `operationId`,
/// `operationRef` and `requestBody` in snake case; OpenAPI spells them in
/// camel case, and clients following links look for those names.
pub fn to_json(doc: &OpenApi) -> Vec<u8> {
    fn fix(v: &mut serde_json::Value, in_links: bool) {
        match v {
            serde_json::Value::Object(m) => {
                if in_links {
                    for link in m.values_mut() {
                        if let serde_json::Value::Object(link) = link {
                            for (from, to) in [
                                ("operation_id", "operationId"),
                                ("operation_ref", "operationRef"),
                                ("request_body", "requestBody"),
                            ] {
                                if let Some(x) = link.remove(from) {
                                    link.insert(to.into(), x);
                                }
                            }
                        }
                    }
                    return;
                }
                for (k, x) in m.iter_mut() {
                    fix(x, k == "links");
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(|x| fix(x, false)),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(doc).unwrap_or_default();
    fix(&mut v, false);
    serde_json::to_vec(&v).unwrap_or_default()
}

/// The operations of a path, whatever their method.
fn operations(doc: &mut OpenApi) -> impl Iterator<Item = &mut Operation> {
    doc.paths.paths.values_mut().flat_map(|item| {
        [
            item.get.as_mut(),
            item.post.as_mut(),
            item.put.as_mut(),
            item.delete.as_mut(),
            item.patch.as_mut(),
            item.head.as_mut(),
            item.options.as_mut(),
            item.trace.as_mut(),
        ]
        .into_iter()
        .flatten()
    })
}

/// Adds `status` with an [`super::schema::ErrorBody`] answer unless the
/// operation describes it already.
fn error(op: &mut Operation, status: u16, description: &str) {
    let status = status.to_string();
    if op.responses.responses.contains_key(&status) {
        return;
    }
    let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
    let response =
        ResponseBuilder::new().description(description).content("application/json", content).build();
    op.responses.responses.insert(status, RefOr::T(response));
}

/// Completes every operation of `doc` with the errors any request to it
/// can meet; with `auth`, each requires the bearer token (401 without).
pub fn finish(doc: &mut OpenApi, auth: bool) {
    for op in operations(doc) {
        let has_params = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
        let has_body = op.request_body.is_some();
        let tags = op.tags.clone().unwrap_or_default();
        if has_params || has_body {
            error(op, 400, "Malformed parameters or body: the error says which");
        }
        if has_body {
            error(op, 408, "The body stopped arriving for longer than the server waits");
            error(op, 413, "The body is larger than the server accepts (--max-body)");
            error(op, 415, "The body is not declared as JSON (`Content-Type: application/json`)");
        }
        error(op, 431, "The request's headers are larger than 32 KiB");
        if tags.iter().any(|t| t == "log" || t == "commands" || t == "evolution") {
            error(op, 503, "The event log is shutting down or unavailable; retry");
        }
        if auth {
            error(op, 401, "Missing or wrong bearer token");
            op.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
        }
    }
}

/// Where the answer of one operation leads (OpenAPI links): the
/// identifiers it returns or was given, passed to the operations that take
/// them. Clients and fuzzers follow them from a projection's name to its
/// tables and rows, from a handler to its commands, from an append to its
/// stream.
const LINKS: &[Link] = &[
    ("list_projections", "200", "get_projection", &[("name", "$response.body#/projections/0/name")]),
    ("list_projections", "200", "list_tables", &[("name", "$response.body#/projections/0/name")]),
    ("get_projection", "200", "list_tables", &[("name", "$request.path.name")]),
    ("get_projection", "200", "list_dead_letters", &[("name", "$request.path.name")]),
    ("get_projection", "200", "rebuild", &[("name", "$request.path.name")]),
    ("get_projection", "200", "verify", &[("name", "$request.path.name")]),
    (
        "list_tables",
        "200",
        "read_rows",
        &[("name", "$request.path.name"), ("table", "$response.body#/tables/0/name")],
    ),
    ("list_tables", "200", "query", &[("name", "$request.path.name")]),
    ("list_handlers", "200", "send_command", &[("handler", "$response.body#/handlers/0/name")]),
    ("append", "201", "read_stream", &[("stream_id", "$request.path.stream_id")]),
    ("send_command", "200", "read_stream", &[("stream_id", "$request.body#/stream_id")]),
];

/// From an operation's answer (operation id, status) to another operation,
/// with the runtime expressions of its parameters.
type Link = (&'static str, &'static str, &'static str, &'static [(&'static str, &'static str)]);

fn add_links(doc: &mut OpenApi) {
    use utoipa::openapi::link::LinkBuilder;
    for op in operations(doc) {
        let Some(id) = op.operation_id.clone() else { continue };
        for (from, status, to, params) in LINKS.iter().filter(|l| l.0 == id) {
            let Some(RefOr::T(response)) = op.responses.responses.get_mut(*status) else { continue };
            let mut link = LinkBuilder::new().operation_id(*to);
            for (name, expr) in *params {
                link = link.parameter(*name, *expr);
            }
            response.links.insert(format!("{from}_{to}"), RefOr::T(link.build()));
        }
    }
}

/// The whole document: title, version, links, and the bearer scheme if a
/// token is set.
pub fn complete(mut doc: OpenApi, http: &HttpOptions) -> OpenApi {
    add_links(&mut doc);
    doc.info.title = "refract".into();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc.info.description = Some(
        "A CQRS / event-sourcing runtime: an append-only event log, command handlers and projections as \
         sandboxed WebAssembly plugins, read models queried over HTTP. Errors are JSON `{\"error\": …}`, \
         with details for some."
            .into(),
    );
    if http.token.is_some() {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
    doc
}

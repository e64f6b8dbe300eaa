//! The OpenAPI 3.1 document of every REST endpoint, served at
//! `/v1/openapi.json`.
//!
//! Schemas are derived from the very types the routes read and write, so
//! the document cannot drift from them; each route's method, path and
//! answers are declared here, one function per route (the functions are
//! never called: they carry the declaration). The end-to-end test
//! `openapi::` checks the live gateway against this document.

use std::sync::OnceLock;

use shared::protocol::{
    ApiError, Attachment, Message, MessageKind, NotifyLevel, Role, RoomKind, Thread,
};
use shared::protocol::{CreateRoom, ErrorCode, SendMessage, User};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::http::GuestRequest;
use crate::requests::{Empty, HistoryPage, RoomList, SendAck};
use crate::rooms::{JoinAck, RoomAck};
use crate::server_api::{BackendMessage, MemberRole, NewRoom, Profile};
use crate::store::RoomSummary;

/// `POST /v1/auth/guest`'s answer.
#[derive(ToSchema)]
#[allow(dead_code)]
struct GuestReply {
    /// An HS256 JWT, valid 24 h.
    token: String,
    user: User,
}

/// `{user}`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct UserReply {
    user: User,
}

/// `{online: [user]}`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct Presence {
    online: Vec<User>,
}

/// `/healthz` and `/readyz`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct Health {
    /// `ok`, `ready` or `unavailable`.
    status: String,
    /// Why not ready.
    reason: Option<String>,
}

/// The document, built once.
pub fn document() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        ApiDoc::openapi()
            .to_json()
            .expect("a derived document always serializes")
    })
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "chat",
        description = "The REST side of the chat service: members' endpoints (a bearer token), \
                       the server API for the application's backend (`X-Api-Key`) and the \
                       operator's probes. The WebSocket `GET /v1/ws` carries the same requests \
                       as JSON frames; see docs/protocol.md. Every refusal is `{code, message}`."
    ),
    paths(
        guest,
        list_rooms,
        post_message,
        get_messages,
        search,
        join_room,
        leave_room,
        server_put_user,
        server_create_room,
        server_put_member,
        server_delete_member,
        server_post_message,
        server_delete_message,
        server_get_messages,
        server_presence,
        server_disconnect,
        healthz,
        readyz,
        metrics,
        openapi_json,
    ),
    components(schemas(
        ApiError, ErrorCode, User, Message, MessageKind, Attachment, Role, RoomKind, Thread,
        NotifyLevel, SendMessage, CreateRoom, RoomSummary, RoomList, HistoryPage, SendAck,
        JoinAck, RoomAck, Empty, GuestRequest, GuestReply, NewRoom, MemberRole,
        BackendMessage, Profile, UserReply, Presence, Health
    )),
    modifiers(&Security),
    tags(
        (name = "members", description = "A signed-in user's own requests"),
        (name = "server", description = "The application's backend (API keys)"),
        (name = "operations", description = "Probes and metrics"),
    )
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Api-Key"))),
        );
    }
}

// The routes. Every answer a route can give is listed: the contract's
// codes map to 400, 401, 403, 404, 413, 429 and 503.

#[utoipa::path(post, path = "/v1/auth/guest", tag = "members",
    request_body = Option<GuestRequest>,
    responses(
        (status = 200, description = "A guest token", body = GuestReply),
        (status = 400, description = "A bad name or body", body = ApiError),
        (status = 403, description = "Guest sign-in is off", body = ApiError),
        (status = 413, description = "Body over 64 KiB", body = ApiError),
        (status = 503, description = "Tokens cannot be signed", body = ApiError),
    ))]
#[allow(dead_code)]
fn guest() {}

#[utoipa::path(get, path = "/v1/rooms", tag = "members", security(("bearer" = [])),
    responses(
        (status = 200, description = "The user's rooms, most recently active first", body = RoomList),
        (status = 401, description = "No valid token", body = ApiError),
        (status = 503, description = "PostgreSQL is away", body = ApiError),
    ))]
#[allow(dead_code)]
fn list_rooms() {}

#[utoipa::path(post, path = "/v1/rooms/{room}/messages", tag = "members", security(("bearer" = [])),
    params(("room" = String, Path, description = "A room id: 1-64 of A-Z a-z 0-9 _ -", pattern = "^[A-Za-z0-9_-]{1,64}$")),
    request_body = SendMessage,
    responses(
        (status = 202, description = "Stored in the stream: it will be persisted", body = SendAck),
        (status = 400, description = "A bad room id or body", body = ApiError),
        (status = 401, description = "No valid token", body = ApiError),
        (status = 403, description = "Not a member", body = ApiError),
        (status = 404, description = "`reply_to` names no message of the room", body = ApiError),
        (status = 413, description = "Text or body too large", body = ApiError),
        (status = 429, description = "Rate limited", body = ApiError),
        (status = 503, description = "Not stored in time; nothing was stored", body = ApiError),
    ))]
#[allow(dead_code)]
fn post_message() {}

#[utoipa::path(get, path = "/v1/rooms/{room}/messages", tag = "members", security(("bearer" = [])),
    params(
        ("room" = String, Path, description = "A room id", pattern = "^[A-Za-z0-9_-]{1,64}$"),
        ("after" = Option<i64>, Query, description = "The messages right after this seq"),
        ("before" = Option<i64>, Query, description = "The messages right before this seq"),
        ("limit" = Option<i64>, Query, description = "1-100 (clamped), default 50"),
        ("thread_of" = Option<uuid::Uuid>, Query, description = "Only the replies of this thread"),
    ),
    responses(
        (status = 200, description = "A page, ascending by seq", body = HistoryPage),
        (status = 400, description = "A bad room id or query", body = ApiError),
        (status = 401, description = "No valid token", body = ApiError),
        (status = 403, description = "Not a member", body = ApiError),
        (status = 503, description = "PostgreSQL is away", body = ApiError),
    ))]
#[allow(dead_code)]
fn get_messages() {}

#[utoipa::path(get, path = "/v1/search", tag = "members", security(("bearer" = [])),
    params(
        ("q" = String, Query, description = "The words to look for (Korean, Japanese, Chinese: \
                                             any part of two characters or more), 1-200 characters"),
        ("room" = Option<String>, Query, description = "Only this room", pattern = "^[A-Za-z0-9_-]{1,64}$"),
        ("limit" = Option<i64>, Query, description = "1-50, default 20", minimum = 1, maximum = 50),
    ),
    responses(
        (status = 200, description = "Matching messages of the user's rooms, best first", body = HistoryPage),
        (status = 400, description = "No or a bad query, limit or room id", body = ApiError),
        (status = 401, description = "No valid token", body = ApiError),
        (status = 403, description = "`room` is not one of the user's", body = ApiError),
        (status = 503, description = "PostgreSQL is away", body = ApiError),
    ))]
#[allow(dead_code)]
fn search() {}

#[utoipa::path(post, path = "/v1/rooms/{room}/join", tag = "members", security(("bearer" = [])),
    params(("room" = String, Path, description = "A room id", pattern = "^[A-Za-z0-9_-]{1,64}$")),
    responses(
        (status = 200, description = "A member now (a new id makes a public room)", body = JoinAck),
        (status = 400, description = "A bad room id", body = ApiError),
        (status = 401, description = "No valid token", body = ApiError),
        (status = 403, description = "A private or direct room", body = ApiError),
        (status = 503, description = "Not stored in time", body = ApiError),
    ))]
#[allow(dead_code)]
fn join_room() {}

#[utoipa::path(post, path = "/v1/rooms/{room}/leave", tag = "members", security(("bearer" = [])),
    params(("room" = String, Path, description = "A room id", pattern = "^[A-Za-z0-9_-]{1,64}$")),
    responses(
        (status = 200, description = "Not a member any more", body = Empty),
        (status = 400, description = "A bad room id", body = ApiError),
        (status = 401, description = "No valid token", body = ApiError),
        (status = 403, description = "Not a member", body = ApiError),
        (status = 503, description = "Not stored in time", body = ApiError),
    ))]
#[allow(dead_code)]
fn leave_room() {}

#[utoipa::path(put, path = "/v1/server/users/{id}", tag = "server", security(("api_key" = [])),
    params(("id" = uuid::Uuid, Path, description = "The user's id")),
    request_body = Profile,
    responses(
        (status = 200, description = "Named; users sharing a room get `user:updated`", body = UserReply),
        (status = 400, description = "A bad id, name or URL", body = ApiError),
        (status = 401, description = "No valid key", body = ApiError),
        (status = 404, description = "Not a user id", body = ApiError),
        (status = 413, description = "Body over 64 KiB", body = ApiError),
        (status = 503, description = "Not stored in time", body = ApiError),
    ))]
#[allow(dead_code)]
fn server_put_user() {}

#[utoipa::path(post, path = "/v1/server/rooms", tag = "server", security(("api_key" = [])),
    request_body = NewRoom,
    responses(
        (status = 201, description = "Created", body = RoomAck),
        (status = 400, description = "A bad body", body = ApiError),
        (status = 401, description = "No valid key", body = ApiError),
        (status = 403, description = "The room id is taken", body = ApiError),
        (status = 413, description = "Body over 64 KiB", body = ApiError),
        (status = 503, description = "Not stored in time", body = ApiError),
    ))]
#[allow(dead_code)]
fn server_create_room() {}

#[utoipa::path(put, path = "/v1/server/rooms/{room}/members/{user}", tag = "server", security(("api_key" = [])),
    params(
        ("room" = String, Path, description = "A room id", pattern = "^[A-Za-z0-9_-]{1,64}$"),
        ("user" = uuid::Uuid, Path, description = "The member's id"),
    ),
    request_body = Option<MemberRole>,
    responses(
        (status = 200, description = "A member, with this role", body = Empty),
        (status = 400, description = "A bad id or body", body = ApiError),
        (status = 401, description = "No valid key", body = ApiError),
        (status = 403, description = "The room's rules refuse it", body = ApiError),
        (status = 404, description = "No such room or member", body = ApiError),
        (status = 413, description = "Body over 64 KiB", body = ApiError),
        (status = 503, description = "Not stored in time", body = ApiError),
    ))]
#[allow(dead_code)]
fn server_put_member() {}

#[utoipa::path(delete, path = "/v1/server/rooms/{room}/members/{user}", tag = "server", security(("api_key" = [])),
    params(
        ("room" = String, Path, description = "A room id", pattern = "^[A-Za-z0-9_-]{1,64}$"),
        ("user" = uuid::Uuid, Path, description = "The member's id"),
    ),
    responses(
        (status = 200, description = "Taken out; every member gets `room:left`", body = Empty),
        (status = 400, description = "A bad id", body = ApiError),
        (status = 401, description = "No valid key", body = ApiError),
        (status = 404, description = "No such room or member", body = ApiError),
        (status = 503, description = "Not stored in time", body = ApiError),
    ))]
#[allow(dead_code)]
fn server_delete_member() {}

#[utoipa::path(post, path = "/v1/server/rooms/{room}/messages", tag = "server", security(("api_key" = [])),
    params(("room" = String, Path, description = "A room id", pattern = "^[A-Za-z0-9_-]{1,64}$")),
    request_body = BackendMessage,
    responses(
        (status = 202, description = "Stored in the stream; without `sender` a system message", body = SendAck),
        (status = 400, description = "A bad room id or body", body = ApiError),
        (status = 401, description = "No valid key", body = ApiError),
        (status = 403, description = "`sender` is not a member", body = ApiError),
        (status = 404, description = "No such room, or `reply_to` names no message of it", body = ApiError),
        (status = 413, description = "Text or body too large", body = ApiError),
        (status = 503, description = "Not stored in time", body = ApiError),
    ))]
#[allow(dead_code)]
fn server_post_message() {}

#[utoipa::path(delete, path = "/v1/server/rooms/{room}/messages/{id}", tag = "server", security(("api_key" = [])),
    params(
        ("room" = String, Path, description = "A room id", pattern = "^[A-Za-z0-9_-]{1,64}$"),
        ("id" = uuid::Uuid, Path, description = "The message's id"),
    ),
    responses(
        (status = 200, description = "Deleted; members get `message:deleted`", body = Empty),
        (status = 400, description = "A bad id", body = ApiError),
        (status = 401, description = "No valid key", body = ApiError),
        (status = 404, description = "No such message in the room", body = ApiError),
        (status = 503, description = "Not stored in time", body = ApiError),
    ))]
#[allow(dead_code)]
fn server_delete_message() {}

#[utoipa::path(get, path = "/v1/server/rooms/{room}/messages", tag = "server", security(("api_key" = [])),
    params(
        ("room" = String, Path, description = "A room id", pattern = "^[A-Za-z0-9_-]{1,64}$"),
        ("after" = Option<i64>, Query, description = "The messages right after this seq"),
        ("before" = Option<i64>, Query, description = "The messages right before this seq"),
        ("limit" = Option<i64>, Query, description = "1-100 (clamped), default 50"),
        ("thread_of" = Option<uuid::Uuid>, Query, description = "Only the replies of this thread"),
    ),
    responses(
        (status = 200, description = "A page, ascending by seq", body = HistoryPage),
        (status = 400, description = "A bad room id or query", body = ApiError),
        (status = 401, description = "No valid key", body = ApiError),
        (status = 503, description = "PostgreSQL is away", body = ApiError),
    ))]
#[allow(dead_code)]
fn server_get_messages() {}

#[utoipa::path(get, path = "/v1/server/rooms/{room}/presence", tag = "server", security(("api_key" = [])),
    params(("room" = String, Path, description = "A room id", pattern = "^[A-Za-z0-9_-]{1,64}$")),
    responses(
        (status = 200, description = "Members with an open connection on any gateway", body = Presence),
        (status = 400, description = "A bad room id", body = ApiError),
        (status = 401, description = "No valid key", body = ApiError),
        (status = 503, description = "PostgreSQL is away", body = ApiError),
    ))]
#[allow(dead_code)]
fn server_presence() {}

#[utoipa::path(post, path = "/v1/server/users/{id}/disconnect", tag = "server", security(("api_key" = [])),
    params(("id" = uuid::Uuid, Path, description = "The user's id")),
    responses(
        (status = 200, description = "Every connection of the user closes (4003)", body = Empty),
        (status = 400, description = "A bad id", body = ApiError),
        (status = 401, description = "No valid key", body = ApiError),
        (status = 404, description = "Not a user id", body = ApiError),
        (status = 503, description = "NATS is away", body = ApiError),
    ))]
#[allow(dead_code)]
fn server_disconnect() {}

#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is up", body = Health)))]
#[allow(dead_code)]
fn healthz() {}

#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "NATS and PostgreSQL answer", body = Health),
        (status = 503, description = "Not ready, and why", body = Health),
    ))]
#[allow(dead_code)]
fn readyz() {}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text", content_type = "text/plain", body = String)))]
#[allow(dead_code)]
fn metrics() {}

#[utoipa::path(get, path = "/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "This document", content_type = "application/json", body = Object)))]
#[allow(dead_code)]
fn openapi_json() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_and_lists_every_route() {
        let doc: serde_json::Value = serde_json::from_str(document()).unwrap();
        assert!(
            doc["openapi"].as_str().unwrap().starts_with("3.1"),
            "{}",
            doc["openapi"]
        );
        let paths = doc["paths"].as_object().unwrap();
        for path in [
            "/v1/auth/guest",
            "/v1/rooms",
            "/v1/rooms/{room}/messages",
            "/v1/server/rooms/{room}/members/{user}",
            "/v1/server/users/{id}/disconnect",
            "/v1/openapi.json",
        ] {
            assert!(paths.contains_key(path), "{path} missing");
        }
        let message = &doc["components"]["schemas"]["Message"]["properties"];
        assert!(
            message["sender"].to_string().contains("null"),
            "{}",
            message["sender"]
        );
    }
}

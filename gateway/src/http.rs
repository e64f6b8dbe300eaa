//! Routes. One function per route returning a filter; every refusal becomes
//! the contract's JSON error in one `recover`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use shared::health::Readiness;
use shared::protocol::{ApiError, ErrorCode, HistoryQuery, SearchQuery, SendMessage, User};
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use crate::app::{App, FRAME_HARD_LIMIT};
use crate::auth::{AuthError, Identity};
use crate::filters::{json_body, refuse, reply_json, room_id, with_app, Refusal};
use crate::requests;

fn unauthorized(err: &AuthError) -> Rejection {
    tracing::debug!(error = %err, "refused a token");
    refuse(ApiError::new(
        ErrorCode::Unauthorized,
        "a valid bearer token is required",
    ))
}

/// Every route of the gateway.
pub fn routes(
    app: Arc<App>,
    metrics: PrometheusHandle,
) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    let health = shared::health::routes(Arc::new(Ready(app.clone())), metrics);
    web_client()
        .or(guest(app.clone()))
        .or(websocket(app.clone()))
        .or(post_message(app.clone()))
        .or(get_messages(app.clone()))
        .or(search(app.clone()))
        .or(post_upload(app.clone()))
        .or(get_upload(app.clone()))
        .or(join_room(app.clone()))
        .or(leave_room(app.clone()))
        .or(list_rooms(app.clone()))
        .or(crate::server_api::routes(app))
        .or(openapi())
        .or(health)
        .recover(recover)
}

/// The web client at `/`, its files compiled into the binary.
fn web_client() -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    const INDEX: &str = include_str!("../web/index.html");
    const JS: &str = include_str!("../web/app.js");
    const MESSAGES_JS: &str = include_str!("../web/messages.js");
    const EXTRAS_JS: &str = include_str!("../web/extras.js");
    const CSS: &str = include_str!("../web/app.css");
    let file = |body: &'static str, kind: &'static str| {
        warp::reply::with_header(
            warp::reply::with_header(body, "content-type", kind),
            "cache-control",
            "no-cache",
        )
        .into_response()
    };
    let index = warp::path::end()
        .and(warp::get())
        .map(move || file(INDEX, "text/html; charset=utf-8"));
    let script = |name: &'static str, body: &'static str| {
        warp::path(name)
            .and(warp::path::end())
            .and(warp::get())
            .map(move || file(body, "text/javascript; charset=utf-8"))
    };
    let css = warp::path!("app.css")
        .and(warp::get())
        .map(move || file(CSS, "text/css; charset=utf-8"));
    index
        .or(script("app.js", JS))
        .unify()
        .or(script("messages.js", MESSAGES_JS))
        .unify()
        .or(script("extras.js", EXTRAS_JS))
        .unify()
        .or(css)
        .unify()
}

/// The caller of a `/v1` endpoint, from `Authorization: Bearer`.
fn authenticated(app: Arc<App>) -> impl Filter<Extract = (User,), Error = Rejection> + Clone {
    warp::header::optional::<String>("authorization").and_then(move |header: Option<String>| {
        let app = app.clone();
        async move {
            let token = header
                .as_deref()
                .and_then(bearer)
                .ok_or_else(|| unauthorized(&AuthError::Missing))?;
            app.keys
                .verify(token)
                .await
                .map(|id| id.user)
                .map_err(|e| unauthorized(&e))
        }
    })
}

fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub(crate) struct GuestRequest {
    #[serde(default)]
    name: Option<String>,
}

/// `GET /v1/openapi.json`: the document of every REST endpoint.
fn openapi() -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::path!("v1" / "openapi.json").and(warp::get()).map(|| {
        warp::reply::with_header(
            crate::openapi::document(),
            "content-type",
            "application/json",
        )
        .into_response()
    })
}

/// `POST /v1/auth/guest`.
fn guest(
    app: Arc<App>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::path!("v1" / "auth" / "guest")
        .and(warp::post())
        .and(json_body::<GuestRequest>())
        .and(with_app(app))
        .and_then(|req: GuestRequest, app: Arc<App>| async move {
            if !app.guest_signin {
                return Err(refuse(ApiError::new(
                    ErrorCode::Forbidden,
                    "guest sign-in is off: sign in with the application",
                )));
            }
            let name = match req.name {
                Some(n) => shared::validate::display_name(&n).map_err(refuse)?,
                None => crate::auth::friendly_name(),
            };
            let (token, user) = app.keys.mint_guest(name).map_err(|e| {
                tracing::error!(error = %e, "minting a guest token");
                refuse(ApiError::new(ErrorCode::Unavailable, "cannot sign tokens"))
            })?;
            Ok::<_, Rejection>(reply_json(
                StatusCode::OK,
                &serde_json::json!({"token": token, "user": user}),
            ))
        })
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// `GET /v1/ws`: the token from the header or `?token=`, checked before
/// the upgrade.
fn websocket(
    app: Arc<App>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::path!("v1" / "ws")
        .and(warp::get())
        .and(warp::header::optional::<String>("authorization"))
        .and(
            warp::query::<TokenQuery>()
                .or(warp::any().map(|| TokenQuery { token: None }))
                .unify(),
        )
        .and(with_app(app))
        .and_then(
            |header: Option<String>, q: TokenQuery, app: Arc<App>| async move {
                let token = header
                    .as_deref()
                    .and_then(bearer)
                    .map(str::to_owned)
                    .or(q.token)
                    .ok_or_else(|| unauthorized(&AuthError::Missing))?;
                let identity = app
                    .keys
                    .verify(&token)
                    .await
                    .map_err(|e| unauthorized(&e))?;
                Ok::<_, Rejection>((identity, app))
            },
        )
        .untuple_one()
        .and(crate::websocket::upgrade())
        .and_then(
            |identity: Identity, app: Arc<App>, ws: crate::websocket::Upgrade| async move {
                let Ok(permit) = app.connection_slots.clone().try_acquire_owned() else {
                    metrics::counter!("gateway_connections_refused_total").increment(1);
                    return Err(refuse(ApiError::new(
                        ErrorCode::Unavailable,
                        "this gateway is at its connection limit; try another or later",
                    )));
                };
                Ok(ws.accept(FRAME_HARD_LIMIT, move |socket| {
                    let sessions = app.sessions.clone();
                    sessions.track_future(crate::session::serve(socket, app, identity, permit))
                }))
            },
        )
}

/// `POST /v1/rooms/{room}/messages`: the WebSocket send over HTTP.
fn post_message(
    app: Arc<App>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::path!("v1" / "rooms" / ..)
        .and(room_id())
        .and(warp::path!("messages"))
        .and(warp::post())
        .and(authenticated(app.clone()))
        .and(json_body::<SendMessage>())
        .and(with_app(app))
        .and_then(
            |room: String, user: User, req: SendMessage, app: Arc<App>| async move {
                let ack = requests::send(&app, &user, &room, req)
                    .await
                    .map_err(refuse)?;
                Ok::<_, Rejection>(reply_json(StatusCode::ACCEPTED, &ack))
            },
        )
}

/// `GET /v1/rooms/{room}/messages`.
fn get_messages(
    app: Arc<App>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::path!("v1" / "rooms" / ..)
        .and(room_id())
        .and(warp::path!("messages"))
        .and(warp::get())
        .and(authenticated(app.clone()))
        .and(warp::query::<HistoryQuery>())
        .and(with_app(app))
        .and_then(
            |room: String, user: User, q: HistoryQuery, app: Arc<App>| async move {
                let page = requests::history(&app, &user, &room, &q)
                    .await
                    .map_err(refuse)?;
                Ok::<_, Rejection>(reply_json(StatusCode::OK, &page))
            },
        )
}

/// `GET /v1/search`.
fn search(
    app: Arc<App>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::path!("v1" / "search")
        .and(warp::get())
        .and(authenticated(app.clone()))
        .and(warp::query::<SearchQuery>())
        .and(with_app(app))
        .and_then(|user: User, q: SearchQuery, app: Arc<App>| async move {
            let page = crate::search::search(&app, &user, &q)
                .await
                .map_err(refuse)?;
            Ok::<_, Rejection>(reply_json(StatusCode::OK, &page))
        })
}

#[derive(Debug, Default, Deserialize)]
struct UploadQuery {
    #[serde(default)]
    name: Option<String>,
}

/// Where the request came from, as its client reached it: the origin of
/// the URLs handed back (a proxy's `X-Forwarded-Proto` kept).
fn origin() -> impl Filter<Extract = (Option<String>,), Error = Rejection> + Clone {
    warp::header::optional::<String>("host")
        .and(warp::header::optional::<String>("x-forwarded-proto"))
        .map(|host: Option<String>, proto: Option<String>| {
            let proto = proto
                .filter(|p| p == "https")
                .unwrap_or_else(|| "http".into());
            host.filter(|h| !h.contains(['/', ' ']))
                .map(|h| format!("{proto}://{h}"))
        })
}

/// `POST /v1/uploads`: the file as the body.
fn post_upload(
    app: Arc<App>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::path!("v1" / "uploads")
        .and(warp::post())
        .and(authenticated(app.clone()))
        .and(warp::query::<UploadQuery>())
        .and(warp::header::optional::<String>("content-type"))
        .and(warp::header::optional::<u64>("content-length"))
        .and(origin())
        .and(warp::body::stream())
        .and(with_app(app))
        .and_then(
            |user: User,
             q: UploadQuery,
             content_type: Option<String>,
             declared: Option<u64>,
             origin: Option<String>,
             body,
             app: Arc<App>| async move {
                let incoming = crate::uploads::Incoming {
                    content_type,
                    name: q.name,
                    declared,
                    origin,
                };
                let reply = crate::uploads::upload(&app, &user, incoming, Box::pin(body))
                    .await
                    .map_err(refuse)?;
                Ok::<_, Rejection>(reply_json(StatusCode::CREATED, &reply))
            },
        )
}

/// `GET /v1/uploads/{id}`: the file, with its type.
fn get_upload(
    app: Arc<App>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::path!("v1" / "uploads" / String)
        .and(warp::get())
        .and(authenticated(app.clone()))
        .and(with_app(app))
        .and_then(|id: String, user: User, app: Arc<App>| async move {
            let Ok(id) = id.parse::<uuid::Uuid>() else {
                return Err(refuse(ApiError::new(ErrorCode::NotFound, "no such file")));
            };
            let file = crate::uploads::download(&app, &user, id)
                .await
                .map_err(refuse)?;
            Ok::<_, Rejection>(file_reply(file))
        })
}

/// A file as a response: its type; shown in the page only if it is a
/// picture, sound or video, and never run as a page of this origin.
fn file_reply(file: crate::uploads::Download) -> warp::reply::Response {
    let disposition = if crate::uploads::shown_inline(&file.mime) {
        "inline"
    } else {
        "attachment"
    };
    let encoded: String = url::form_urlencoded::byte_serialize(file.name.as_bytes()).collect();
    let mut response = warp::reply::Response::new(file.bytes.into());
    let headers = response.headers_mut();
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = warp::http::HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    set("content-type", file.mime);
    set(
        "content-disposition",
        format!(
            "{disposition}; filename*=UTF-8''{}",
            encoded.replace('+', "%20")
        ),
    );
    set("x-content-type-options", "nosniff".into());
    set(
        "content-security-policy",
        "sandbox; default-src 'none'".into(),
    );
    set("cache-control", "private, max-age=3600".into());
    response
}

/// `POST /v1/rooms/{room}/<action>` by a signed-in user.
fn room_action(
    app: Arc<App>,
    action: &'static str,
) -> impl Filter<Extract = (String, User, Arc<App>), Error = Rejection> + Clone {
    warp::path!("v1" / "rooms" / ..)
        .and(room_id())
        .and(warp::path(action))
        .and(warp::path::end())
        .and(warp::post())
        .and(authenticated(app.clone()))
        .and(with_app(app))
}

/// `POST /v1/rooms/{room}/join`: `room:join` over HTTP.
fn join_room(
    app: Arc<App>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    room_action(app, "join").and_then(|room: String, user: User, app: Arc<App>| async move {
        let ack = crate::rooms::join(&app, &user, &room)
            .await
            .map_err(refuse)?;
        Ok::<_, Rejection>(reply_json(StatusCode::OK, &ack))
    })
}

/// `POST /v1/rooms/{room}/leave`: `room:leave` over HTTP.
fn leave_room(
    app: Arc<App>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    room_action(app, "leave").and_then(|room: String, user: User, app: Arc<App>| async move {
        let ack = crate::rooms::leave(&app, &user, &room)
            .await
            .map_err(refuse)?;
        Ok::<_, Rejection>(reply_json(StatusCode::OK, &ack))
    })
}

/// `GET /v1/rooms`.
fn list_rooms(
    app: Arc<App>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::path!("v1" / "rooms")
        .and(warp::get())
        .and(authenticated(app.clone()))
        .and(with_app(app))
        .and_then(|user: User, app: Arc<App>| async move {
            let list = requests::rooms(&app, &user).await.map_err(refuse)?;
            Ok::<_, Rejection>(reply_json(StatusCode::OK, &list))
        })
}

/// Maps every rejection to `{"code", "message"}` with the contract's status.
async fn recover(rejection: Rejection) -> Result<warp::reply::Response, Infallible> {
    let err = if let Some(Refusal(err)) = rejection.find::<Refusal>() {
        err.clone()
    } else if rejection.is_not_found() {
        ApiError::new(ErrorCode::NotFound, "no such endpoint")
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        ApiError::too_large("body is over 64 KiB")
    } else if rejection.find::<warp::reject::InvalidQuery>().is_some() {
        ApiError::bad_request("bad query string: after, before and limit are integers")
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::new(ErrorCode::NotFound, "no such endpoint for this method")
    } else if rejection.find::<warp::reject::MissingHeader>().is_some()
        || rejection.find::<warp::reject::InvalidHeader>().is_some()
    {
        ApiError::bad_request("missing or bad header (a WebSocket upgrade needs its headers)")
    } else {
        tracing::debug!(?rejection, "unexpected rejection");
        ApiError::bad_request("bad request")
    };
    let status = StatusCode::from_u16(err.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    Ok(reply_json(status, &err))
}

/// The gateway's `/readyz`.
struct Ready(Arc<App>);

impl Readiness for Ready {
    fn check(&self) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(async move {
            match self.0.why_not_ready() {
                Some(why) => Err(why.to_owned()),
                None => Ok(()),
            }
        })
    }
}

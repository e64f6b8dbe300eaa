//! The server API, for the application's backend (`/v1/server/`): it acts
//! as the service itself, with an API key (`X-Api-Key`, one of
//! `CHAT_API_KEYS`) instead of a user's token, and needs no membership.
//! Every change it makes is a job in the stream like a member's own.

use std::sync::Arc;

use serde::Deserialize;
use shared::events::RoomEvent;
use shared::protocol::{event, ApiError, ErrorCode, HistoryQuery, User};
use uuid::Uuid;
use warp::http::StatusCode;
use warp::{Filter, Rejection};

use crate::app::App;
use crate::filters::{json_body, refuse, reply_json, room_id};
use crate::publish::publish_event;
use crate::store::{self, db_unavailable};

/// Every route of the server API.
pub fn routes(
    app: Arc<App>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    room_history(app.clone())
        .or(room_presence(app.clone()))
        .unify()
        .or(disconnect(app.clone()))
        .unify()
        .or(put_user(app))
        .unify()
}

/// Lets a request through with a valid key; every other gets 401.
fn with_key(app: Arc<App>) -> impl Filter<Extract = (Arc<App>,), Error = Rejection> + Clone {
    warp::header::optional::<String>("x-api-key").and_then(move |key: Option<String>| {
        let app = app.clone();
        async move {
            if key.is_some_and(|k| app.api_keys.accepts(&k)) {
                Ok(app)
            } else {
                Err(refuse(ApiError::new(
                    ErrorCode::Unauthorized,
                    "a valid X-Api-Key is required",
                )))
            }
        }
    })
}

fn user_id() -> impl Filter<Extract = (Uuid,), Error = Rejection> + Clone {
    warp::path::param::<String>().and_then(|id: String| async move {
        id.parse::<Uuid>()
            .map_err(|_| refuse(ApiError::bad_request("a user id is a UUID")))
    })
}

/// `GET /v1/server/rooms/{room}/messages`: a room's history, as members see it.
fn room_history(
    app: Arc<App>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::path!("v1" / "server" / "rooms" / ..)
        .and(room_id())
        .and(warp::path!("messages"))
        .and(warp::get())
        .and(with_key(app))
        .and(warp::query::<HistoryQuery>())
        .and_then(|room: String, app: Arc<App>, q: HistoryQuery| async move {
            let messages = store::history(&app.pool, &room, &q)
                .await
                .map_err(|e| refuse(db_unavailable(e)))?;
            Ok::<_, Rejection>(reply_json(
                StatusCode::OK,
                &serde_json::json!({ "messages": messages }),
            ))
        })
}

/// `GET /v1/server/rooms/{room}/presence`: its members with an open
/// connection on any gateway.
fn room_presence(
    app: Arc<App>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::path!("v1" / "server" / "rooms" / ..)
        .and(room_id())
        .and(warp::path!("presence"))
        .and(warp::get())
        .and(with_key(app))
        .and_then(|room: String, app: Arc<App>| async move {
            let members = store::members(&app.pool, &room)
                .await
                .map_err(|e| refuse(db_unavailable(e)))?;
            let online: Vec<User> = match app.presence.get() {
                Some(p) => members.into_iter().filter(|m| p.online(m.id)).collect(),
                None => Vec::new(),
            };
            Ok::<_, Rejection>(reply_json(
                StatusCode::OK,
                &serde_json::json!({ "online": online }),
            ))
        })
}

/// `POST /v1/server/users/{id}/disconnect`: every connection of the user,
/// on every gateway, closes with 4003.
fn disconnect(
    app: Arc<App>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::path!("v1" / "server" / "users" / ..)
        .and(user_id())
        .and(warp::path!("disconnect"))
        .and(warp::post())
        .and(with_key(app))
        .and_then(|user: Uuid, app: Arc<App>| async move {
            let ev = RoomEvent::new(
                crate::hub::DISCONNECT_EVENT,
                "",
                serde_json::json!({ "user": user }),
            );
            app.client
                .publish_with_headers(app.subjects.user_events(&user), ev.headers(), ev.frame)
                .await
                .map_err(|_| refuse(ApiError::unavailable()))?;
            Ok::<_, Rejection>(reply_json(StatusCode::OK, &serde_json::json!({})))
        })
}

#[derive(Debug, Deserialize)]
struct Profile {
    name: String,
    #[serde(default)]
    avatar_url: Option<String>,
}

/// `PUT /v1/server/users/{id}`: names a user (one who never connected
/// included); the users sharing a room with them get `user:updated`.
fn put_user(
    app: Arc<App>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::path!("v1" / "server" / "users" / ..)
        .and(user_id())
        .and(warp::path::end())
        .and(warp::put())
        .and(with_key(app))
        .and(json_body::<Profile>())
        .and_then(|id: Uuid, app: Arc<App>, p: Profile| async move {
            let name = shared::validate::display_name(&p.name).map_err(refuse)?;
            if let Some(url) = &p.avatar_url {
                shared::validate::avatar_url(url).map_err(refuse)?;
            }
            let user = User {
                id,
                name: Some(name),
                avatar_url: p.avatar_url,
            };
            crate::requests::announce_user(&app, &user)
                .await
                .map_err(refuse)?;
            app.hub.update_profile(&user);
            let rooms = crate::membership::rooms_of(&app, id)
                .await
                .map_err(refuse)?;
            let frame = serde_json::json!({ "user": &user });
            for room in rooms {
                let ev = RoomEvent::new(event::USER_UPDATED, &room, &frame);
                publish_event(&app, &room, &ev).await;
            }
            Ok::<_, Rejection>(reply_json(
                StatusCode::OK,
                &serde_json::json!({ "user": user }),
            ))
        })
}

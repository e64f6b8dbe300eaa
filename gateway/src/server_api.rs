//! The server API, for the application's backend (`/v1/server/`): it acts
//! as the service itself, with an API key (`X-Api-Key`, one of
//! `CHAT_API_KEYS`) instead of a user's token, and needs no membership.
//! Every change it makes is a job in the stream like a member's own.

use std::sync::Arc;

use serde::Deserialize;
use shared::events::RoomEvent;
use shared::protocol::{
    event, ApiError, CreateRoom, ErrorCode, HistoryQuery, Role, SendMessage, User,
};
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
        .or(put_user(app.clone()))
        .unify()
        .or(create_room(app.clone()))
        .unify()
        .or(put_member(app.clone()))
        .unify()
        .or(delete_member(app.clone()))
        .unify()
        .or(post_message(app.clone()))
        .unify()
        .or(delete_message(app))
        .unify()
}

fn empty_ok(_: crate::requests::Empty) -> warp::reply::Response {
    reply_json(StatusCode::OK, &serde_json::json!({}))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct NewRoom {
    #[serde(flatten)]
    room: CreateRoom,
    #[serde(default)]
    owner: Option<Uuid>,
}

/// `POST /v1/server/rooms`: `room:create` on behalf of `owner`, or of the
/// service itself (a member of nothing).
fn create_room(
    app: Arc<App>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::path!("v1" / "server" / "rooms")
        .and(warp::post())
        .and(with_key(app))
        .and(json_body::<NewRoom>())
        .and_then(|app: Arc<App>, req: NewRoom| async move {
            let creator = match req.owner {
                Some(id) => crate::membership::user_or_unnamed(&app, id)
                    .await
                    .map_err(refuse)?,
                None => User::service(),
            };
            let ack = crate::rooms::create_room(&app, &creator, req.room)
                .await
                .map_err(refuse)?;
            Ok::<_, Rejection>(reply_json(StatusCode::CREATED, &ack))
        })
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub(crate) struct MemberRole {
    #[serde(default)]
    role: Option<Role>,
}

/// `/v1/server/rooms/{room}/members/{user}`.
fn member_path() -> impl Filter<Extract = (String, Uuid), Error = Rejection> + Clone {
    warp::path!("v1" / "server" / "rooms" / ..)
        .and(room_id())
        .and(warp::path!("members" / ..))
        .and(user_id())
        .and(warp::path::end())
}

/// `PUT /v1/server/rooms/{room}/members/{user}`: adds a member or sets
/// their role.
fn put_member(
    app: Arc<App>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    member_path()
        .and(warp::put())
        .and(with_key(app))
        .and(json_body::<MemberRole>())
        .and_then(
            |room: String, user: Uuid, app: Arc<App>, req: MemberRole| async move {
                crate::rooms::put_member_for_backend(&app, &room, user, req.role)
                    .await
                    .map(empty_ok)
                    .map_err(refuse)
            },
        )
}

/// `DELETE /v1/server/rooms/{room}/members/{user}`.
fn delete_member(
    app: Arc<App>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    member_path()
        .and(warp::delete())
        .and(with_key(app))
        .and_then(|room: String, user: Uuid, app: Arc<App>| async move {
            crate::rooms::remove_member_for_backend(&app, &room, user)
                .await
                .map(empty_ok)
                .map_err(refuse)
        })
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct BackendMessage {
    #[serde(flatten)]
    message: SendMessage,
    #[serde(default)]
    sender: Option<Uuid>,
}

/// `POST /v1/server/rooms/{room}/messages`: a system message (no sender),
/// or one as `sender`.
fn post_message(
    app: Arc<App>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::path!("v1" / "server" / "rooms" / ..)
        .and(room_id())
        .and(warp::path!("messages"))
        .and(warp::post())
        .and(with_key(app))
        .and(json_body::<BackendMessage>())
        .and_then(
            |room: String, app: Arc<App>, req: BackendMessage| async move {
                let sender = match req.sender {
                    Some(id) => Some(
                        crate::membership::user_or_unnamed(&app, id)
                            .await
                            .map_err(refuse)?,
                    ),
                    None => None,
                };
                let ack = crate::requests::send_for_backend(&app, sender, &room, req.message)
                    .await
                    .map_err(refuse)?;
                Ok::<_, Rejection>(reply_json(StatusCode::ACCEPTED, &ack))
            },
        )
}

/// `DELETE /v1/server/rooms/{room}/messages/{id}`.
fn delete_message(
    app: Arc<App>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::path!("v1" / "server" / "rooms" / ..)
        .and(room_id())
        .and(warp::path!("messages" / ..))
        .and(user_id())
        .and(warp::path::end())
        .and(warp::delete())
        .and(with_key(app))
        .and_then(|room: String, id: Uuid, app: Arc<App>| async move {
            crate::requests::delete_for_backend(&app, &room, id)
                .await
                .map(empty_ok)
                .map_err(refuse)
        })
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

/// A UUID from the path (a user's or a message's id).
fn user_id() -> impl Filter<Extract = (Uuid,), Error = Rejection> + Clone {
    warp::path::param::<String>().and_then(|id: String| async move {
        id.parse::<Uuid>()
            .map_err(|_| refuse(ApiError::bad_request("an id in the path is a UUID")))
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
            let members = store::members(&app.pool, &room, usize::MAX)
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

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct Profile {
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

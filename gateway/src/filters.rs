//! Filters every route shares: the app, a room id from the path, a JSON
//! body within the limit, and the refusals that `http::recover` turns into
//! the contract's `{code, message}`.

use std::convert::Infallible;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use shared::protocol::ApiError;
use warp::http::StatusCode;
use warp::reject::Reject;
use warp::{Filter, Rejection, Reply};

use crate::app::{App, BODY_LIMIT};

/// An `ApiError` travelling as a warp rejection.
#[derive(Debug)]
pub struct Refusal(pub ApiError);
impl Reject for Refusal {}

pub fn refuse(err: ApiError) -> Rejection {
    warp::reject::custom(Refusal(err))
}

pub fn with_app(app: Arc<App>) -> impl Filter<Extract = (Arc<App>,), Error = Infallible> + Clone {
    warp::any().map(move || app.clone())
}

/// A JSON body of at most [`BODY_LIMIT`] bytes, parsed by us so that every
/// failure gets the contract's error; a larger one gets `413` whatever its
/// size (see [`crate::body`]).
pub fn json_body<T: for<'de> Deserialize<'de> + Send>(
) -> impl Filter<Extract = (T,), Error = Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and(warp::body::stream())
        .and_then(|len: Option<u64>, body| async move {
            let body = crate::body::read(len, BODY_LIMIT, Box::pin(body))
                .await
                .map_err(|err| refuse(err.into()))?;
            let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
                b"{}"
            } else {
                &body
            };
            shared::validate::json_object::<T>(body, "body").map_err(refuse)
        })
}

pub fn reply_json<T: Serialize>(status: StatusCode, body: &T) -> warp::reply::Response {
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}

/// A room id from the path, refused unless it is one.
pub fn room_id() -> impl Filter<Extract = (String,), Error = Rejection> + Clone {
    warp::path::param::<String>().and_then(|room: String| async move {
        shared::validate::room_id(&room).map_err(refuse)?;
        Ok::<_, Rejection>(room)
    })
}

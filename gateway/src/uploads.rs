//! Files: `POST /v1/uploads` stores one, `GET /v1/uploads/{id}` serves it
//! to its uploader and to the members of a room where a message carries
//! it.
//!
//! Files live in an object store (the `object_store` crate): a local
//! directory by default, S3-compatible storage when `CHAT_UPLOAD_STORE`
//! names a bucket. Each file is two objects: its bytes, and a small JSON
//! record of who uploaded it, its name and type; the database keeps
//! nothing but the attachments of the messages that carry it.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::Stream;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use shared::protocol::{ApiError, ErrorCode, User};
use shared::validate;
use uuid::Uuid;

use crate::app::App;
use crate::store::db_unavailable;

/// Where uploads are kept and how big one may be.
pub struct Uploads {
    store: Arc<dyn ObjectStore>,
    pub max_bytes: u64,
}

/// A storage setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UploadsError {
    #[error("CHAT_UPLOAD_DIR {0}: {1}")]
    Dir(String, std::io::Error),
    #[error("CHAT_UPLOAD_STORE {0}: {1}")]
    Store(String, object_store::Error),
    #[error("CHAT_UPLOAD_STORE {0} is not a URL: {1}")]
    Url(String, String),
}

impl Uploads {
    /// The store `store_url` names (`s3://bucket/prefix`, configured by the
    /// usual `AWS_*` variables), else the local directory `dir`.
    ///
    /// # Errors
    /// A directory that cannot be made, a store URL that cannot be used.
    pub fn open(dir: &str, store_url: Option<&str>, max_bytes: u64) -> Result<Self, UploadsError> {
        let store: Arc<dyn ObjectStore> = match store_url {
            Some(url) => {
                let parsed = url::Url::parse(url)
                    .map_err(|e| UploadsError::Url(url.into(), e.to_string()))?;
                let options = std::env::vars()
                    .filter(|(k, _)| k.starts_with("AWS_"))
                    .map(|(k, v)| (k.to_ascii_lowercase(), v));
                let (store, prefix) = object_store::parse_url_opts(&parsed, options)
                    .map_err(|e| UploadsError::Store(url.into(), e))?;
                Arc::new(object_store::prefix::PrefixStore::new(store, prefix))
            }
            None => {
                std::fs::create_dir_all(dir).map_err(|e| UploadsError::Dir(dir.into(), e))?;
                let local = object_store::local::LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| UploadsError::Store(dir.into(), e))?;
                Arc::new(local)
            }
        };
        Ok(Self { store, max_bytes })
    }
}

/// What is kept of a file beside its bytes.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    uploader: Uuid,
    name: String,
    #[serde(rename = "type")]
    mime: String,
    size: u64,
    created_at: DateTime<Utc>,
}

/// `201` to an upload: usable at once as an attachment.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UploadReply {
    pub url: String,
    pub name: String,
    #[serde(rename = "type")]
    pub mime: String,
    pub size: u64,
}

fn data_path(id: Uuid) -> Path {
    Path::from(format!("uploads/{id}"))
}

fn record_path(id: Uuid) -> Path {
    Path::from(format!("uploads/{id}.json"))
}

fn unavailable(err: &object_store::Error) -> ApiError {
    tracing::warn!(error = %err, "the upload store failed");
    ApiError::unavailable()
}

/// What a request says about the file it carries.
pub struct Incoming {
    /// `Content-Type`, parameters and all.
    pub content_type: Option<String>,
    /// `?name=`.
    pub name: Option<String>,
    /// `Content-Length`, when sent.
    pub declared: Option<u64>,
    /// Where the file will be fetched from: the request's own origin.
    pub origin: Option<String>,
}

/// The type of a file: the `Content-Type`'s essence, lower-cased.
fn file_type(content_type: Option<&str>) -> Result<String, ApiError> {
    let essence = content_type
        .and_then(|t| t.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::bad_request("Content-Type is required: the file's type"))?;
    if essence.len() > validate::MAX_MIME_CHARS || !validate::is_mime_type(&essence) {
        return Err(ApiError::bad_request(
            "Content-Type must be a type such as image/png",
        ));
    }
    Ok(essence)
}

fn file_name(name: Option<&str>) -> Result<String, ApiError> {
    let name = name
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or("file");
    if name.chars().count() > validate::MAX_ATTACHMENT_NAME_CHARS
        || name
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\')
    {
        return Err(ApiError::bad_request(
            "name is at most 255 characters, with no control characters or slashes",
        ));
    }
    Ok(name.to_owned())
}

/// `POST /v1/uploads`: checks the type and name before reading the body,
/// refuses a body over the limit as soon as it passes it (never holding
/// more than the limit), and stores the file.
///
/// # Errors
/// `bad_request` (no or a bad type, a bad name, an empty body),
/// `too_large`, `unavailable` (the store failed).
pub async fn upload<S, B>(
    app: &App,
    user: &User,
    incoming: Incoming,
    body: S,
) -> Result<UploadReply, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Send + Unpin + 'static,
    B: bytes::Buf + Send,
{
    let mime = file_type(incoming.content_type.as_deref())?;
    let name = file_name(incoming.name.as_deref())?;
    let limit = app.uploads.max_bytes;
    let bytes: Bytes = crate::body::read(incoming.declared, limit, body)
        .await
        .map_err(|err| match err {
            crate::body::BodyError::TooLarge(_) => ApiError::too_large(format!(
                "a file is at most {limit} bytes (CHAT_UPLOAD_MAX_BYTES)"
            )),
            other => other.into(),
        })?;
    if bytes.is_empty() {
        return Err(ApiError::bad_request("the file is empty"));
    }
    let id = Uuid::now_v7();
    let record = Record {
        uploader: user.id,
        name: name.clone(),
        mime: mime.clone(),
        size: bytes.len() as u64,
        created_at: shared::time::now_millis(),
    };
    let store = &app.uploads.store;
    // The bytes first: a record is only ever there for a whole file.
    store
        .put(&data_path(id), PutPayload::from_bytes(bytes))
        .await
        .map_err(|e| unavailable(&e))?;
    let json = serde_json::to_vec(&record).expect("plain fields");
    store
        .put(&record_path(id), PutPayload::from(json))
        .await
        .map_err(|e| unavailable(&e))?;
    metrics::counter!("gateway_uploads_total").increment(1);
    Ok(UploadReply {
        url: format!("{}/v1/uploads/{id}", incoming.origin.unwrap_or_default()),
        name,
        mime,
        size: record.size,
    })
}

/// A file as it is served.
pub struct Download {
    pub bytes: Bytes,
    pub name: String,
    pub mime: String,
}

fn no_such_file() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such file")
}

/// `GET /v1/uploads/{id}`: the file, to its uploader and to members of a
/// room where a message carries it; to anyone else, as to a file that
/// does not exist, `not_found`.
///
/// # Errors
/// `not_found`, `unavailable`.
pub async fn download(app: &App, user: &User, id: Uuid) -> Result<Download, ApiError> {
    let store = &app.uploads.store;
    let record: Record = match store.get(&record_path(id)).await {
        Ok(got) => {
            let raw = got.bytes().await.map_err(|e| unavailable(&e))?;
            serde_json::from_slice(&raw).map_err(|err| {
                tracing::warn!(%id, error = %err, "an unreadable upload record");
                no_such_file()
            })?
        }
        Err(object_store::Error::NotFound { .. }) => return Err(no_such_file()),
        Err(err) => return Err(unavailable(&err)),
    };
    if record.uploader != user.id && !sent_to(app, user, id).await? {
        return Err(no_such_file());
    }
    let bytes = match store.get(&data_path(id)).await {
        Ok(got) => got.bytes().await.map_err(|e| unavailable(&e))?,
        Err(object_store::Error::NotFound { .. }) => return Err(no_such_file()),
        Err(err) => return Err(unavailable(&err)),
    };
    Ok(Download {
        bytes,
        name: record.name,
        mime: record.mime,
    })
}

/// Whether `user` is now a member of a room where a live message carries
/// upload `id`.
async fn sent_to(app: &App, user: &User, id: Uuid) -> Result<bool, ApiError> {
    let rooms: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT room_id FROM messages
          WHERE upload_ids @> ARRAY[$1]::uuid[] AND upload_ids <> '{}'",
    )
    .bind(id)
    .fetch_all(&app.pool)
    .await
    .map_err(db_unavailable)?;
    for room in rooms {
        if crate::membership::role(app, &room, user.id)
            .await?
            .is_some()
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether a browser may show a file of this type in the page: pictures,
/// sound and video; anything else (HTML, SVG with its scripts, …) is
/// offered as a download.
pub fn shown_inline(mime: &str) -> bool {
    (mime.starts_with("image/") && mime != "image/svg+xml")
        || mime.starts_with("audio/")
        || mime.starts_with("video/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_is_a_directory_or_an_s3_bucket_by_url() {
        let dir = std::env::temp_dir().join(format!("chat-uploads-{}", Uuid::new_v4()));
        let local = Uploads::open(dir.to_str().unwrap(), None, 10);
        assert!(local.is_ok() && dir.is_dir(), "the directory is made");
        let _ = std::fs::remove_dir_all(&dir);
        // Nothing is contacted until a file is stored.
        assert!(Uploads::open("unused", Some("s3://bucket/chat/uploads"), 10).is_ok());
        for bad in ["not a url", "nosuch://bucket/x"] {
            assert!(Uploads::open("unused", Some(bad), 10).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_file_needs_a_type_and_a_plain_name() {
        assert_eq!(file_type(Some("Image/PNG; q=1")).unwrap(), "image/png");
        for bad in [None, Some(""), Some("png"), Some("image/"), Some("a b/c")] {
            assert!(file_type(bad).is_err(), "{bad:?}");
        }
        assert_eq!(file_name(None).unwrap(), "file");
        assert_eq!(file_name(Some(" cat.png ")).unwrap(), "cat.png");
        for bad in ["../etc/passwd", "a\\b", "a\nb", &"x".repeat(256)] {
            assert!(file_name(Some(bad)).is_err(), "{bad:?}");
        }
        assert!(shown_inline("image/png") && !shown_inline("text/html"));
        assert!(!shown_inline("image/svg+xml"));
    }
}
